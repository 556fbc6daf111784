"""Log files as streams of lines: `tail -F` (follow the name through truncation and rotation) or read once.

A stream opens its file when the request comes, so a missing file is a 404 before any byte is streamed, and
`follow` starts at the size the file has then. It reads with `pread` in the service's own small thread pool
and waits, when it has read everything, on the shared inotify instance (`inotify.py`) for an event naming its
file; a slow timer is only a safety net (and the way back when the directory's watch is gone).

When woken it reads what was appended; at the end of what its open file holds it checks the name: a file
smaller than the offset read so far was truncated (read again from its start); a name that now holds another
inode was rotated (what the old file still held was read first; the new one is read from its start); a name
that is gone (deleted or renamed, not yet recreated) keeps the stream waiting for a new file there.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime
import logging
import os
import stat
from collections.abc import AsyncGenerator, Callable
from typing import Any, TypeVar

from ..config import Config
from ..errors import AgentError, BadRequest, NotFound
from ..fs.paths import FsPaths, os_error
from ..supervisor_rpc import Supervisor
from ..timefmt import rfc3339
from .inotify import Inotify, Subscription
from .models import LogEvent, LogsStreamRequest

log = logging.getLogger(__name__)
T = TypeVar("T")

READ_CHUNK = 256 * 1024
# A line still without its newline is sent once the file has been quiet this long (a prompt, a crash's last
# words); what follows it later arrives as the next line.
PARTIAL_FLUSH_S = 0.5
# The safety net while inotify watches the directory, and the recheck interval when it cannot.
SAFETY_RECHECK_S = 5.0
UNWATCHED_RECHECK_S = 1.0


def now_rfc3339() -> str:
    return rfc3339(datetime.datetime.now(datetime.UTC))


def _cut(buf: bytearray | bytes, start: int, end: int) -> int:
    """Where to split a too-long line near `end`: not inside a UTF-8 sequence (back off at most 3 bytes)."""
    cut = end
    while cut > start + 1 and end - cut < 3 and (buf[cut] & 0xC0) == 0x80:
        cut -= 1
    return cut if (buf[cut] & 0xC0) != 0x80 else end


class LineSplitter:
    """Bytes in, lines out (without `\\n` or a trailing `\\r`); a line longer than `max_bytes` comes out
    as pieces of at most `max_bytes` bytes. What has no newline yet is held (bounded by `max_bytes`)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._buf = bytearray()

    @property
    def pending(self) -> bool:
        return bool(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buf
        buf += data
        out: list[bytes] = []
        start = 0
        limit = self.max_bytes
        while True:
            newline = buf.find(b"\n", start, start + limit + 1)
            if newline >= 0:
                line = bytes(buf[start:newline])
                out.append(line[:-1] if line.endswith(b"\r") else line)
                start = newline + 1
            elif len(buf) - start > limit:
                cut = _cut(buf, start, start + limit)
                out.append(bytes(buf[start:cut]))
                start = cut
            else:
                break
        del buf[:start]
        return out

    def flush(self) -> bytes | None:
        if not self._buf:
            return None
        line = bytes(self._buf)
        self._buf.clear()
        return line[:-1] if line.endswith(b"\r") else line


def decode(line: bytes) -> str:
    return line.decode("utf-8", errors="replace")  # invalid UTF-8 becomes U+FFFD, never an error


class LogFile:
    """One stream's file: opened by `LogsService.open`, read by `events()`, closed by `close()`."""

    def __init__(self, service: LogsService, real: str, shown: str, follow: bool) -> None:
        self.service = service
        self.real = real
        self.shown = shown
        self.follow = follow
        self.fd = -1
        self.pos = 0
        self.limit = 0  # follow=false: the size the file had when the request came
        # Woken by inotify: an event for the file's name in its directory, or for the open file itself.
        self.woken = asyncio.Event()
        self.dir_sub: Subscription | None = None
        self.file_sub: Subscription | None = None
        self._inflight: concurrent.futures.Future[Any] | None = None
        self._closed = False

    # --- worker-thread side -------------------------------------------------------------------------

    def _open_file(self) -> int:
        """Open `real` for reading; a regular file only. O_NONBLOCK so that a FIFO cannot hang the open."""
        try:
            fd = os.open(self.real, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except FileNotFoundError:
            raise NotFound(f"{self.shown}: no such file") from None
        except OSError as exc:
            raise os_error(exc, self.shown) from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise BadRequest(f"{self.shown}: is {kind}; only regular files can be streamed")
        return fd

    def _open(self) -> tuple[int | None, int | None]:
        self.fd = self._open_file()
        size = os.fstat(self.fd).st_size
        self.pos = size if self.follow else 0
        self.limit = size
        return self._watches() if self.follow else (None, None)

    def _watches(self) -> tuple[int | None, int | None]:
        """inotify watches of the file's directory and of the open file (None where one cannot be had)."""
        inotify = self.service.inotify
        if inotify is None:
            return None, None
        directory = os.path.dirname(self.real) or "/"
        return self._watch(lambda: inotify.add_directory(directory)), self._watch(
            lambda: inotify.add_open_file(self.fd)
        )

    def _watch(self, add: Callable[[], int]) -> int | None:
        try:
            return add()
        except OSError as exc:  # the directory is gone, or fs.inotify.max_user_watches is reached
            log.debug("cannot watch %s: %s", self.real, exc)
            return None

    def _read_once(self) -> bytes:
        """follow=false: the next chunk up to the size the file had at the start."""
        data = os.pread(self.fd, min(READ_CHUNK, self.limit - self.pos), self.pos)
        self.pos += len(data)
        return data

    def _step(self) -> tuple[bytes, str]:
        """follow=true: ("", change) or (data, ""); change is "truncated", "rotated" or "" (nothing new)."""
        data = os.pread(self.fd, READ_CHUNK, self.pos)
        if data:
            self.pos += len(data)
            return data, ""
        held = os.fstat(self.fd)
        if held.st_size < self.pos:
            self.pos = 0
            return b"", "truncated"
        try:
            named = os.stat(self.real)
        except OSError:
            return b"", ""  # gone for now (deleted or renamed away): wait for a new file under the name
        if (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino):
            return b"", ""
        try:
            fd = self._open_file()
        except AgentError:
            return b"", ""  # replaced by something we cannot read (yet): keep waiting
        os.close(self.fd)
        self.fd, self.pos = fd, 0
        return b"", "rotated"

    # --- event-loop side ----------------------------------------------------------------------------

    async def _run(self, fn: Callable[[], T]) -> T:
        future = self.service.pool.submit(fn)
        self._inflight = future
        return await asyncio.wrap_future(future)

    def _subscribe(self, dir_wd: int | None, file_wd: int | None) -> None:
        inotify = self.service.inotify
        if inotify is None or self._closed:
            return
        old = [self.dir_sub, self.file_sub]
        self.dir_sub = (
            None if dir_wd is None else inotify.subscribe(dir_wd, os.path.basename(self.real), self.woken)
        )
        self.file_sub = None if file_wd is None else inotify.subscribe(file_wd, "", self.woken)
        for sub in old:  # after subscribing the new ones: a shared kernel watch is not dropped in between
            if sub is not None:
                inotify.unsubscribe(sub)

    async def open(self) -> None:
        self._subscribe(*await self._run(self._open))

    async def _resubscribe(self) -> None:
        if self.service.inotify is not None:
            self._subscribe(*await self._run(self._watches))

    def _events(self, splitter: LineSplitter, data: bytes) -> list[LogEvent]:
        stamp = now_rfc3339()
        return [LogEvent(stamp, decode(line)) for line in splitter.feed(data)]

    @staticmethod
    def _flushed(splitter: LineSplitter) -> list[LogEvent]:
        line = splitter.flush()
        return [] if line is None else [LogEvent(now_rfc3339(), decode(line))]

    async def events(self) -> AsyncGenerator[list[LogEvent], None]:
        """The lines as LogEvents, in batches (what one read brought), until closed (follow) or all read."""
        splitter = LineSplitter(self.service.config.logs_max_line_bytes)
        try:
            if not self.follow:
                while self.pos < self.limit:
                    data = await self._run(self._read_once)
                    if not data:
                        break  # it was truncated meanwhile
                    if batch := self._events(splitter, data):
                        yield batch
                if batch := self._flushed(splitter):
                    yield batch
                return
            while True:
                self.woken.clear()  # before reading: an event that comes while we read ends the wait at once
                while True:
                    data, change = await self._run(self._step)
                    if data:
                        if batch := self._events(splitter, data):
                            yield batch
                    elif change:
                        # What was held of a last line belongs to the old contents.
                        if batch := self._flushed(splitter):
                            yield batch
                        if change == "rotated":
                            await self._resubscribe()  # the directory may be a new one too
                    else:
                        break
                watched = self.dir_sub is not None and self.dir_sub.alive
                timeout = SAFETY_RECHECK_S if watched else UNWATCHED_RECHECK_S
                if splitter.pending:
                    timeout = min(timeout, PARTIAL_FLUSH_S)
                woke = False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.woken.wait(), timeout)
                    woke = True
                if not watched:
                    await self._resubscribe()
                if not woke and splitter.pending and (batch := self._flushed(splitter)):
                    yield batch
        finally:
            self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.service.streams -= 1
        inotify = self.service.inotify
        for sub in (self.dir_sub, self.file_sub):
            if sub is not None and inotify is not None:
                inotify.unsubscribe(sub)
        self.dir_sub = self.file_sub = None
        # A read may still be running in its thread (the stream was cancelled meanwhile): close after it.
        inflight = self._inflight
        if inflight is not None and not inflight.done():
            inflight.add_done_callback(lambda _: self._close_fd())
        else:
            self._close_fd()

    def _close_fd(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)


class LogsService:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.paths = FsPaths(config.fs_root)
        self.supervisor = Supervisor(config.supervisor_socket)
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="logs")
        self.inotify: Inotify | None = None
        self.streams = 0

    def start(self) -> None:
        try:
            self.inotify = Inotify()
        except OSError as exc:  # fs.inotify.max_user_instances reached: streams recheck on a timer
            log.warning("no inotify instance for log streams (%s); they recheck on a timer", exc)

    async def _thread(self, fn: Callable[[], T]) -> T:
        return await asyncio.wrap_future(self.pool.submit(fn))

    async def _resolve(self, req: LogsStreamRequest) -> tuple[str, str]:
        """(real path, the name errors use) of the requested log."""
        if req.source == "path":
            if not req.path:
                raise BadRequest("path is required when source is path")
            path = req.path
            return await self._thread(lambda: self.paths.resolve(path)), path
        name = req.supervisor_process
        if not name:
            raise BadRequest("supervisor_process is required when source is supervisor")
        if not name.isprintable():
            # No program has such a name, and XML-RPC cannot carry control characters (supervisord's
            # answer to them was a 500).
            raise NotFound(f"supervisord has no program {name!r}")
        info = await self.supervisor.program(name)
        logfile = info.stdout_logfile
        if not logfile or logfile.upper() in ("NONE", "/DEV/STDOUT", "/DEV/STDERR"):
            raise NotFound(f"supervisord keeps no log file for program {name!r}")
        return await self._thread(lambda: os.path.realpath(logfile)), f"the log of program {name!r}"

    async def open(self, req: LogsStreamRequest) -> LogFile:
        """The requested log, opened (404 if it is not there); `events()` then streams it."""
        limit = self.config.logs_max_streams
        if self.streams >= limit:
            raise BadRequest(f"too many log streams (at most {limit}); close one first")
        self.streams += 1  # taken now, so that requests racing past the check still count
        try:
            real, shown = await self._resolve(req)
        except BaseException:
            self.streams -= 1
            raise
        logfile = LogFile(self, real, shown, req.follow)  # gives the slot back when closed
        try:
            await logfile.open()
        except BaseException:
            logfile.close()
            raise
        return logfile

    async def close(self) -> None:
        if self.inotify is not None:
            self.inotify.close()
        await asyncio.to_thread(self.pool.shutdown, wait=True, cancel_futures=True)
