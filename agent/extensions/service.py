"""Installing unpacked extensions: extract, check, move into place, restart Chromium, wait until they run.

Chromium 156 (Debian) loads unpacked extensions with `--load-extension=<dir>,<dir>` (the launcher passes
every folder under `<state dir>/extensions/`), but a folder it cannot load stops its start-up at a modal
"Failed to load extension" dialog, before DevTools answers: one bad upload would take the browser down on
every restart. So every upload is checked by the running Chromium itself first (`Extensions.loadUnpacked` on
the staged copy, then `Extensions.uninstall`; the CDP load is not kept across restarts), and only then moved
into place and loaded for good by a restart through supervisord.

All or nothing: archives are extracted into a staging folder in the state dir (`fs/zipin.py`'s checks and
limits), and nothing is moved into `extensions/` until every archive extracted, has a manifest and passed
Chromium's check. One install runs at a time (a lock); it runs as an owned task, so a client that leaves
cannot stop it between moving folders and restarting Chromium.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import shutil
import stat
import tempfile
import time
from collections.abc import AsyncIterable, Sequence
from pathlib import Path
from typing import Any, BinaryIO, cast

from ..cdp.connection import CDPConnection, CDPDisconnected, CDPError
from ..errors import AgentError, BadRequest, InternalError, Unavailable
from ..events import Publish, no_publish
from ..fs.paths import FsPaths
from ..fs.zipin import Limits, extract
from ..supervisor_rpc import Supervisor
from ..tasks import TaskGroup
from .models import ExtensionUpload

log = logging.getLogger(__name__)

CHROMIUM_PROGRAM = "chromium"
MANIFEST = "manifest.json"
# Staging folders live in the state dir (same disk as extensions/, so moving in is a rename) and start with
# a dot; a crashed agent's leftovers are removed on the next start.
STAGING_PREFIX = ".extensions-incoming-"
# Folders that zip tools add beside the one top folder (macOS resource forks).
_IGNORED_TOP = frozenset({"__MACOSX"})
_METHOD_NOT_FOUND = -32601
_POLL_S = 0.05
# The staged copy is ours: no filesystem root applies to it.
_UNCONFINED = FsPaths("")


@dataclasses.dataclass(frozen=True)
class _Staged:
    name: str
    root: str  # the folder holding manifest.json, inside the staging folder
    has_background: bool  # a service worker (or MV2 background page) whose target must show up


def _extension_root(dest: str, name: str) -> str:
    """The folder holding manifest.json: the archive's root or its one top folder."""
    if os.path.isfile(os.path.join(dest, MANIFEST)):
        return dest
    entries = [entry for entry in os.listdir(dest) if entry not in _IGNORED_TOP]
    if len(entries) == 1:
        top = os.path.join(dest, entries[0])
        if stat.S_ISDIR(os.lstat(top).st_mode) and os.path.isfile(os.path.join(top, MANIFEST)):
            return top
    raise BadRequest(
        f"extension {name!r}: the zip has no {MANIFEST} at its root or in its one top folder; "
        "nothing was installed"
    )


def _read_manifest(root: str, name: str) -> dict[str, Any]:
    try:
        with open(os.path.join(root, MANIFEST), "rb") as file:
            manifest = json.load(file)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BadRequest(
            f"extension {name!r}: {MANIFEST} is not valid JSON ({exc}); nothing was installed"
        ) from None
    if not isinstance(manifest, dict):
        raise BadRequest(f"extension {name!r}: {MANIFEST} is not a JSON object; nothing was installed")
    return manifest


def _has_background(manifest: dict[str, Any]) -> bool:
    background = manifest.get("background")
    kinds = ("service_worker", "page", "scripts")
    return isinstance(background, dict) and any(kind in background for kind in kinds)


def _close_all(uploads: Sequence[ExtensionUpload]) -> None:
    for upload in uploads:
        with contextlib.suppress(OSError):
            upload.zip_file.close()


def _make_readable(top: str) -> None:
    """Every folder and file of an extracted extension readable (folders also searchable) by any user:
    Chromium runs as an unprivileged user of its own, and an extension holds nothing secret."""
    for folder, dirs, files in os.walk(top):
        for name in [*dirs, *files]:
            path = os.path.join(folder, name)
            mode = os.lstat(path).st_mode
            if stat.S_ISDIR(mode):
                os.chmod(path, stat.S_IMODE(mode) | 0o555)
            elif stat.S_ISREG(mode):
                os.chmod(path, stat.S_IMODE(mode) | 0o444)
    os.chmod(top, stat.S_IMODE(os.lstat(top).st_mode) | 0o555)


