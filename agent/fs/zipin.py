"""Safe zip extraction: check the whole archive first, extract into a staging directory, then move it in.

An archive is refused as a whole (BadRequest, nothing written) when an entry would land outside the
destination (`..` components, absolute names, paths through a symlink entry, symlinks whose target leaves the
destination), when entries clash (duplicates, a file where a directory is needed), or when its contents add
up to more than the extraction cap: first by the sizes the archive declares, then by the bytes actually
decompressed. Extraction goes to a hidden staging directory beside the destination; only a fully extracted
archive is moved into place, so a rejected one leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from ..errors import BadRequest, Forbidden
from .atomic import TEMP_SUFFIX, UNZIP_PREFIX
from .paths import FsPaths

COPY_CHUNK = 1024 * 1024
MAX_LINK_TARGET = 4096
_LINK_DEPTH = 40


@dataclass(frozen=True)
class Limits:
    max_bytes: int
    max_entries: int


@dataclass
class _Entry:
    info: zipfile.ZipInfo
    parts: tuple[str, ...]
    kind: str  # "dir", "file" or "link"
    link_target: str = ""

    @property
    def rel(self) -> str:
        return "/".join(self.parts)


def _refused(reason: str) -> BadRequest:
    return BadRequest(f"{reason}; nothing was extracted")


def _kind(info: zipfile.ZipInfo) -> str:
    unix_mode = info.external_attr >> 16
    if stat.S_ISLNK(unix_mode):
        return "link"
    if info.is_dir() or stat.S_ISDIR(unix_mode):
        return "dir"
    return "file"


def _unix_perm(info: zipfile.ZipInfo, default: int) -> int:
    # Permission bits only: setuid/setgid/sticky from an uploaded archive are dropped.
    perm = (info.external_attr >> 16) & 0o777
    return perm if perm else default


def _name_parts(name: str) -> tuple[str, ...]:
    if name.startswith("/"):
        raise BadRequest(f"zip entry {name!r} has an absolute path; nothing was extracted")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise BadRequest(f"zip entry {name!r} would extract outside the destination; nothing was extracted")
    return parts


class _Plan:
    def __init__(self, archive: zipfile.ZipFile, limits: Limits, dest: str) -> None:
        self.entries: list[_Entry] = []
        self.dest = dest
        infos = archive.infolist()
        if len(infos) > limits.max_entries:
            raise BadRequest(f"zip has {len(infos)} entries, more than the limit of {limits.max_entries}")
        declared = 0
        seen: dict[tuple[str, ...], str] = {}
        for info in infos:
            parts = _name_parts(info.filename)
            if not parts:
                continue  # "./" or "/": the destination itself
            kind = _kind(info)
            if parts in seen:
                raise BadRequest(f"zip has the entry {info.filename!r} twice; nothing was extracted")
            seen[parts] = kind
            if kind == "file":
                declared += info.file_size
                if declared > limits.max_bytes:
                    raise _refused(f"zip would extract to more than {limits.max_bytes} bytes (the limit)")
            self.entries.append(_Entry(info, parts, kind))
        self.links = {e.parts: e for e in self.entries if e.kind == "link"}
        for entry in self.entries:
            # Every ancestor must be a directory: never a file entry, never a symlink entry.
            for depth in range(1, len(entry.parts)):
                prefix = entry.parts[:depth]
                ancestor = seen.get(prefix)
                if ancestor == "link":
                    raise _refused(f"zip entry {entry.info.filename!r} goes through a symlink in the archive")
                if ancestor == "file":
                    raise _refused(
                        f"zip entry {entry.info.filename!r} needs {'/'.join(prefix)!r} to be a directory, "
                        "but the archive has a file there"
                    )

    def read_links(self, archive: zipfile.ZipFile) -> None:
        for entry in self.links.values():
            if entry.info.file_size > MAX_LINK_TARGET:
                raise BadRequest(f"zip symlink {entry.info.filename!r} has an implausibly long target")
            entry.link_target = archive.read(entry.info).decode("utf-8", "surrogateescape")
        for entry in self.links.values():
            target = entry.link_target
            if not target or target.startswith("/") or "\x00" in target:
                raise BadRequest(
                    f"zip symlink {entry.info.filename!r} -> {target!r} points outside the destination; "
                    "nothing was extracted"
                )
            if self._resolve(entry.parts[:-1], target, 0) is None:
                raise BadRequest(
                    f"zip symlink {entry.info.filename!r} -> {target!r} points outside the destination; "
                    "nothing was extracted"
                )

    def _resolve(self, base: tuple[str, ...], target: str, depth: int) -> tuple[str, ...] | None:
        """Where `target` (relative to `base`) lands inside the destination, following the archive's own
        symlinks and those already in the destination; None when it leaves it."""
        if depth > _LINK_DEPTH:
            return None
        where = list(base)
        for part in target.split("/"):
            if part in ("", "."):
                continue
            if part == "..":
                if not where:
                    return None
                where.pop()
                continue
            where.append(part)
            key = tuple(where)
            link = self.links.get(key)
            if link is not None:
                resolved = self._resolve(key[:-1], link.link_target, depth + 1)
                if resolved is None:
                    return None
                where = list(resolved)
                continue
            on_disk = os.path.join(self.dest, *key)
            if os.path.islink(on_disk):
                real = os.path.realpath(on_disk)
                dest_real = os.path.realpath(self.dest)
                if not (real == dest_real or real.startswith(dest_real + "/")):
                    return None
                where = [p for p in os.path.relpath(real, dest_real).split("/") if p not in ("", ".")]
        return tuple(where)


def _extract_into(archive: zipfile.ZipFile, plan: _Plan, stage: str, limits: Limits) -> None:
    total = 0
    dirs: list[tuple[str, int]] = []
    for entry in plan.entries:
        target = os.path.join(stage, *entry.parts)
        if entry.kind == "dir":
            os.makedirs(target, mode=0o700, exist_ok=True)
            dirs.append((target, _unix_perm(entry.info, 0o755)))
        elif entry.kind == "file":
            os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as out, archive.open(entry.info) as source:
                while chunk := source.read(COPY_CHUNK):
                    total += len(chunk)
                    if total > limits.max_bytes:
                        raise _refused(f"zip extracts to more than {limits.max_bytes} bytes (the limit)")
                    out.write(chunk)
                os.fchmod(out.fileno(), _unix_perm(entry.info, 0o644))
    for entry in plan.links.values():
        target = os.path.join(stage, *entry.parts)
        os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
        os.symlink(entry.link_target, target)
    # Directory modes last, deepest first: a read-only directory must not stop its own extraction.
    for target, perm in sorted(dirs, key=lambda d: d[0].count("/"), reverse=True):
        os.chmod(target, perm)


def _walk_merge(stage: str, dest: str) -> Iterator[tuple[str, str, str]]:
    """(action, staged, dest) pairs for moving the staged tree into an existing destination.

    Actions: "move" (nothing there yet: rename the whole staged subtree), "replace" (a file over a file or
    a link), "descend" (a directory into an existing directory). Existing symlinks are never followed."""
    with os.scandir(stage) as entries:
        items = sorted(entries, key=lambda e: e.name)
    for entry in items:
        target = os.path.join(dest, entry.name)
        try:
            existing = os.lstat(target)
        except FileNotFoundError:
            yield "move", entry.path, target
            continue
        staged_dir = entry.is_dir(follow_symlinks=False)
        if staged_dir and stat.S_ISDIR(existing.st_mode):
            yield "descend", entry.path, target
            yield from _walk_merge(entry.path, target)
        elif staged_dir or stat.S_ISDIR(existing.st_mode):
            what = "a directory" if staged_dir else "a file"
            raise BadRequest(f"{target} exists and the archive has {what} there; nothing was extracted")
        else:
            yield "replace", entry.path, target


def _merge(stage: str, dest: str) -> None:
    actions = list(_walk_merge(stage, dest))  # every conflict is found before anything moves
    for action, staged, target in actions:
        if action in ("move", "replace"):
            os.replace(staged, target)


def nearest_existing(path: str) -> str:
    while not os.path.isdir(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def extract(zip_file: BinaryIO, dest: str, limits: Limits, paths: FsPaths) -> None:
    """Extract the archive into `dest` (a resolved path) all or nothing. Runs in a worker thread."""
    try:
        existing = os.lstat(dest)
    except FileNotFoundError:
        existing = None
    if existing is not None and not stat.S_ISDIR(existing.st_mode):
        raise BadRequest(f"{dest}: exists and is not a directory")
    try:
        archive = zipfile.ZipFile(zip_file)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise BadRequest(f"not a valid zip archive: {exc}") from None
    with archive:
        try:
            plan = _Plan(archive, limits, dest)
            plan.read_links(archive)
        except (zipfile.BadZipFile, NotImplementedError, RuntimeError, zlib.error, EOFError) as exc:
            raise BadRequest(f"unreadable zip archive: {exc}") from None
        anchor = nearest_existing(os.path.dirname(dest) if existing is None else dest)
        if not paths.inside(os.path.realpath(anchor)):
            raise Forbidden(f"{dest} is outside the filesystem root the agent serves")
        stage = tempfile.mkdtemp(prefix=UNZIP_PREFIX, suffix=TEMP_SUFFIX, dir=anchor)
        try:
            try:
                _extract_into(archive, plan, stage, limits)
            except (zipfile.BadZipFile, NotImplementedError, RuntimeError, zlib.error, EOFError) as exc:
                raise BadRequest(f"corrupt zip archive: {exc}; nothing was extracted") from None
            if existing is None:
                os.makedirs(os.path.dirname(dest), mode=0o755, exist_ok=True)
                os.chmod(stage, 0o755)
                os.rename(stage, dest)
                return
            _merge(stage, dest)
        finally:
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(stage)
