"""The computer operations, transport-independent: typed request → ComputerService → response model."""

from __future__ import annotations

from typing import Any

from ..operation import Operation
from ..services import Services
from . import COMPUTER_KEY, models


async def _click_mouse(services: Services, req: models.ClickMouseRequest) -> None:
    await services.get(COMPUTER_KEY).click_mouse(req)


async def _move_mouse(services: Services, req: models.MoveMouseRequest) -> None:
    await services.get(COMPUTER_KEY).move_mouse(req)


async def _drag_mouse(services: Services, req: models.DragMouseRequest) -> None:
    await services.get(COMPUTER_KEY).drag_mouse(req)


async def _scroll(services: Services, req: models.ScrollRequest) -> None:
    await services.get(COMPUTER_KEY).scroll(req)


async def _type_text(services: Services, req: models.TypeTextRequest) -> None:
    await services.get(COMPUTER_KEY).type_text(req)


async def _press_key(services: Services, req: models.PressKeyRequest) -> None:
    await services.get(COMPUTER_KEY).press_key(req)


async def _batch(services: Services, req: models.BatchRequest) -> None:
    await services.get(COMPUTER_KEY).batch(req)


async def _set_cursor(services: Services, req: models.SetCursorRequest) -> dict[str, bool]:
    await services.get(COMPUTER_KEY).set_cursor(req)
    return {"ok": True}


async def _mouse_position(services: Services, req: models.NoFields) -> models.MousePosition:
    x, y = await services.get(COMPUTER_KEY).mouse_position()
    return models.MousePosition(x, y)


# Action routes answer 200 with an empty body (as the spec and Kernel's server do).
CLICK_MOUSE = Operation("clickMouse", models.ClickMouseRequest, _click_mouse)
MOVE_MOUSE = Operation("moveMouse", models.MoveMouseRequest, _move_mouse)
DRAG_MOUSE = Operation("dragMouse", models.DragMouseRequest, _drag_mouse)
SCROLL = Operation("scroll", models.ScrollRequest, _scroll)
TYPE_TEXT = Operation("typeText", models.TypeTextRequest, _type_text)
PRESS_KEY = Operation("pressKey", models.PressKeyRequest, _press_key)
BATCH = Operation("batchComputerAction", models.BatchRequest, _batch)
SET_CURSOR = Operation("setCursor", models.SetCursorRequest, _set_cursor)
MOUSE_POSITION = Operation("getMousePosition", models.NoFields, _mouse_position)

OPERATIONS: tuple[Operation[Any], ...] = (
    CLICK_MOUSE,
    MOVE_MOUSE,
    DRAG_MOUSE,
    SCROLL,
    TYPE_TEXT,
    PRESS_KEY,
    BATCH,
    SET_CURSOR,
    MOUSE_POSITION,
)
