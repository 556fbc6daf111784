"""Screenshots: an MIT-SHM grab with mss (one instance per worker thread) and a fast PNG, JPEG or WebP encode.

Encoding, not grabbing, is the cost (a grab of 1920x1080 is ~2 ms). PNG uses no row filter and ISA-L
(`isal`) deflate at its level 2: about 5x faster than zlib level 1 for a ~3 % larger file (measured in
docs/benchmarks.md; "Sub"/"Up" filters made screen content larger, not smaller). Large images are split into
row stripes that are converted, filtered and deflated in parallel and joined into one valid zlib stream (the
way pigz does it), so both cores work on one screenshot. BGRX -> RGB and the filter bytes are done by
Pillow in C, not by mss's .rgb (Python slicing, twice as slow) and a join over the rows.

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
from typing import Any, Literal

import mss
from isal import isal_zlib
from PIL import Image

from ..errors import BadRequest, Unavailable

log = logging.getLogger(__name__)

ImageKind = Literal["png", "jpeg", "webp"]
CONTENT_TYPES: dict[ImageKind, str] = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_LEVEL = 2  # ISA-L's levels are 0-3; 2 is within ~3 % of zlib level 1's size, 3 is 4x slower than 2
JPEG_QUALITY = 80
WEBP_QUALITY = 80
_PARALLEL_MIN_BYTES = 1 << 20  # below this, one stripe is faster than handing work to another thread
_ADLER_BASE = 65521


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


def _rgb_image(bgra: bytes | bytearray | memoryview, width: int, height: int) -> Image.Image:
    """The grab (mss's BGRX rows) as a Pillow RGB image, without copying the input first."""
    # Pillow reads any buffer (a memoryview of a stripe too); its stubs only name bytes and bytearray.
    return Image.frombuffer("RGB", (width, height), bgra, "raw", "BGRX", 0, 1)  # type: ignore[arg-type]


def png_scanlines(rgb: bytes | bytearray | memoryview, width: int, height: int) -> bytes:
    """Rows with the 'None' filter byte in front of each."""
    stride = width * 3
    view = memoryview(rgb)
    return b"".join(b"\x00" + view[row * stride : (row + 1) * stride] for row in range(height))


def adler32_combine(first: int, second: int, second_length: int) -> int:
    """The Adler-32 of A+B from those of A and B (zlib's adler32_combine, which Python does not expose)."""
    rem = second_length % _ADLER_BASE
    sum1 = first & 0xFFFF
    sum2 = (rem * sum1) % _ADLER_BASE
    sum1 += (second & 0xFFFF) + _ADLER_BASE - 1
    sum2 += (first >> 16) + (second >> 16) + _ADLER_BASE - rem
    sum1 %= _ADLER_BASE
    sum2 %= _ADLER_BASE
    return sum1 | (sum2 << 16)


def _deflate_stripe(
    bgra: memoryview, width: int, rows: int, level: int, last: bool
) -> tuple[bytes, int, int]:
    """Raw deflate of some rows' scanlines, ending on a byte boundary (sync flush) unless it is the last
    stripe, which finishes the stream; with the Adler-32 and length of those scanlines."""
    # Pillow's raw encoder packs each RGB row into a stride one byte longer and zero-pads it: rows followed
    # by a 0. Shifted by one byte (a 0 in front, the last 0 dropped) that is exactly the 'None'-filtered
    # scanlines, in one C pass instead of a Python join over the rows.
    padded = memoryview(_rgb_image(bgra, width, rows).tobytes("raw", "RGB", width * 3 + 1))[:-1]
    compressor = isal_zlib.compressobj(level, isal_zlib.DEFLATED, -15)
    data = compressor.compress(b"\x00") + compressor.compress(padded)
    data += compressor.flush(isal_zlib.Z_FINISH if last else isal_zlib.Z_SYNC_FLUSH)
    return data, isal_zlib.adler32(padded, isal_zlib.adler32(b"\x00")), len(padded) + 1


def encode_png(
    bgra: bytes | bytearray | memoryview,
    width: int,
    height: int,
    level: int = PNG_LEVEL,
    pool: concurrent.futures.Executor | None = None,
    stripes: int = 1,
) -> bytes:
    """A PNG (8-bit RGB, no filter) of BGRX pixels; with a pool, row stripes are encoded in parallel and
    joined into one zlib stream whose Adler-32 covers the whole."""
    if pool is None or width * height * 3 < _PARALLEL_MIN_BYTES:
        stripes = 1
    stripes = max(1, min(stripes, height))
    view = memoryview(bgra).cast("B")
    rows = -(-height // stripes)
    bounds = [(top, min(top + rows, height)) for top in range(0, height, rows)]

    def stripe(index: int) -> tuple[bytes, int, int]:
        top, bottom = bounds[index]
        part = view[top * width * 4 : bottom * width * 4]
        return _deflate_stripe(part, width, bottom - top, level, index == len(bounds) - 1)

    futures = [pool.submit(stripe, i) for i in range(1, len(bounds))] if pool is not None else []
    parts = [stripe(0), *(f.result() for f in futures)]
    adler = 1
    for _, part_adler, length in parts:
        adler = adler32_combine(adler, part_adler, length)
    header = b"\x78\x01"  # deflate, 32 KiB window, "fastest" level hint; FCHECK makes it a multiple of 31
    idat = header + b"".join(data for data, _, _ in parts) + struct.pack(">I", adler)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return PNG_SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def encode_jpeg(
    bgra: bytes | bytearray | memoryview, width: int, height: int, quality: int = JPEG_QUALITY
) -> bytes:
    # Pillow's wheels carry libjpeg-turbo; 4:2:0 (its default at q80) is the fastest and smallest here.
    out = io.BytesIO()
    _rgb_image(bgra, width, height).save(out, "JPEG", quality=quality, optimize=False)
    return out.getvalue()


def encode_webp(
    bgra: bytes | bytearray | memoryview, width: int, height: int, quality: int = WEBP_QUALITY
) -> bytes:
    # method=0 is libwebp's fastest; lossy, like JPEG.
    out = io.BytesIO()
    _rgb_image(bgra, width, height).save(out, "WEBP", quality=quality, method=0)
    return out.getvalue()


ENCODERS: dict[ImageKind, Callable[[bytes | bytearray | memoryview, int, int], bytes]] = {
    "jpeg": encode_jpeg,
    "webp": encode_webp,
}


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

    def _capture(self, region: Region | None, kind: ImageKind) -> Image_:
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
        # shot.raw is the grab's own buffer (BGRA); .rgb and .bgra would each copy it first.
        if kind == "png":
            data = encode_png(shot.raw, w, h, pool=self._deflaters, stripes=self._stripes)
        else:
            data = ENCODERS[kind](shot.raw, w, h)
        return Image_(data, CONTENT_TYPES[kind])

    async def capture(self, region: Region | None = None, *, kind: ImageKind = "png") -> Image_:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(self._capture, region, kind))

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
