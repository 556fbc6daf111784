"""The private library APIs agent/fs/compat.py adapts still exist and behave as the agent uses them.

These fail loudly when watchfiles, zipfile or aiohttp change underneath: they check the private names are
there and drive each adapter against the real library (a real inotify watch, a real zip, a real aiohttp
server on loopback), not a stand-in.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import threading
import zipfile
from pathlib import Path

from aiohttp import web
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler
from watchfiles._rust_notify import RustNotify

from agent.fs import compat

# --- watchfiles ---


def test_rustnotify_is_there_with_the_methods_used() -> None:
    for name in ("watch", "close", "__enter__", "__exit__"):
        assert callable(getattr(RustNotify, name, None)), name
    assert (compat.ADDED, compat.MODIFIED, compat.DELETED) == (1, 2, 3)


def _watch_in_a_thread(
    path: Path, ready: threading.Event, stop: threading.Event, until: set[tuple[int, str]]
) -> set[tuple[int, str]]:
    """What a watch thread of the agent does: batches until `until` was seen (or stop)."""
    seen: set[tuple[int, str]] = set()
    with compat.inotify(str(path), recursive=True) as notify:
        ready.set()
        while not stop.is_set() and not until <= seen:
            batch = compat.next_batch(notify, 200, 25, stop)
            if batch is not None:  # None: stopped, or a signal arrived (which a thread ignores)
                seen |= batch
        assert compat.next_batch(notify, 200, 25, _stopped()) is None  # a set stop event ends a wait
    return seen


def _stopped() -> threading.Event:
    event = threading.Event()
    event.set()
    return event


async def test_a_watch_reports_batches_of_changes_and_ends_on_its_stop_event(tmp_path: Path) -> None:
    stop = threading.Event()
    # (A file made in a new subdirectory at once may come before inotify watches it: watch.py scans those.)
    expected = {(compat.ADDED, str(tmp_path / "sub")), (compat.ADDED, str(tmp_path / "a.txt"))}
    ready = threading.Event()
    watching = asyncio.ensure_future(asyncio.to_thread(_watch_in_a_thread, tmp_path, ready, stop, expected))
    try:
        await asyncio.to_thread(ready.wait, 10)
        (tmp_path / "sub").mkdir()
        (tmp_path / "a.txt").write_text("x")
        seen = await asyncio.wait_for(asyncio.shield(watching), 10)
    finally:
        stop.set()
        await watching
    assert expected <= seen


def test_watching_a_missing_directory_is_file_not_found(tmp_path: Path) -> None:
    try:
        compat.inotify(str(tmp_path / "missing"), recursive=False)
    except FileNotFoundError:
        return
    raise AssertionError("no FileNotFoundError for a missing directory")


# --- zipfile ---


def test_the_per_entry_compression_level_reaches_the_compressor() -> None:
    text = b"".join(f"line {i} of some text that compresses {i % 97}\n".encode() for i in range(40_000))
    sizes: dict[int, int] = {}
    for level in (1, 9):
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as archive:
            info = zipfile.ZipInfo("a.txt")
            info.compress_type = zipfile.ZIP_DEFLATED
            compat.set_compress_level(info, level)
            with archive.open(info, "w") as target:
                target.write(text)
        with zipfile.ZipFile(io.BytesIO(out.getvalue())) as archive:
            assert archive.read("a.txt") == text
            sizes[level] = archive.getinfo("a.txt").compress_size
    assert sizes[9] < sizes[1], sizes  # the level was used: level 9 packs this text tighter


# --- aiohttp ---


def test_the_aiohttp_internals_the_splice_path_uses_are_there() -> None:
    assert isinstance(getattr(web.BaseRequest, "protocol", None), property)
    assert callable(getattr(RequestHandler, "close", None))
    assert callable(getattr(StreamReader, "read_nowait", None))
    assert callable(getattr(StreamReader, "feed_eof", None))


def _read_exactly(fd: int, count: int) -> bytes:
    """The rest of a detached body, read from the socket's fd as the splice path does (blocking)."""
    out = bytearray()
    os.set_blocking(fd, True)
    try:
        while len(out) < count:
            chunk = os.read(fd, min(count - len(out), 1 << 20))
            if not chunk:
                break
            out += chunk
    finally:
        os.set_blocking(fd, False)
    return bytes(out)


async def test_a_detached_body_is_read_from_the_socket_and_the_connection_then_closes() -> None:
    async def handler(request: web.Request) -> web.Response:
        length = request.content_length
        assert length is not None and request.transport is not None
        prefix = compat.detach_body(request)
        sock = request.transport.get_extra_info("socket")
        rest = await asyncio.to_thread(_read_exactly, sock.fileno(), length - len(prefix))
        compat.end_detached_body(request)
        response = web.Response(text=hashlib.sha256(prefix + rest).hexdigest())
        response.force_close()
        return response

    app = web.Application()
    app.router.add_put("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    body = os.urandom(3 * 1024 * 1024 + 17)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        head = f"PUT / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        writer.write(head + body)
        await writer.drain()
        # After the response the server closes the connection: reading to EOF ends.
        reply = await asyncio.wait_for(reader.read(), 30)
        writer.close()
        status, _, rest = reply.partition(b"\r\n")
        headers, _, text = rest.partition(b"\r\n\r\n")
        assert status == b"HTTP/1.1 200 OK", reply[:200]
        assert b"connection: close" in headers.lower()
        assert text.decode() == hashlib.sha256(body).hexdigest()
    finally:
        await runner.cleanup()