class ExtensionsService:
    def __init__(
        self,
        state_dir: Path,
        supervisor: Supervisor,
        cdp: CDPConnection,
        limits: Limits,
        ready_timeout_s: float,
        publish: Publish = no_publish,
    ) -> None:
        self._publish = publish  # the event bus (agent/events.py): installs are forwarded to the CP
        self.state_dir = state_dir
        self.dir = state_dir / "extensions"
        self.supervisor = supervisor
        self.cdp = cdp
        self.limits = limits
        self.ready_timeout_s = ready_timeout_s
        self.installed: list[str] = []
        self.installing = False
        self.installs = 0
        self.last_install_s: float | None = None
        self._lock = asyncio.Lock()
        self._tasks = TaskGroup("extensions")

    # --- life ------------------------------------------------------------------------------------------

    async def start(self) -> None:
        await asyncio.to_thread(self._prepare)

    def _prepare(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        for stale in self.state_dir.glob(STAGING_PREFIX + "*"):
            shutil.rmtree(stale, ignore_errors=True)
        self.installed = self._scan()

    def _scan(self) -> list[str]:
        with os.scandir(self.dir) as entries:
            return sorted(e.name for e in entries if e.is_dir(follow_symlinks=False))

    async def close(self) -> None:
        await self._tasks.close()

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "dir": str(self.dir),
            "installed": list(self.installed),
            "installing": self.installing,
            "installs": self.installs,
        }
        if self.last_install_s is not None:
            out["last_install_s"] = round(self.last_install_s, 3)
        return out

    # --- uploads ---------------------------------------------------------------------------------------

    async def spool(self, body: AsyncIterable[bytes], limit: int) -> tuple[BinaryIO, int]:
        """An uploaded archive in an anonymous temporary file in the state dir (nothing to clean up if the
        agent dies), at most `limit` bytes; returns the file and its size. The caller closes it."""
        spool = cast(BinaryIO, await asyncio.to_thread(tempfile.TemporaryFile, "w+b", dir=self.state_dir))
        size = 0
        try:
            async for chunk in body:
                size += len(chunk)
                if size > limit:
                    raise BadRequest(
                        f"the uploaded archives add up to more than {self.limits.max_bytes} bytes (the limit)"
                    )
                await asyncio.to_thread(spool.write, chunk)
            await asyncio.to_thread(spool.flush)
        except BaseException:
            await asyncio.shield(asyncio.to_thread(spool.close))
            raise
        return spool, size

    async def install(self, uploads: Sequence[ExtensionUpload]) -> None:
        """Install every upload (all or nothing) and restart Chromium with them loaded. Takes ownership of
        the uploads' files. The work runs as an owned task: a caller that is cancelled stops waiting only."""
        try:
            names = [upload.name for upload in uploads]
            if not names:
                raise BadRequest("no extensions given")
            for name in names:
                if name in (".", ".."):
                    raise BadRequest(f"extension name {name!r} is not a folder name")
            duplicates = sorted({name for name in names if names.count(name) > 1})
            if duplicates:
                raise BadRequest("extension names given more than once: " + ", ".join(duplicates))
        except BaseException:
            await asyncio.to_thread(_close_all, uploads)
            raise
        task = self._tasks.spawn(self._install_owned(list(uploads)), name="install")
        refused = await asyncio.shield(task)
        if refused is not None:
            raise refused

    async def _install_owned(self, uploads: list[ExtensionUpload]) -> AgentError | None:
        """The install; an API error (a refused upload) is returned for the caller to raise, so that the
        task group does not log a client's mistake as a failed task."""
        try:
            async with self._lock:
                self.installing = True
                started = time.monotonic()
                try:
                    await self._install(uploads)
                except AgentError as exc:
                    return exc
                finally:
                    self.installing = False
                self.installs += 1
                self.last_install_s = time.monotonic() - started
                names = [upload.name for upload in uploads]
                self._publish("extensions.installed", {"names": names, "installed": list(self.installed)})
                return None
        finally:
            await asyncio.to_thread(_close_all, uploads)

    async def _install(self, uploads: list[ExtensionUpload]) -> None:
        stage = await asyncio.to_thread(tempfile.mkdtemp, prefix=STAGING_PREFIX, dir=self.state_dir)
        try:
            # Chromium runs as another user (issue 13) and loads the staged folder itself: let it through.
            await asyncio.to_thread(os.chmod, stage, 0o711)
            staged = [await asyncio.to_thread(self._stage, stage, i, u) for i, u in enumerate(uploads)]
            await self._check_with_chromium(staged)
            moved: list[tuple[str, str | None]] = []
            try:
                await asyncio.to_thread(self._move_into_place, stage, staged, moved)
                await self._restart_and_wait(staged)
            except Exception:
                # Back to what was there, so that Chromium's next start is the one it had before.
                await asyncio.to_thread(self._roll_back, moved)
                if moved:
                    with contextlib.suppress(AgentError):
                        await self.supervisor.restart(CHROMIUM_PROGRAM)
                raise
        finally:
            await asyncio.to_thread(shutil.rmtree, stage, True)
            self.installed = await asyncio.to_thread(self._scan)

    # --- steps (the blocking ones run in worker threads) -----------------------------------------------

    def _stage(self, stage: str, index: int, upload: ExtensionUpload) -> _Staged:
        dest = os.path.join(stage, f"new-{index}")
        try:
            extract(upload.zip_file, dest, self.limits, _UNCONFINED)
        except BadRequest as exc:
            raise BadRequest(f"extension {upload.name!r}: {exc.message}") from None
        _make_readable(dest)
        root = _extension_root(dest, upload.name)
        manifest = _read_manifest(root, upload.name)
        return _Staged(upload.name, root, _has_background(manifest))

    async def _check_with_chromium(self, staged: list[_Staged]) -> None:
        """Chromium's own verdict on each staged extension, before anything is moved or restarted."""
        try:
            await self.cdp.wait_connected(self.ready_timeout_s)
            for item in staged:
                try:
                    loaded = await self.cdp.send("Extensions.loadUnpacked", {"path": item.root})
                except CDPDisconnected:
                    raise
                except CDPError as exc:
                    if exc.code == _METHOD_NOT_FOUND:
                        log.warning("no Extensions.loadUnpacked in this Chromium: extensions are not checked")
                        return
                    raise BadRequest(
                        f"extension {item.name!r}: Chromium cannot load it: {exc.message}; "
                        "nothing was installed and Chromium was not restarted"
                    ) from None
                with contextlib.suppress(CDPError):
                    await self.cdp.send("Extensions.uninstall", {"id": loaded["id"]})
        except (CDPDisconnected, TimeoutError) as exc:
            raise Unavailable(f"Chromium is not reachable to check the extensions: {exc}") from None

    def _move_into_place(
        self, stage: str, staged: list[_Staged], moved: list[tuple[str, str | None]]
    ) -> None:
        """Each staged extension to extensions/<name>; a folder it replaces goes to the staging folder (and
        `moved` records it, for a roll back)."""
        try:
            for index, item in enumerate(staged):
                final = str(self.dir / item.name)
                backup: str | None = None
                if os.path.lexists(final):
                    backup = os.path.join(stage, f"old-{index}")
                    os.rename(final, backup)
                moved.append((item.name, backup))
                os.rename(item.root, final)
        except OSError as exc:
            raise InternalError(f"could not move the extensions into {self.dir}: {exc}") from None

    def _roll_back(self, moved: list[tuple[str, str | None]]) -> None:
        for name, backup in reversed(moved):
            final = self.dir / name
            if final.is_dir() and not final.is_symlink():
                shutil.rmtree(final, ignore_errors=True)
            if backup is not None:
                with contextlib.suppress(OSError):
                    os.rename(backup, final)

    async def _restart_and_wait(self, staged: list[_Staged]) -> None:
        """Restart Chromium through supervisord; return when the shared DevTools connection is up again,
        Chromium lists every new extension and the background target of each that has one is there."""
        before = self.cdp.generation
        fresh = asyncio.Event()

        def on_state(connected: bool, generation: int) -> None:
            if connected and generation > before:
                fresh.set()

        remove = self.cdp.on_state(on_state)
        loop = asyncio.get_running_loop()
        # The time counts from the restart's start; the restart itself always runs to its end (a second
        # restart racing an unfinished one could start Chromium with either set of extensions).
        deadline = loop.time() + self.ready_timeout_s
        try:
            await self.supervisor.restart(CHROMIUM_PROGRAM)
            async with asyncio.timeout_at(deadline):
                if not (self.cdp.connected and self.cdp.generation > before):
                    await fresh.wait()
                await self._wait_loaded(staged)
        except (TimeoutError, CDPError) as exc:
            detail = "" if isinstance(exc, TimeoutError) else f" ({exc})"
            raise InternalError(
                f"Chromium did not come back with the extensions loaded within {self.ready_timeout_s:g} s"
                f"{detail}; the previous extensions were put back"
            ) from None
        finally:
            remove()

    async def _wait_loaded(self, staged: list[_Staged]) -> None:
        wanted = await asyncio.to_thread(
            lambda: {os.path.realpath(self.dir / item.name): item for item in staged}
        )
        while True:
            try:
                if await self._loaded(wanted):
                    return
            except CDPDisconnected:
                await self.cdp.wait_connected(self.ready_timeout_s)
            except CDPError as exc:
                log.debug("waiting for the extensions: %s", exc)
            await asyncio.sleep(_POLL_S)

    async def _loaded(self, wanted: dict[str, _Staged]) -> bool:
        listed = (await self.cdp.send("Extensions.getExtensions", timeout=5)).get("extensions", [])
        paths = [str(e.get("path", "")) for e in listed]
        real = await asyncio.to_thread(lambda: [os.path.realpath(p) if p else "" for p in paths])
        ids = {path: str(e.get("id", "")) for path, e in zip(real, listed, strict=True)}
        if any(path not in ids for path in wanted):
            return False
        background = [ids[path] for path, item in wanted.items() if item.has_background]
        if not background:
            return True
        infos = (await self.cdp.send("Target.getTargets", timeout=5)).get("targetInfos", [])
        urls = [str(info.get("url", "")) for info in infos]
        prefixes = [f"chrome-extension://{ext_id}/" for ext_id in background]
        return all(any(url.startswith(prefix) for url in urls) for prefix in prefixes)
