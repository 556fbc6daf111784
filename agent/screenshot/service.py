"""Screenshots: an MIT-SHM grab with mss (one instance per worker thread) and a fast PNG or JPEG encode.

Encoding, not grabbing, is the cost (a grab of 1920x1080 is < 1 ms). PNG uses no row filter and zlib level 1,
and large images are deflated in parallel stripes that are joined into one valid zlib stream (the way pigz
does it), so both cores work on one screenshot.

Any failure of a grab (mss's xcb bindings raise AssertionError on a dead connection) means the X server
went away: every cached grabber is forgotten (they all talk to the same dead server), the grab is tried once
more on a fresh connection (X may already be back), and otherwise the answer is 503 until X answers again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import functools
import io
import logging
import struct
import threading
import zlib
from collections.abc import Callable
from typing import Any

import mss
from PIL import Image

from ..errors import BadRequest, Unavailable

log = logging.getLogger(__name__)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PARALLEL_MIN_BYTES = 1 << 20  # below this, one stripe is faster than handing work to another thread


@dataclasses.dataclass(frozen=True)
class Region:
    x: int
    y: int
    width: int
    height: int


@dataclasses.dataclass(frozen=True)
class Image_:
    data: bytes
    content_type: str


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_scanlines(rgb: bytes | bytearray | memoryview, width: int, height: int) -> bytes:
    """Rows with the 'None' filter byte in front of each."""
    stride = width * 3
    view = memoryview(rgb)
    return b"".join(b"\x00" + view[row * stride : (row + 1) * stride] for row in range(height))


def deflate_parallel(
    data: bytes, level: int, pool: concurrent.futures.Executor | None, stripes: int
) -> bytes:
    """One zlib stream built from independently deflated stripes (each ends on a byte boundary with a sync
    flush, the last one finishes the stream); the Adler-32 is computed over the whole input."""
    if pool is None or stripes < 2 or len(data) < _PARALLEL_MIN_BYTES:
        return zlib.compress(data, level)
    size = -(-len(data) // stripes)
    view = memoryview(data)

    def deflate(index: int) -> bytes:
        compressor = zlib.compressobj(level, zlib.DEFLATED, -15)
        part = compressor.compress(view[index * size : (index + 1) * size])
        return part + compressor.flush(zlib.Z_FINISH if index == stripes - 1 else zlib.Z_SYNC_FLUSH)

    futures = [pool.submit(deflate, i) for i in range(1, stripes)]
    first = deflate(0)
    header = b"\x78\x01"  # deflate, 32 KiB window, "fastest" level hint; FCHECK makes it a multiple of 31
    return header + first + b"".join(f.result() for f in futures) + struct.pack(">I", zlib.adler32(data))


def encode_png(
    rgb: bytes | bytearray,
    width: int,
    height: int,
    level: int = 1,
    pool: concurrent.futures.Executor | None = None,
    stripes: int = 1,
) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    idat = deflate_parallel(png_scanlines(rgb, width, height), level, pool, stripes)
    return PNG_SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def encode_jpeg(bgra: bytes | bytearray, width: int, height: int, quality: int = 80) -> bytes:
    out = io.BytesIO()
    Image.frombuffer("RGB", (width, height), bytes(bgra), "raw", "BGRX", 0, 1).save(
        out, "JPEG", quality=quality
    )
    return out.getvalue()


class ScreenshotService:
    def __init__(self, display_name: str, cursor_visible: Callable[[], bool], workers: int = 2) -> None:
        self.display_name = display_name
        self._cursor_visible = cursor_visible
        self._executor = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="screenshot")
        self._deflaters = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="deflate")
        self._stripes = workers
        self._local = threading.local()
        self._all: list[Any] = []
        self._lock = threading.Lock()
        # Bumped when a grab fails: every grabber made before belongs to a dead X connection. A grabber is
        # closed by the thread that made it (mss instances are not shared between threads).
        self._generation = 0

    def _grabber(self, with_cursor: bool) -> Any:
        key = "with_cursor" if with_cursor else "plain"
        cached: tuple[int, Any] | None = getattr(self._local, key, None)
        if cached is not None and cached[0] == self._generation:
            return cached[1]
        if cached is not None:
            self._discard(key)
        try:
            grabber = mss.MSS(display=self.display_name, with_cursor=with_cursor)
        except Exception as exc:
            raise Unavailable(f"X display {self.display_name} is not available: {exc}") from None
        setattr(self._local, key, (self._generation, grabber))
        with self._lock:
            self._all.append(grabber)
        return grabber

    def _discard(self, key: str) -> None:
        cached: tuple[int, Any] | None = getattr(self._local, key, None)
        setattr(self._local, key, None)
        if cached is not None:
            grabber = cached[1]
            with self._lock:
                if grabber in self._all:
                    self._all.remove(grabber)
            with contextlib.suppress(Exception):
                grabber.close()

    def _forget_all(self) -> None:
        with self._lock:
            self._generation += 1
        for key in ("plain", "with_cursor"):
            self._discard(key)

    def _grab(self, with_cursor: bool, region: Region | None) -> Any:
        grabber = self._grabber(with_cursor)
        screen = grabber.monitors[1] if len(grabber.monitors) > 1 else grabber.monitors[0]
        width, height = int(screen["width"]), int(screen["height"])
        if region is not None:
            check_region(region, width, height)
            box = {"left": region.x, "top": region.y, "width": region.width, "height": region.height}
        else:
            box = {"left": int(screen["left"]), "top": int(screen["top"]), "width": width, "height": height}
        return grabber.grab(box)

    def _capture(self, region: Region | None, jpeg: bool) -> Image_:
        with_cursor = self._cursor_visible()
        for attempt in (1, 2):
            try:
                shot = self._grab(with_cursor, region)
                break
            except (BadRequest, Unavailable):
                raise
            except Exception as exc:
                # Whatever mss raised (ScreenShotError, xcb's AssertionError, OSError), the connection is
                # no good: start over on a fresh one, once; X may already be back after a restart.
                self._forget_all()
                if attempt == 2:
                    raise Unavailable(f"screen grab failed: {exc or type(exc).__name__}") from None
                log.info("screen grab failed (%r); retrying on a new X connection", exc)
        w, h = shot.size
        if jpeg:
            return Image_(encode_jpeg(shot.bgra, w, h), "image/jpeg")
        return Image_(encode_png(shot.rgb, w, h, pool=self._deflaters, stripes=self._stripes), "image/png")

    async def capture(self, region: Region | None = None, *, jpeg: bool = False) -> Image_:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(self._capture, region, jpeg))

    async def close(self) -> None:
        self._executor.shutdown(wait=True)
        self._deflaters.shutdown(wait=True)
        with self._lock:
            grabbers, self._all = self._all, []
        for grabber in grabbers:
            with contextlib.suppress(Exception):
                grabber.close()


def check_region(region: Region, width: int, height: int) -> None:
    if region.width <= 0 or region.height <= 0:
        raise BadRequest(f"region width and height must be positive, got {region.width}x{region.height}")
    if region.x < 0 or region.y < 0:
        raise BadRequest(f"region origin must be non-negative, got ({region.x}, {region.y})")
    if region.x + region.width > width or region.y + region.height > height:
        raise BadRequest(
            f"region ({region.x}, {region.y}, {region.width}x{region.height}) is outside the screen "
            f"({width}x{height})"
        )
