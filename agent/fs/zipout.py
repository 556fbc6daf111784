"""A directory as a zip stream, built in a worker thread while it is sent: constant memory, no temp copy.

zipfile writes to a non-seekable sink (sizes go into data descriptors after each entry); the sink hands
~1 MiB chunks to the event loop through a small bounded pipe, so a slow client slows the zip thread down
instead of growing memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import threading
import zipfile
import zlib
from collections.abc import AsyncGenerator
from concurrent.futures import Executor

from .compat import set_compress_level

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024
PIPE_CHUNKS = 4
COMPRESS_LEVEL = 6  # what `zip -r` uses
SAMPLE = 256 * 1024
# Already compressed: deflating them again costs CPU and saves nothing.
_STORED = ".zip .gz .tgz .bz2 .xz .zst .7z .rar .jar .whl .crx .apk .jpg .jpeg .png .gif .webp .avif .heic"
STORED_SUFFIXES = frozenset(
    f"{_STORED} .mp3 .mp4 .m4a .webm .mkv .mov .ogg .opus .woff .woff2 .br".split(" ")
)


class Aborted(Exception):
    """The reader went away: stop building the archive."""


class Pipe:
    """Chunks from one producer thread to one asyncio consumer, at most `size` chunks in flight."""

    def __init__(self, loop: asyncio.AbstractEventLoop, size: int = PIPE_CHUNKS) -> None:
        self._loop = loop
        self._queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue()
        self._space = threading.Semaphore(size)
        self._aborted = threading.Event()

    # --- producer (thread) side ---
    def put(self, chunk: bytes) -> None:
        while not self._space.acquire(timeout=0.5):
            if self._aborted.is_set():
                raise Aborted
        if self._aborted.is_set():
            raise Aborted
        self._loop.call_soon_threadsafe(self._queue.put_nowait, chunk)

    def finish(self, error: BaseException | None = None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is reading anyway
            self._loop.call_soon_threadsafe(self._queue.put_nowait, error)

    # --- consumer (event loop) side ---
    async def get(self) -> bytes | None:
        item = await self._queue.get()
        self._space.release()
        if isinstance(item, BaseException):
            raise item
        return item

    def abort(self) -> None:
        self._aborted.set()
        self._space.release()


class _Sink:
    """The write-only, non-seekable file zipfile writes into."""

    def __init__(self, pipe: Pipe) -> None:
        self._pipe = pipe
        self._buffer = bytearray()

    def write(self, data: bytes) -> int:
        self._buffer += data
        if len(self._buffer) >= CHUNK:
            self._pipe.put(bytes(self._buffer))
            self._buffer.clear()
        return len(data)

    def flush(self) -> None:
        pass  # zipfile flushes after every header; sending tiny chunks would only cost

    def drain(self) -> None:
        if self._buffer:
            self._pipe.put(bytes(self._buffer))
            self._buffer.clear()


def _walk(root: str, rel: str = "") -> list[tuple[str, str, os.stat_result]]:
    """(full path, archive name, lstat) of every entry under `root`, depth first, names sorted."""
    out: list[tuple[str, str, os.stat_result]] = []
    directory = os.path.join(root, rel) if rel else root
    with os.scandir(directory) as entries:
        items = sorted(entries, key=lambda e: e.name)
    for entry in items:
        name = f"{rel}/{entry.name}" if rel else entry.name
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue  # gone since the listing
        out.append((entry.path, name, st))
    return out


def _add_tree(archive: zipfile.ZipFile, root: str) -> None:
    stack = [""]
    while stack:
        rel = stack.pop()
        try:
            entries = _walk(root, rel)
        except FileNotFoundError:
            continue  # a subdirectory removed while we were zipping
        subdirs: list[str] = []
        for full, name, st in entries:
            if stat.S_ISDIR(st.st_mode):
                info = zipfile.ZipInfo.from_file(full, name, strict_timestamps=False)
                info.CRC = info.compress_size = info.file_size = 0  # mkdir(ZipInfo) expects them set
                archive.mkdir(info)
                subdirs.append(name)
            elif stat.S_ISLNK(st.st_mode):
                # Stored as a link (never followed): nothing outside the directory leaks into the archive.
                try:
                    target = os.readlink(full)
                except FileNotFoundError:
                    continue
                info = zipfile.ZipInfo.from_file(full, name, strict_timestamps=False)
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
                info.compress_type = zipfile.ZIP_STORED
                archive.writestr(info, target.encode("utf-8", "surrogateescape"))
            elif stat.S_ISREG(st.st_mode):
                _add_file(archive, full, name)
            # sockets, FIFOs and devices are skipped, as the reference service does
        stack.extend(reversed(subdirs))


def _incompressible(head: bytes) -> bool:
    """Deflating random-looking data runs at ~60 MB/s and saves nothing: a quick level-1 try on a sample
    of the file's start decides (small files are simply compressed)."""
    if len(head) < SAMPLE:
        return False
    sample = head[:SAMPLE]
    return len(zlib.compress(sample, 1)) > len(sample) * 0.97


def _add_file(archive: zipfile.ZipFile, full: str, name: str) -> None:
    try:
        source = open(full, "rb")  # noqa: SIM115 - closed by the with below
    except FileNotFoundError:
        return
    with source:
        info = zipfile.ZipInfo.from_file(full, name, strict_timestamps=False)
        head = source.read(CHUNK)
        stored = not head or os.path.splitext(name)[1].lower() in STORED_SUFFIXES or _incompressible(head)
        info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
        set_compress_level(info, None if stored else COMPRESS_LEVEL)
        # zip64 when the file is big or might grow past 4 GiB while we read it.
        with archive.open(info, "w", force_zip64=info.file_size > (1 << 31)) as target:
            chunk = head
            while chunk:
                target.write(chunk)
                chunk = source.read(CHUNK)


def build_zip(root: str, pipe: Pipe) -> None:
    """Write the zip of `root` into `pipe` (runs in a worker thread)."""
    sink = _Sink(pipe)
    try:
        with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED, strict_timestamps=False) as archive:  # type: ignore[call-overload]
            _add_tree(archive, root)
        sink.drain()
    except Aborted:
        log.info("zip of %s abandoned: the client went away", root)
        pipe.finish()
        return
    except BaseException as exc:
        pipe.finish(exc)
        return
    pipe.finish()


async def zip_stream(root: str, executor: Executor) -> AsyncGenerator[bytes, None]:
    """The zip of `root`, chunk by chunk; the worker stops when the consumer stops iterating."""
    loop = asyncio.get_running_loop()
    pipe = Pipe(loop)
    worker = loop.run_in_executor(executor, build_zip, root, pipe)
    try:
        while (chunk := await pipe.get()) is not None:
            yield chunk
    finally:
        pipe.abort()
        with contextlib.suppress(BaseException):
            await asyncio.shield(worker)
