"""The filesystem capability: files, directories, permissions, moves, uploads, zips and watches.

Pure async domain logic (no aiohttp). Every disk operation runs in one of two thread pools the service
owns: `_io` for short calls (stat, open, block writes) and `_long` for work that can take a while (zip,
recursive delete, copies across filesystems), so a big job never starves the quick ones and nothing
blocks the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import logging
import os
import shutil
import stat
import tempfile
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, Any, TypeVar

from ..config import Config
from ..errors import BadRequest, Forbidden
from ..identity import UnknownIdentity, gid_of, uid_of
from .atomic import AtomicFile, SocketBody, make_parents, pump, pwritev_all, run_in, shielded, temp_name
from .models import FileInfo, join_client_path, parse_mode
from .paths import FsPaths, os_error
from .watch import Watch, Watches
from .zipin import Limits, extract, nearest_existing
from .zipout import zip_stream

log = logging.getLogger(__name__)
T = TypeVar("T")

ZIP_SPOOL_SLACK = 64 * 1024 * 1024  # an archive may be this much larger than what it extracts to


@dataclass
class OpenedFile:
    file: IO[bytes]
    size: int
    mtime: float


def _guarded(path: str, func: Callable[..., T], *args: Any) -> T:
    try:
        return func(*args)
    except OSError as exc:
        raise os_error(exc, path) from None


def _owner_ids(owner: str | None, group: str | None) -> tuple[int, int]:
    """chown(2)'s (uid, gid), -1 for what stays; blocking (NSS)."""
    try:
        return (uid_of(owner) if owner else -1), (gid_of(group) if group else -1)
    except UnknownIdentity as exc:
        raise BadRequest(f"no such {exc.kind}: {exc.name!r}") from None


