"""Files that appear whole or not at all: a hidden temp file beside the target, fsync, rename over it.

The temp file lives in the target's directory so the rename is atomic (same filesystem): a reader sees the
old file or the new one, never a partial one, and a failed or abandoned write leaves the old file as it was
and no temp file behind.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import os
import re
import secrets
import select
import stat
import tempfile
import threading
from collections.abc import AsyncIterable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, TypeVar

from ..errors import BadRequest

# Bytes handed to a worker thread at once (few thread hops per GiB), and how many may be in flight: memory
# per upload stays under (DEPTH + 1) * BLOCK.
BLOCK = 4 * 1024 * 1024
DEPTH = 4
_IOV_MAX = 1024
T = TypeVar("T")

# The agent's own temp names: `.<name>.<random>.part` beside a file being written (AtomicFile) or moved
# across filesystems (temp_name()), `.unzip-<random>.part` for an archive being extracted (fs/zipin.py);
# <random> is 8 characters of [a-z0-9_] (tempfile's, or hex). Made only from these constants, so that one
# predicate, is_temp_name(), recognises them all: watches hide them (fs/watch.py).
TEMP_SUFFIX = ".part"
UNZIP_PREFIX = ".unzip-"
_TEMP_NAME = re.compile(r"\.(?:.+\.|unzip-)[a-z0-9_]{8}\.part", re.DOTALL)


def temp_prefix(name: str) -> str:
    """The prefix of a temp file for a file called `name` (shortened: the whole name must fit NAME_MAX)."""
    return f".{name[:100]}."


def temp_name(name: str) -> str:
    """A fresh temp name for a file called `name`, for callers that create it themselves."""
    return temp_prefix(name) + secrets.token_hex(4) + TEMP_SUFFIX


def is_temp_name(name: str) -> bool:
    """Whether a file name (not a path) is one of the agent's own temp files."""
    return _TEMP_NAME.fullmatch(name) is not None


def make_parents(directory: str, mode: int = 0o755) -> None:
    """mkdir -p, as the reference service does before writing a file."""
    try:
        os.makedirs(directory, mode=mode, exist_ok=True)
    except FileExistsError:
        raise BadRequest(f"{directory}: exists and is not a directory") from None


def pwritev_all(fd: int, chunks: list[bytes], offset: int) -> None:
    """Write every chunk at `offset` (pwritev may write less than asked, and takes at most IOV_MAX
    buffers). Positioned writes let several blocks be in flight at once without ordering them."""
    views = [memoryview(c) for c in chunks if c]
    while views:
        written = os.pwritev(fd, views[:_IOV_MAX], offset)
        offset += written
        while written and views:
            head = views[0]
            if written >= len(head):
                written -= len(head)
                views.pop(0)
            else:
                views[0] = head[written:]
                written = 0


@dataclass(frozen=True)
class SocketBody:
    """A request body to take straight from the socket (zero copy): `prefix` is what the HTTP server had
    already read, then `length - len(prefix)` bytes follow on `fd`, which nobody else reads meanwhile."""

    prefix: bytes
    fd: int
    length: int
    cancel: threading.Event
    # The client may send nothing for this long (config http_body_timeout_s, as for any body; 0 = no limit).
    idle_timeout_s: float = 60.0


_F_SETPIPE_SZ = 1031
_SPLICE_PIPE = 1024 * 1024
_POLL_MS = 500


def splice_from_socket(
    body: SocketBody, file_fd: int, offset: int, on_block: Callable[[int, int], None]
) -> int:
    """Move the rest of `body` from its socket into `file_fd` at `offset` with splice(2) through a pipe:
    the bytes never enter user space (page cache to page cache, like `cp`). Blocking: run in a thread.
    `on_block(offset, count)` is called after each written block. Returns the bytes moved."""
    left = body.length - len(body.prefix)
    moved = 0
    pipe_r, pipe_w = os.pipe()
    try:
        with contextlib.suppress(OSError):
            fcntl.fcntl(pipe_w, _F_SETPIPE_SZ, _SPLICE_PIPE)
        poller = select.poll()
        poller.register(body.fd, select.POLLIN | select.POLLRDHUP)
        idle = 0.0
        block_start = offset
        while left:
            if body.cancel.is_set():
                raise BadRequest("the upload was cancelled")
            try:
                n = os.splice(
                    body.fd, pipe_w, min(left, _SPLICE_PIPE), flags=os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK
                )
            except BlockingIOError:
                if not poller.poll(_POLL_MS):
                    idle += _POLL_MS / 1000
                    if 0 < body.idle_timeout_s <= idle:
                        raise BadRequest(f"the client sent nothing for {body.idle_timeout_s:g} s") from None
                continue
            if n == 0:
                raise BadRequest(f"the client closed the connection with {left} bytes still to come")
            idle = 0.0
            left -= n
            while n:
                written = os.splice(pipe_r, file_fd, n, offset_dst=offset, flags=os.SPLICE_F_MOVE)
                n -= written
                offset += written
                moved += written
            if offset - block_start >= BLOCK or not left:
                on_block(block_start, offset - block_start)
                block_start = offset
    finally:
        os.close(pipe_r)
        os.close(pipe_w)
    return moved


_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_sync_file_range = getattr(_libc, "sync_file_range", None)
if _sync_file_range is not None:
    _sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
SYNC_FILE_RANGE_WRITE = 2


_fallocate = getattr(_libc, "fallocate64", None) or getattr(_libc, "fallocate", None)
if _fallocate is not None:
    _fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]


