"""A thread that owns one X connection: X work leaves the event loop and runs there, in order.

python-xlib connections are not thread-safe, so each XThread opens its own Display inside its thread and
builds its per-connection state (`factory(display)`) there. If the X server goes away the state is dropped
and the next call reconnects.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
from collections.abc import Callable
from typing import Generic, TypeVar

from Xlib import display as xdisplay
from Xlib import error as xerror

from ..errors import Unavailable

log = logging.getLogger(__name__)

State = TypeVar("State")
Result = TypeVar("Result")

# Errors that mean the connection is gone (X restarted, or never up): reconnect on the next call.
CONNECTION_ERRORS = (xerror.ConnectionClosedError, xerror.DisplayConnectionError, ConnectionError, OSError)


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

    def _ensure(self) -> State:
        if self._state is None:
            try:
                self._display = xdisplay.Display(self.display_name)
            except CONNECTION_ERRORS as exc:
                raise Unavailable(f"X display {self.display_name} is not available: {exc}") from None
            self._state = self._factory(self._display)
        return self._state

    def _drop(self) -> None:
        state, display = self._state, self._display
        self._state = self._display = None
        if state is not None and self._close is not None:
            try:
                self._close(state)
            except Exception:
                log.debug("%s: close failed", self.name, exc_info=True)
        if display is not None:
            try:
                display.close()
            except Exception:
                log.debug("%s: display close failed", self.name, exc_info=True)

    def _run(self, fn: Callable[[State], Result]) -> Result:
        state = self._ensure()
        try:
            return fn(state)
        except CONNECTION_ERRORS as exc:
            self._drop()
            raise Unavailable(f"lost the X display {self.display_name}: {exc}") from None

    async def call(self, fn: Callable[[State], Result]) -> Result:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(self._run, fn))

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._drop)
        self._executor.shutdown(wait=True)