class FsService:
    def __init__(self, config: Config) -> None:
        self.paths = FsPaths(config.fs_root)
        self.fsync = config.fs_fsync
        self.body_timeout_s = config.http_body_timeout_s  # for bodies the splice path reads itself
        self.limits = Limits(config.fs_max_extract_bytes, config.fs_max_extract_entries)
        self._io = ThreadPoolExecutor(max_workers=16, thread_name_prefix="fs-io")
        self._long = ThreadPoolExecutor(max_workers=8, thread_name_prefix="fs-long")
        self.watches = Watches(config.fs_max_watches, config.fs_watch_buffer)

    async def close(self) -> None:
        await self.watches.close()
        for pool in (self._io, self._long):
            # Workers stop at their next check (a zip whose reader left aborts within 0.5 s).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.to_thread(pool.shutdown, True, cancel_futures=True), 10.0)

    async def _call(self, path: str, func: Callable[..., T], *args: Any, long: bool = False) -> T:
        return await run_in(self._long if long else self._io, _guarded, path, func, *args)

    # --- reading ---

    def _open(self, path: str) -> OpenedFile:
        real = self.paths.resolve(path)
        # O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused just below).
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                raise BadRequest(f"{path}: is a directory")
            if not stat.S_ISREG(st.st_mode):
                raise BadRequest(f"{path}: not a regular file")
            return OpenedFile(os.fdopen(fd, "rb", buffering=0), st.st_size, st.st_mtime)
        except BaseException:
            os.close(fd)
            raise

    async def open_file(self, path: str) -> OpenedFile:
        """The file, open for reading, and its size; the caller closes it (see `close_file`)."""
        return await self._call(path, self._open, path)

    async def close_file(self, opened: OpenedFile) -> None:
        await shielded(self._io, opened.file.close)

    async def read_chunks(self, opened: OpenedFile, offset: int, count: int) -> AsyncIterator[bytes]:
        """A fallback for transports without sendfile: the file in 1 MiB reads from a worker thread."""
        opened.file.seek(offset)
        while count > 0:
            chunk = await run_in(self._io, opened.file.read, min(count, 1024 * 1024))
            if not chunk:
                return
            count -= len(chunk)
            yield chunk

    # --- writing ---

    def _check_write_target(self, path: str) -> None:
        target = self.paths.resolve(path)
        if os.path.isdir(target):
            raise BadRequest(f"{path}: is a directory")
        parent = nearest_existing(os.path.dirname(target) or "/")
        if not os.path.isdir(parent):
            raise BadRequest(f"{path}: {parent} is not a directory")

    async def check_write_target(self, path: str, mode: str | None) -> None:
        """The checks write_file makes before it reads the body (path allowed, not a directory, mode)."""
        if mode:
            parse_mode(mode)
        await self._call(path, self._check_write_target, path)

    async def write_file(self, path: str, mode: str | None, body: AsyncIterable[bytes] | SocketBody) -> int:
        """Stream `body` into `path` atomically (mode: octal text; None keeps an existing file's mode).
        A SocketBody is moved from the socket into the file by splice(2), without copying it through here."""
        target = await self._call(path, self.paths.resolve, path)
        new_mode = parse_mode(mode) if mode else None
        file = await self._call(path, functools.partial(AtomicFile, target, new_mode, fsync=self.fsync))
        try:
            if isinstance(body, SocketBody):
                moving = asyncio.get_running_loop().run_in_executor(
                    self._io, _guarded, path, file.splice, body
                )
                try:
                    size = await asyncio.shield(moving)
                except asyncio.CancelledError:
                    # Stop the thread (at its next poll) and wait for it: never close the file under it.
                    body.cancel.set()
                    with contextlib.suppress(BaseException):
                        await moving
                    raise
            else:
                size = await pump(body, lambda chunks, at: _guarded(path, file.write, chunks, at), self._io)
            await self._call(path, file.commit)
            return size
        finally:
            await shielded(self._io, file.discard)

    def upload(self) -> Upload:
        return Upload(self)

    # --- listing and metadata ---

    def _list(self, path: str) -> list[FileInfo]:
        real = self.paths.resolve(path)
        if not stat.S_ISDIR(os.stat(real).st_mode):
            raise BadRequest(f"{path}: not a directory")
        out: list[FileInfo] = []
        with os.scandir(real) as entries:
            for entry in entries:
                try:
                    st = entry.stat(follow_symlinks=False)  # entries as they are: a link is a link
                except FileNotFoundError:
                    continue  # gone since the listing
                out.append(FileInfo.from_stat(join_client_path(path, entry.name), st, name=entry.name))
        out.sort(key=lambda info: info.name)
        return out

    async def list_files(self, path: str) -> list[FileInfo]:
        return await self._call(path, self._list, path)

    def _info(self, path: str) -> FileInfo:
        return FileInfo.from_stat(path, os.stat(self.paths.resolve(path)))

    async def file_info(self, path: str) -> FileInfo:
        return await self._call(path, self._info, path)

    # --- directories, deletion, permissions, moves ---

    def _mkdir(self, path: str, mode: int) -> None:
        real = self.paths.resolve(path)
        missing: list[str] = []
        current = real
        while not os.path.lexists(current):
            missing.append(current)
            current = os.path.dirname(current)
        if not os.path.isdir(current):
            raise BadRequest(f"{path}: {current} exists and is not a directory")
        for directory in reversed(missing):
            try:
                os.mkdir(directory, mode)
            except FileExistsError:
                if os.path.isdir(directory):
                    continue  # created meanwhile by someone else: fine, it is what was asked
                raise
            os.chmod(directory, mode)  # the umask must not narrow the mode asked for

    async def create_directory(self, path: str, mode: str) -> None:
        await self._call(path, self._mkdir, path, parse_mode(mode))

    def _delete_file(self, path: str) -> None:
        real = self.paths.resolve_entry(path)
        if self.paths.is_root(real):
            raise Forbidden(f"{path}: the filesystem root cannot be deleted")
        if stat.S_ISDIR(os.lstat(real).st_mode):
            raise BadRequest(f"{path}: is a directory (use delete_directory)")
        os.unlink(real)

    async def delete_file(self, path: str) -> None:
        await self._call(path, self._delete_file, path)

    def _delete_directory(self, path: str) -> None:
        real = self.paths.resolve_entry(path)
        if self.paths.is_root(real):
            raise Forbidden(f"{path}: the filesystem root cannot be deleted")
        st = os.lstat(real)
        if stat.S_ISLNK(st.st_mode):
            raise BadRequest(f"{path}: is a symlink (delete it with delete_file)")
        if not stat.S_ISDIR(st.st_mode):
            raise BadRequest(f"{path}: not a directory (use delete_file)")
        shutil.rmtree(real)  # fd-based on Linux: a symlink swapped in meanwhile is not followed

    async def delete_directory(self, path: str) -> None:
        await self._call(path, self._delete_directory, path, long=True)

    def _set_permissions(self, path: str, mode: int, owner: str | None, group: str | None) -> None:
        real = self.paths.resolve(path)
        os.stat(real)
        uid, gid = _owner_ids(owner, group)
        if uid != -1 or gid != -1:
            os.chown(real, uid, gid)
        os.chmod(real, mode)  # after chown, which clears setuid/setgid

    async def set_file_permissions(self, path: str, mode: str, owner: str | None, group: str | None) -> None:
        await self._call(path, self._set_permissions, path, parse_mode(mode), owner, group)

    def _move(self, src_path: str, dest_path: str) -> None:
        src = self.paths.resolve_entry(src_path)
        dest = self.paths.resolve_entry(dest_path)
        if self.paths.is_root(src) or self.paths.is_root(dest):
            raise Forbidden("the filesystem root cannot be moved or replaced")
        st = os.lstat(src)
        if src == dest:
            return
        if dest.startswith(src + "/"):
            raise BadRequest(f"cannot move {src_path} into itself ({dest_path})")
        make_parents(os.path.dirname(dest))
        try:
            os.rename(src, dest)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            _move_across(src, dest, st)

    async def move(self, src_path: str, dest_path: str) -> None:
        # Errors name the source unless the destination is what is wrong (make_parents names it).
        await self._call(src_path, self._move, src_path, dest_path, long=True)

    # --- zips ---

    def _zip_root(self, path: str) -> str:
        real = self.paths.resolve(path)
        if not stat.S_ISDIR(os.stat(real).st_mode):
            raise BadRequest(f"{path}: not a directory")
        with os.scandir(real):  # unreadable → 403 now, before the response starts
            pass
        return real

    async def zip_directory(self, path: str) -> AsyncGenerator[bytes, None]:
        """Checks the directory now (errors before any byte is sent), then streams its zip."""
        real = await self._call(path, self._zip_root, path)
        return zip_stream(real, self._long)

    async def upload_zip(self, dest_path: str, spool: IO[bytes]) -> None:
        dest = await self._call(dest_path, self.paths.resolve, dest_path)
        await self._call(dest_path, extract, spool, dest, self.limits, self.paths, long=True)

    async def spool_zip(self, body: AsyncIterable[bytes], dest_path: str | None) -> IO[bytes]:
        """The uploaded archive in an anonymous temp file (beside the destination when it is known, so it
        is on the same disk), capped at the extraction limit plus some slack."""
        directory: str | None = None
        if dest_path is not None:
            dest = await self._call(dest_path, self.paths.resolve, dest_path)
            directory = await run_in(self._io, nearest_existing, dest)
        spool = await self._call(
            dest_path or "zip_file",
            lambda: tempfile.TemporaryFile("w+b", suffix=".zip", dir=directory),  # noqa: SIM115
        )
        try:
            await pump(
                body,
                lambda chunks, at: _guarded("zip_file", pwritev_all, spool.fileno(), chunks, at),
                self._io,
                limit=self.limits.max_bytes + ZIP_SPOOL_SLACK,
            )
            await run_in(self._io, spool.flush)
            return spool
        except BaseException:
            await shielded(self._io, spool.close)
            raise

    async def close_spool(self, spool: IO[bytes]) -> None:
        await shielded(self._io, spool.close)

    # --- watches ---

    def _watch_root(self, path: str) -> str:
        real = self.paths.resolve(path)
        if not stat.S_ISDIR(os.stat(real).st_mode):
            raise BadRequest(f"{path}: not a directory (watches are on directories)")
        return real

    async def start_watch(self, path: str, recursive: bool) -> Watch:
        real = await self._call(path, self._watch_root, path)
        return await self.watches.start(path, real, recursive)


