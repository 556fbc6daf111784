"""Computer controls: mouse, keyboard, cursor and batches, run in order on one X input thread."""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Sequence

from ..errors import AgentError
from ..x11.input import CursorState, XInput
from ..x11.thread import XThread
from . import models
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
    check_budget,
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
        """Check every action, then run them in order; the first failure stops the rest.

        An exception raised while talking to X (the server died mid-action, or answered garbage) is a 503
        and the input connection is rebuilt on the next call; a client error found by check() stays 400."""
        check_budget(actions, batch)
        cancel = threading.Event()

        def fail(index: int, action: Action, exc: AgentError) -> AgentError:
            return BatchActionFailed(index, action.kind, exc) if batch else exc

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
            inp.sleep = runner.sleep  # keymap waits inside an action stop when the client leaves
            try:
                for index, action in enumerate(actions):
                    try:
                        action.run(runner)
                    except Exception as exc:
                        try:
                            inp.release_all()
                        except Exception as release_exc:
                            log.warning("releasing keys and buttons after a failure failed: %r", release_exc)
                        if isinstance(exc, Cancelled):
                            log.info("%s cancelled at action %d; keys and buttons let go", action.kind, index)
                            return
                        raise fail(index, action, self._x.failure(exc)) from exc
                inp.flush()
            finally:
                inp.sleep = time.sleep

        try:
            await self._x.call(work)
        except asyncio.CancelledError:
            cancel.set()
            raise

    async def click_mouse(self, req: models.ClickMouseRequest) -> None:
        await self.run([ClickMouse.parse(req)])

    async def move_mouse(self, req: models.MoveMouseRequest) -> None:
        await self.run([MoveMouse.parse(req)])

    async def drag_mouse(self, req: models.DragMouseRequest) -> None:
        await self.run([DragMouse.parse(req)])

    async def scroll(self, req: models.ScrollRequest) -> None:
        await self.run([Scroll.parse(req)])

    async def type_text(self, req: models.TypeTextRequest) -> None:
        await self.run([TypeText.parse(req)])

    async def press_key(self, req: models.PressKeyRequest) -> None:
        await self.run([PressKey.parse(req)])

    async def set_cursor(self, req: models.SetCursorRequest) -> None:
        await self.run([SetCursor.parse(req)])

    async def batch(self, req: models.BatchRequest) -> None:
        await self.run(parse_batch(req.actions), batch=True)

    async def mouse_position(self) -> tuple[int, int]:
        return await self._x.call(lambda inp: inp.pointer())

    async def screen_size(self) -> tuple[int, int]:
        return await self._x.call(lambda inp: (inp.width, inp.height))
