"""A thread that owns one X connection: X work leaves the event loop and runs there, in order.

python-xlib connections are not thread-safe, so each XThread opens its own Display inside its thread and
builds its per-connection state (`factory(display)`) there. Any failure while talking to X (not only a closed
socket: a half-dead connection also raises AssertionError, struct.error or an XError) drops the state, and
the next call reconnects. A dead connection is also noticed before a call, so the first request after an X
restart runs on a fresh connection instead of failing on the old one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import select
import socket
import struct
from collections.abc import Callable
from typing import Generic, TypeVar

from Xlib import display as xdisplay
from Xlib import error as xerror

from ..errors import AgentError, InternalError, Unavailable

log = logging.getLogger(__name__)

State = TypeVar("State")
Result = TypeVar("Result")

# Errors that mean the connection is gone (X restarted, or never up): reconnect on the next call.
CONNECTION_ERRORS = (xerror.ConnectionClosedError, xerror.DisplayConnectionError, ConnectionError, OSError)
# What talking to a dying or restarted X server raises besides those: python-xlib's protocol errors and
# parse failures of a half-read reply, and the assertions of mss's xcb bindings. These mean "X is gone".
X_ERRORS = (
    *CONNECTION_ERRORS,
    xerror.DisplayError,
    xerror.XError,
    xerror.XauthError,
    xerror.XNoAuthError,
    AssertionError,
    struct.error,
    EOFError,
)


def connection_alive(display: xdisplay.Display) -> bool:
    """False when the server closed the connection (EOF pending on the socket, or python-xlib saw it)."""
    proto = display.display
    if proto.socket_error is not None:
        return False
    sock: socket.socket = proto.socket
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if readable:
            # Readable with no data is EOF; readable with data is an event or error python-xlib will read.
            return bool(sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except BlockingIOError:
        return True
    except (OSError, ValueError):
        return False
    return True


def close_display(display: xdisplay.Display) -> None:
    """Close a connection that may be dead; the socket is closed even when the polite close fails."""
    try:
        display.close()
    except Exception:
        log.debug("X display close failed", exc_info=True)
    with contextlib.suppress(Exception):
        display.display.socket.close()


def lost(display_name: str, exc: BaseException) -> Unavailable:
    detail = str(exc) or type(exc).__name__
    return Unavailable(f"lost the X display {display_name}: {detail}")


class XThread(Generic[State]):
    def __init__(
        self,
        display_name: str,
        name: str,
        factory: Callable[[xdisplay.Display], State],
        close: Callable[[State], None] | None = None,
    ) -> None:
        self.display_name = display_name
        self.name = name
        self._factory = factory
        self._close = close
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        # Touched only from the worker thread.
        self._display: xdisplay.Display | None = None
        self._state: State | None = None
        self._broken = False

    def _ensure(self) -> State:
        if self._state is not None and self._display is not None and not connection_alive(self._display):
            log.info("%s: the X connection is dead; reconnecting", self.name)
            self._drop()
        if self._state is None:
            try:
                self._display = xdisplay.Display(self.display_name)
                self._state = self._factory(self._display)
            except Exception as exc:
                self._drop()
                raise Unavailable(f"X display {self.display_name} is not available: {exc}") from None
        return self._state

    def _drop(self) -> None:
        state, display = self._state, self._display
        self._state = self._display = None
        self._broken = False
        if state is not None and self._close is not None:
            try:
                self._close(state)
            except Exception:
                log.debug("%s: close failed", self.name, exc_info=True)
        if display is not None:
            close_display(display)

    def failure(self, exc: Exception) -> AgentError:
        """Called inside a call (on the worker thread) with an exception raised while talking to X: the
        connection is dropped once the call ends, and the answer is 503 when X is the cause (an X error, or
        the connection found dead), else 500 (a bug, not the client's fault, not X's)."""
        if isinstance(exc, AgentError):
            return exc
        self._broken = True
        if isinstance(exc, X_ERRORS) or self._display is None or not connection_alive(self._display):
            return lost(self.display_name, exc)
        log.error("%s: unexpected error", self.name, exc_info=exc)
        return InternalError(str(exc) or type(exc).__name__)

    def _run(self, fn: Callable[[State], Result]) -> Result:
        state = self._ensure()
        try:
            return fn(state)
        except AgentError as exc:
            if exc.status >= 500:
                self._broken = True
            raise
        except Exception as exc:
            raise self.failure(exc) from exc
        finally:
            if self._broken:
                self._drop()

    async def call(self, fn: Callable[[State], Result]) -> Result:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(self._run, fn))

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._drop)
        self._executor.shutdown(wait=True)
