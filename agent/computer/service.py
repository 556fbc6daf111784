"""Computer controls: mouse, keyboard, cursor and batches, run in order on one X input thread."""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import AgentError, InternalError
from ..x11.input import CursorState, XInput
from ..x11.thread import XThread
from .actions import (
    Action,
    BatchActionFailed,
    Cancelled,
    ClickMouse,
    DragMouse,
    MoveMouse,
    PressKey,
    Runner,
    Scroll,
    SetCursor,
    TypeText,
    parse_batch,
)

log = logging.getLogger(__name__)


def input_thread(display_name: str, cursor: CursorState) -> XThread[XInput]:
    return XThread(display_name, "x-input", functools.partial(XInput, cursor=cursor), close=_close_input)


def _close_input(inp: XInput) -> None:
    inp.release_all()
    inp.restore_spare_keycodes()


class ComputerService:
    def __init__(self, x: XThread[XInput]) -> None:
        self._x = x

    async def run(self, actions: Sequence[Action], *, batch: bool = False) -> None:
        """Check every action, then run them in order; the first failure stops the rest."""
        cancel = threading.Event()

        def fail(index: int, action: Action, exc: Exception) -> Exception:
            if batch:
                return BatchActionFailed(index, action.kind, exc)
            if isinstance(exc, AgentError):
                return exc
            return InternalError(f"{action.kind} failed: {exc}")

        def work(inp: XInput) -> None:
            if cancel.is_set():
                return
            screen = (inp.width, inp.height)
            for index, action in enumerate(actions):
                try:
                    action.check(screen)
                except AgentError as exc:
                    raise fail(index, action, exc) from None
            runner = Runner(inp, cancel)
            for index, action in enumerate(actions):
                try:
                    action.run(runner)
                except Exception as exc:
                    try:
                        inp.release_all()
                    except Exception:
                        log.warning("releasing keys and buttons after a failure failed", exc_info=True)
                    if isinstance(exc, Cancelled):
                        log.info("%s cancelled at action %d; keys and buttons released", action.kind, index)
                        return
                    raise fail(index, action, exc) from exc
            inp.flush()

        try:
            await self._x.call(work)
        except asyncio.CancelledError:
            cancel.set()
            raise

    async def click_mouse(self, body: Mapping[str, Any]) -> None:
        await self.run([ClickMouse.parse(body)])

    async def move_mouse(self, body: Mapping[str, Any]) -> None:
        await self.run([MoveMouse.parse(body)])

    async def drag_mouse(self, body: Mapping[str, Any]) -> None:
        await self.run([DragMouse.parse(body)])

    async def scroll(self, body: Mapping[str, Any]) -> None:
        await self.run([Scroll.parse(body)])

    async def type_text(self, body: Mapping[str, Any]) -> None:
        await self.run([TypeText.parse(body)])

    async def press_key(self, body: Mapping[str, Any]) -> None:
        await self.run([PressKey.parse(body)])

    async def set_cursor(self, body: Mapping[str, Any]) -> None:
        await self.run([SetCursor.parse(body)])

    async def batch(self, body: Mapping[str, Any]) -> None:
        await self.run(parse_batch(body["actions"]), batch=True)

    async def mouse_position(self) -> tuple[int, int]:
        return await self._x.call(lambda inp: inp.pointer())

    async def screen_size(self) -> tuple[int, int]:
        return await self._x.call(lambda inp: (inp.width, inp.height))