def _move_across(src: str, dest: str, st: os.stat_result) -> None:
    """Move between filesystems: copy beside the destination, rename into place, then delete the source.
    A failure before the rename leaves the source as it was and no copy behind."""
    try:
        existing: os.stat_result | None = os.lstat(dest)
    except FileNotFoundError:
        existing = None
    is_dir = stat.S_ISDIR(st.st_mode)
    if existing is not None and stat.S_ISDIR(existing.st_mode) and (not is_dir or os.listdir(dest)):
        raise OSError(errno.EISDIR if not is_dir else errno.ENOTEMPTY, os.strerror(errno.EISDIR), dest)
    if existing is not None and is_dir and not stat.S_ISDIR(existing.st_mode):
        raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), dest)
    if not (is_dir or stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
        raise BadRequest(f"{src}: special files cannot be moved across filesystems")
    temp = os.path.join(os.path.dirname(dest), temp_name(os.path.basename(dest)))
    try:
        if is_dir:
            shutil.copytree(src, temp, symlinks=True)
        elif stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(src), temp)
        else:
            shutil.copy2(src, temp, follow_symlinks=False)
        if is_dir and existing is not None:
            os.rmdir(dest)  # an empty directory is replaced, as rename(2) does
        os.replace(temp, dest)
    except BaseException:
        if os.path.isdir(temp) and not os.path.islink(temp):
            shutil.rmtree(temp, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
        raise
    if is_dir:
        shutil.rmtree(src)
    else:
        os.unlink(src)


class Upload:
    """One multipart upload: files[i][dest_path] and files[i][file] paired by index, in any order.

    A file whose destination is already known streams straight into a temp file beside it; one that comes
    before its destination is spooled and copied there at the end. Nothing replaces any destination until
    every part has arrived; then each file is renamed into place (each one whole or not at all).
    """

    def __init__(self, service: FsService) -> None:
        self._service = service
        self._dests: dict[int, tuple[str, str]] = {}
        self._files: dict[int, AtomicFile] = {}
        self._spools: dict[int, IO[bytes]] = {}

    async def dest(self, index: int, dest_path: str) -> None:
        if index in self._dests:
            raise BadRequest(f"files[{index}][dest_path] given twice")
        real = await self._service._call(dest_path, self._service.paths.resolve, dest_path)
        if any(real == other for _, other in self._dests.values()):
            raise BadRequest(f"files[{index}][dest_path]: {dest_path} is the destination of another file too")
        self._dests[index] = (dest_path, real)

    async def file(self, index: int, body: AsyncIterable[bytes]) -> None:
        if index in self._files or index in self._spools:
            raise BadRequest(f"files[{index}][file] given twice")
        service = self._service
        if index in self._dests:
            dest_path, real = self._dests[index]
            make = functools.partial(AtomicFile, real, None, fsync=service.fsync)
            atomic = await service._call(dest_path, make)
            self._files[index] = atomic
            await pump(body, lambda chunks, at: _guarded(dest_path, atomic.write, chunks, at), service._io)
        else:
            spool = await service._call("upload", lambda: tempfile.TemporaryFile("w+b"))  # noqa: SIM115
            self._spools[index] = spool
            sink = functools.partial(pwritev_all, spool.fileno())
            await pump(body, lambda chunks, at: _guarded("upload", sink, chunks, at), service._io)

    def _copy_spool(self, index: int) -> None:
        real = self._dests[index][1]
        spool = self._spools[index]
        atomic = AtomicFile(real, None, fsync=self._service.fsync)
        self._files[index] = atomic
        spool.seek(0)
        offset = 0
        while chunk := spool.read(1024 * 1024):
            atomic.write([chunk], offset)
            offset += len(chunk)

    async def commit(self) -> int:
        indexes = sorted(set(self._dests) | set(self._files) | set(self._spools))
        if not indexes:
            raise BadRequest("no files in the upload (send files[0][dest_path] and files[0][file])")
        for index in indexes:
            if index not in self._dests:
                raise BadRequest(f"files[{index}] has a file but no dest_path")
            if index not in self._files and index not in self._spools:
                raise BadRequest(f"files[{index}] has a dest_path but no file")
        service = self._service
        for index in list(self._spools):
            await service._call(self._dests[index][0], self._copy_spool, index, long=True)
        for index in indexes:
            await service._call(self._dests[index][0], self._files[index].commit)
        return len(indexes)

    async def discard(self) -> None:
        io: Executor = self._service._io
        for atomic in self._files.values():
            await shielded(io, atomic.discard)
        for spool in self._spools.values():
            await shielded(io, spool.close)