def preallocate(fd: int, length: int) -> None:
    """fallocate(2) a file's blocks for a body of known length before writing it: ext4 then skips the
    per-page delayed-allocation work (measured: a 1 GiB spliced write ~35 % faster, from 81 % to ~130 %
    of `cp`), and a disk that cannot hold the body fails (ENOSPC) before any of it is read. Not
    posix_fallocate(3): where a filesystem has no fallocate it would write zeros over the whole range;
    here such a file is simply written without."""
    if _fallocate is None or length <= 0:
        return
    if _fallocate(fd, 0, 0, length) != 0:
        err = ctypes.get_errno()
        if err in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise OSError(err, os.strerror(err))


def start_writeback(fd: int, offset: int, count: int) -> None:
    """sync_file_range(SYNC_FILE_RANGE_WRITE): start writing the range to disk, without waiting for it
    (Linux; elsewhere nothing happens and fsync does it all)."""
    if _sync_file_range is not None and count > 0:
        _sync_file_range(fd, offset, count, SYNC_FILE_RANGE_WRITE)


def fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):  # some filesystems cannot fsync a directory
            raise
    finally:
        os.close(fd)


class AtomicFile:
    """A new version of `target` being written. Blocking methods: call them from a worker thread."""

    def __init__(self, target: str, mode: int | None, *, fsync: bool) -> None:
        self.target = target
        self.mode = mode
        self.fsync = fsync
        directory, name = os.path.split(target)
        self.directory = directory or "/"
        make_parents(self.directory)
        self._old: os.stat_result | None = None
        with contextlib.suppress(FileNotFoundError):
            self._old = os.stat(target)
        if self._old is not None and stat.S_ISDIR(self._old.st_mode):
            raise BadRequest(f"{target}: is a directory")
        # 0o600 until finished: nobody reads a half-written file through its temp name either.
        self._fd, self.temp_path = tempfile.mkstemp(
            prefix=temp_prefix(name), suffix=TEMP_SUFFIX, dir=self.directory
        )
        self._done = False

    def write(self, chunks: list[bytes], offset: int) -> None:
        pwritev_all(self._fd, chunks, offset)
        self._written(offset, sum(len(c) for c in chunks))

    def _written(self, offset: int, count: int) -> None:
        if self.fsync:
            # Queue this block for writeback now: the disk works while the rest arrives, the final fsync
            # has little left, and dirty memory stays small.
            start_writeback(self._fd, offset, count)

    def splice(self, body: SocketBody) -> int:
        """Write a whole SocketBody (its prefix, then the socket's bytes without copying them)."""
        preallocate(self._fd, body.length)
        self.write([body.prefix], 0)
        return len(body.prefix) + splice_from_socket(body, self._fd, len(body.prefix), self._written)

    def commit(self) -> None:
        """Apply mode and owner, fsync, and rename over the target."""
        if self.mode is not None:
            mode = self.mode
        elif self._old is not None:
            mode = stat.S_IMODE(self._old.st_mode)  # rewriting a file without a mode keeps its mode
        else:
            mode = 0o644
        os.fchmod(self._fd, mode)
        if self._old is not None and os.geteuid() == 0:
            # Replacing a file keeps its owner (the new inode would otherwise belong to the agent).
            with contextlib.suppress(OSError):
                os.fchown(self._fd, self._old.st_uid, self._old.st_gid)
                os.fchmod(self._fd, mode)  # chown clears setuid/setgid bits: set them again
        if self.fsync:
            os.fsync(self._fd)
        os.close(self._fd)
        self._done = True
        os.replace(self.temp_path, self.target)
        if self.fsync:
            fsync_dir(self.directory)

    def discard(self) -> None:
        if self._done:
            return
        self._done = True
        with contextlib.suppress(OSError):
            os.close(self._fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.temp_path)


async def run_in(executor: Executor, func: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(executor, func, *args)


async def shielded(executor: Executor, func: Callable[..., T], *args: Any) -> T:
    """Clean-up that must run to its end even when the request is cancelled meanwhile."""
    return await asyncio.shield(run_in(executor, func, *args))


Sink = Callable[[list[bytes], int], None]


async def pump(
    chunks: AsyncIterable[bytes], write: Sink, executor: Executor, limit: int | None = None
) -> int:
    """Copy an async byte stream into `write(chunks, offset)` (run in `executor`) in BLOCK-sized pieces,
    reading on while up to DEPTH blocks are being written, so neither the socket nor the disk waits for
    the other's hiccups. Returns the byte count; raises BadRequest past `limit` bytes."""
    loop = asyncio.get_running_loop()
    pending: collections.deque[asyncio.Future[None]] = collections.deque()
    block: list[bytes] = []
    block_size = 0
    total = 0
    try:
        async for chunk in chunks:
            if not chunk:
                continue
            block.append(chunk)
            block_size += len(chunk)
            total += len(chunk)
            if limit is not None and total > limit:
                raise BadRequest(f"upload is larger than {limit} bytes")
            if block_size >= BLOCK:
                if len(pending) >= DEPTH:
                    await pending.popleft()
                pending.append(loop.run_in_executor(executor, write, block, total - block_size))
                block, block_size = [], 0
        if block:
            pending.append(loop.run_in_executor(executor, write, block, total - block_size))
        while pending:
            await pending.popleft()
    finally:
        # Never close or unlink under a write still running in its thread.
        for future in pending:
            with contextlib.suppress(BaseException):
                await asyncio.shield(future)
    return total
