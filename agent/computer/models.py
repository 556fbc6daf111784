"""Typed requests of the computer operations: the spec's fields, validated and defaulted by the middleware.

Fields with a spec `default` have no default here (validation always fills them in); optional fields without
one are `None` when absent.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class ClickMouseRequest:
    x: int
    y: int
    button: str
    click_type: str
    num_clicks: int
    hold_keys: tuple[str, ...] | None = None


@dataclasses.dataclass(frozen=True)
class MoveMouseRequest:
    x: int
    y: int
    smooth: bool
    duration_ms: int | None = None
    hold_keys: tuple[str, ...] | None = None


@dataclasses.dataclass(frozen=True)
class DragMouseRequest:
    path: tuple[tuple[int, int], ...]
    button: str
    delay: int
    steps_per_segment: int
    step_delay_ms: int
    smooth: bool
    duration_ms: int | None = None
    hold_keys: tuple[str, ...] | None = None


@dataclasses.dataclass(frozen=True)
class ScrollRequest:
    x: int
    y: int
    delta_x: int
    delta_y: int
    hold_keys: tuple[str, ...] | None = None


@dataclasses.dataclass(frozen=True)
class TypeTextRequest:
    text: str
    delay: int


@dataclasses.dataclass(frozen=True)
class PressKeyRequest:
    keys: tuple[str, ...]
    duration: int
    hold_keys: tuple[str, ...] | None = None


@dataclasses.dataclass(frozen=True)
class SetCursorRequest:
    hidden: bool


@dataclasses.dataclass(frozen=True)
class SleepRequest:
    duration_ms: int


@dataclasses.dataclass(frozen=True)
class ComputerActionRequest:
    """One action of a batch: `type` names it, and the field of that name holds its request."""

    type: str
    click_mouse: ClickMouseRequest | None = None
    move_mouse: MoveMouseRequest | None = None
    type_text: TypeTextRequest | None = None
    press_key: PressKeyRequest | None = None
    scroll: ScrollRequest | None = None
    drag_mouse: DragMouseRequest | None = None
    set_cursor: SetCursorRequest | None = None
    sleep: SleepRequest | None = None

    def given(self) -> list[str]:
        """The action fields that are present."""
        return [
            f.name for f in dataclasses.fields(self) if f.name != "type" and getattr(self, f.name) is not None
        ]


@dataclasses.dataclass(frozen=True)
class BatchRequest:
    actions: tuple[ComputerActionRequest, ...]


@dataclasses.dataclass(frozen=True)
class NoFields:
    """An operation whose request has no fields (get_mouse_position)."""


@dataclasses.dataclass(frozen=True)
class MousePosition:
    x: int
    y: int
