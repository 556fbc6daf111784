"""The fs package's uses of libraries' private APIs, each behind one small adapter.

Nothing else in agent/fs touches these internals; tests/agent/fs/test_compat.py checks that they still
exist and behave as used here, so a library upgrade that changes them fails there, loudly, not in a watch
thread or half-way through an upload.

- watchfiles: `watchfiles.watch()` is a generator that owns its own stop logic; a watch thread needs the
  underlying `_rust_notify.RustNotify`, whose `watch()` takes our stop event and returns one batch.
- zipfile: `ZipInfo` has no public per-entry compression level (`ZipFile.open(info, "w")` reads
  `_compresslevel`; Python 3.13 calls it `compress_level`).
- aiohttp: taking a request body straight from the socket (splice) needs the server to stop reading
  that connection, hand over what it already buffered, and close it after the response.
"""

from __future__ import annotations

import errno
import os
import threading
import zipfile
from typing import TYPE_CHECKING

from watchfiles import Change
from watchfiles._rust_notify import RustNotify

if TYPE_CHECKING:  # no aiohttp at run time: the service side imports this module too
    from aiohttp import web

# --- watchfiles ------------------------------------------------------------------------------------------

ADDED, MODIFIED, DELETED = int(Change.added), int(Change.modified), int(Change.deleted)
_POLL_DELAY_MS = 300  # only used in polling mode, which we never force

Batch = set[tuple[int, str]]


def inotify(path: str, recursive: bool) -> RustNotify:
    """An inotify watch of `path`, watching from now on (a context manager; leaving it closes inotify).
    FileNotFoundError when `path` is gone; other errors are typically the system's inotify limits."""
    # watch_paths, debug, force_polling, poll_delay_ms, recursive, ignore_permission_denied
    notify = RustNotify([path], False, False, _POLL_DELAY_MS, recursive, True)
    if not os.path.isdir(path):
        # watchfiles 1.x watches a missing path silently (nothing would ever be reported).
        notify.close()
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
    return notify


def next_batch(notify: RustNotify, debounce_ms: int, step_ms: int, stop: threading.Event) -> Batch | None:
    """The next batch of (ADDED | MODIFIED | DELETED, path) changes: it ends `step_ms` after the last change
    and spans at most `debounce_ms`. None when nothing happened before `stop` was set (or on a signal)."""
    raw = notify.watch(debounce_ms, step_ms, 0, stop)
    return None if isinstance(raw, str) else raw


# --- zipfile ---------------------------------------------------------------------------------------------


def set_compress_level(info: zipfile.ZipInfo, level: int | None) -> None:
    """The deflate level `ZipFile.open(info, "w")` uses for this entry (None: zipfile's default)."""
    if hasattr(zipfile.ZipInfo, "compress_level"):  # Python 3.13+
        info.compress_level = level  # type: ignore[attr-defined,unused-ignore]
    else:
        info._compresslevel = level  # type: ignore[attr-defined]


# --- aiohttp ---------------------------------------------------------------------------------------------


def detach_body(request: web.Request) -> bytes:
    """Stop aiohttp from reading the rest of this request's body: the bytes it has buffered already are
    returned, the socket is paused (its remaining bytes are the caller's to read from the fd), and the
    connection serves no further request (closed after the response)."""
    transport = request.transport
    assert transport is not None
    request.protocol.close()  # after this request: its body's bytes go around the HTTP parser
    prefix = bytearray()
    while chunk := request.content.read_nowait(-1):
        prefix += chunk
    transport.pause_reading()  # after draining: reading the buffer may have resumed the socket
    return bytes(prefix)


def end_detached_body(request: web.Request) -> None:
    """After the caller has read a detached body (or given up on it): nothing is left for the server to
    read, or to linger on before it closes the connection."""
    request.content.feed_eof()
