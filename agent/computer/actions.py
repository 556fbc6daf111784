"""Computer actions: parsed from validated request bodies, checked, then run on the X input thread.

Each action is checked completely (key names, coordinates against the screen) before any action of the same
request runs, so a bad request presses nothing. Counts and durations have upper bounds in the spec, and one
request (a batch included) as a whole is bounded in time and in events (`check_budget`), so no request holds
the input thread for long. Running happens on the input XThread; long actions send their events in chunks
and stop between chunks when the client has gone; whatever fails midway, the keys and buttons held are
released (`XInput.holding` and `release_all`).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Sequence
from typing import Any, ClassVar, Protocol

from ..errors import AgentError, BadRequest
from ..x11.input import FLUSH_EVERY, XInput
from ..x11.keysyms import char_to_keysym, parse_hold_keys, parse_keys
from . import models, paths

BUTTONS = {"left": 1, "middle": 2, "right": 3, "back": 8, "forward": 9}
WHEEL = {"up": 4, "down": 5, "left": 6, "right": 7}
REPEAT_CLICK_INTERVAL_S = 0.015
# One request (a single action or a whole batch) may take at most this long, counting what it asks for:
# delays, durations, pointer paths, click repeats. Beyond it: 400 before anything runs.
MAX_REQUEST_S = 300.0
# ... and send at most this many X input events (a key tap or a wheel click is two).
MAX_REQUEST_EVENTS = 500_000


class Cancelled(Exception):
    """The request that started the action went away; the action stops and lets go of everything."""


class Runner:
    """What an action runs with: the X input state and a cancellable clock."""

    def __init__(self, inp: XInput, cancel: threading.Event) -> None:
        self.inp = inp
        self.cancel = cancel

    def sleep(self, seconds: float) -> None:
        if seconds > 0 and self.cancel.wait(seconds):
            raise Cancelled("request cancelled")
        if self.cancel.is_set():
            raise Cancelled("request cancelled")

    def sleep_until(self, deadline: float) -> None:
        self.sleep(deadline - time.monotonic())

    def pace(self) -> None:
        """Between the events of a long action: send every FLUSH_EVERY events (python-xlib's unsent buffer
        costs quadratic time and unbounded memory), and stop if the client has gone."""
        if self.inp.pending >= FLUSH_EVERY:
            self.inp.send()
        if self.cancel.is_set():
            raise Cancelled("request cancelled")

    def follow(self, path: paths.TimedPath) -> None:
        """Move along a timed path, flushing each step so the pointer really moves at that time."""
        start = time.monotonic()
        for x, y, t in path:
            self.sleep_until(start + t)
            self.inp.move(x, y)
            self.inp.send()


@dataclasses.dataclass(frozen=True)
class Budget:
    """What an action will cost at most: seconds of waiting and moving, X events, and the request fields
    that decide it (named in the 400 when a request is over budget)."""

    seconds: float = 0.0
    events: int = 0
    fields: tuple[str, ...] = ()


class Action(Protocol):
    kind: ClassVar[str]

    def check(self, screen: tuple[int, int]) -> None: ...

    def budget(self) -> Budget: ...

    def run(self, runner: Runner) -> None: ...


def check_budget(actions: Sequence[Action], batch: bool) -> None:
    """Refuse (400) a request whose actions together would take longer than MAX_REQUEST_S or send more
    than MAX_REQUEST_EVENTS events, before anything of it runs."""
    budgets = [action.budget() for action in actions]
    seconds = sum(b.seconds for b in budgets)
    events = sum(b.events for b in budgets)
    if batch:
        where = "field 'actions'"
        what = "the batch"
    else:
        fields = budgets[0].fields if budgets else ()
        where = "field " + ", ".join(f"'{f}'" for f in fields) if fields else "request body"
        what = f"{actions[0].kind}" if actions else "the request"
    if seconds > MAX_REQUEST_S:
        raise BadRequest(
            f"{where}: {what} would take {seconds:.1f} s, more than the {MAX_REQUEST_S:.0f} s allowed "
            "for one request"
        )
    if events > MAX_REQUEST_EVENTS:
        raise BadRequest(
            f"{where}: {what} would send {events} input events, more than the {MAX_REQUEST_EVENTS} "
            "allowed for one request"
        )


def check_point(x: int, y: int, screen: tuple[int, int], field: str = "") -> None:
    where = f"{field}: " if field else ""
    if x < 0 or y < 0:
        raise BadRequest(f"{where}coordinates must be non-negative, got ({x}, {y})")
    if x >= screen[0] or y >= screen[1]:
        raise BadRequest(
            f"{where}coordinates ({x}, {y}) exceed the screen (max {screen[0] - 1}x{screen[1] - 1})"
        )


@dataclasses.dataclass(frozen=True)
class ClickMouse:
    kind: ClassVar[str] = "click_mouse"
    x: int
    y: int
    button: int
    click_type: str
    num_clicks: int
    hold_keys: list[int]

    @classmethod
    def parse(cls, req: models.ClickMouseRequest) -> ClickMouse:
        return cls(
            x=req.x,
            y=req.y,
            button=BUTTONS[req.button],
            click_type=req.click_type,
            num_clicks=max(1, req.num_clicks),
            hold_keys=parse_hold_keys(req.hold_keys),
        )

    def check(self, screen: tuple[int, int]) -> None:
        check_point(self.x, self.y, screen)

    def budget(self) -> Budget:
        clicks = self.num_clicks if self.click_type == "click" else 1
        return Budget(
            (clicks - 1) * REPEAT_CLICK_INTERVAL_S, 1 + 2 * clicks + 2 * len(self.hold_keys), ("num_clicks",)
        )

    def run(self, runner: Runner) -> None:
        inp = runner.inp
        inp.move(self.x, self.y)
        with inp.holding(self.hold_keys):
            if self.click_type == "down":
                inp.button_down(self.button)
            elif self.click_type == "up":
                inp.button_up(self.button)
            else:
                for index in range(self.num_clicks):
                    if index:
                        # Chromium counts a click as repeated only if its X timestamp (ms) differs.
                        inp.flush()
                        runner.sleep(REPEAT_CLICK_INTERVAL_S)
                    inp.button_down(self.button)
                    inp.button_up(self.button)


@dataclasses.dataclass(frozen=True)
class MoveMouse:
    kind: ClassVar[str] = "move_mouse"
    x: int
    y: int
    smooth: bool
    duration_ms: int | None
    hold_keys: list[int]

    @classmethod
    def parse(cls, req: models.MoveMouseRequest) -> MoveMouse:
        return cls(
            x=req.x,
            y=req.y,
            smooth=req.smooth,
            duration_ms=req.duration_ms,
            hold_keys=parse_hold_keys(req.hold_keys),
        )

    def check(self, screen: tuple[int, int]) -> None:
        check_point(self.x, self.y, screen)

    def budget(self) -> Budget:
        # Without duration_ms the time follows the distance, at most paths.MAX_AUTO_DURATION_MS.
        ms = (self.duration_ms or paths.MAX_AUTO_DURATION_MS) if self.smooth else 0
        return Budget(ms / 1000, 1 + paths.steps_for(ms) + 2 * len(self.hold_keys), ("duration_ms",))

    def run(self, runner: Runner) -> None:
        inp = runner.inp
        with inp.holding(self.hold_keys):
            if self.smooth:
                start = inp.pointer()
                path = paths.smooth_path([start, (self.x, self.y)], self.duration_ms, (inp.width, inp.height))
                runner.follow(path)
            inp.move(self.x, self.y)


@dataclasses.dataclass(frozen=True)
class DragMouse:
    kind: ClassVar[str] = "drag_mouse"
    path: list[tuple[int, int]]
    button: int
    delay_ms: int
    steps_per_segment: int
    step_delay_ms: int
    smooth: bool
    duration_ms: int | None
    hold_keys: list[int]

    @classmethod
    def parse(cls, req: models.DragMouseRequest) -> DragMouse:
        return cls(
            path=[(p[0], p[1]) for p in req.path],
            button=BUTTONS[req.button],
            delay_ms=req.delay,
            steps_per_segment=req.steps_per_segment,
            step_delay_ms=req.step_delay_ms,
            smooth=req.smooth,
            duration_ms=req.duration_ms,
            hold_keys=parse_hold_keys(req.hold_keys),
        )

    def check(self, screen: tuple[int, int]) -> None:
        for index, (x, y) in enumerate(self.path):
            check_point(x, y, screen, f"path[{index}]")

    def budget(self) -> Budget:
        segments = max(0, len(self.path) - 1)
        if self.smooth:
            ms = paths.smooth_duration_ms(self.path, self.duration_ms)
            steps = max(segments, paths.steps_for(ms)) + segments  # each segment rounds its share up
            fields: tuple[str, ...] = ("delay", "duration_ms", "path")
        else:
            steps = segments * self.steps_per_segment
            ms = max(0, steps - 1) * self.step_delay_ms
            fields = ("delay", "steps_per_segment", "step_delay_ms", "path")
        events = 3 + steps + 2 * len(self.hold_keys)
        return Budget((self.delay_ms + ms) / 1000, events, fields)

    def run(self, runner: Runner) -> None:
        inp = runner.inp
        with inp.holding(self.hold_keys):
            inp.move(*self.path[0])
            inp.button_down(self.button)
            try:
                inp.flush()
                runner.sleep(self.delay_ms / 1000)
                if self.smooth:
                    timed = paths.smooth_path(self.path, self.duration_ms, (inp.width, inp.height))
                else:
                    timed = paths.linear_path(self.path, self.steps_per_segment, self.step_delay_ms)
                runner.follow(timed)
                inp.move(*self.path[-1])
            finally:
                inp.button_up(self.button)


@dataclasses.dataclass(frozen=True)
class Scroll:
    kind: ClassVar[str] = "scroll"
    x: int
    y: int
    delta_x: int
    delta_y: int
    hold_keys: list[int]

    @classmethod
    def parse(cls, req: models.ScrollRequest) -> Scroll:
        return cls(
            x=req.x,
            y=req.y,
            delta_x=req.delta_x,
            delta_y=req.delta_y,
            hold_keys=parse_hold_keys(req.hold_keys),
        )

    def check(self, screen: tuple[int, int]) -> None:
        if not self.delta_x and not self.delta_y:
            raise BadRequest("at least one of delta_x or delta_y must be non-zero")
        check_point(self.x, self.y, screen)

    def budget(self) -> Budget:
        clicks = abs(self.delta_x) + abs(self.delta_y)
        return Budget(0.0, 1 + 2 * clicks + 2 * len(self.hold_keys), ("delta_x", "delta_y"))

    def run(self, runner: Runner) -> None:
        inp = runner.inp
        inp.move(self.x, self.y)
        with inp.holding(self.hold_keys):
            for delta, negative, positive in ((self.delta_y, "up", "down"), (self.delta_x, "left", "right")):
                button = WHEEL[positive if delta > 0 else negative]
                for _ in range(abs(delta)):
                    inp.button_down(button)
                    inp.button_up(button)
                    runner.pace()


@dataclasses.dataclass(frozen=True)
class TypeText:
    kind: ClassVar[str] = "type_text"
    keysyms: list[int]
    delay_ms: int

    @classmethod
    def parse(cls, req: models.TypeTextRequest) -> TypeText:
        return cls(keysyms=[char_to_keysym(c) for c in req.text], delay_ms=req.delay)

    def check(self, screen: tuple[int, int]) -> None:
        pass

    def budget(self) -> Budget:
        # Shifted characters cost two events more; keymap changes for unmapped characters are not counted.
        count = len(self.keysyms)
        return Budget(max(0, count - 1) * self.delay_ms / 1000, 2 * count, ("text", "delay"))

    def run(self, runner: Runner) -> None:
        inp = runner.inp
        for index, keysym in enumerate(self.keysyms):
            runner.pace()
            if index and self.delay_ms:
                inp.flush()
                runner.sleep(self.delay_ms / 1000)
            if not inp.has_keycode(keysym):
                inp.flush()  # what is typed so far goes out with the old map
                inp.map_keysyms(self.keysyms[index:])  # this character and the next ones, in one change
            inp.tap_keysym(keysym)


@dataclasses.dataclass(frozen=True)
class PressKey:
    kind: ClassVar[str] = "press_key"
    combos: list[list[int]]
    duration_ms: int
    hold_keys: list[int]

    @classmethod
    def parse(cls, req: models.PressKeyRequest) -> PressKey:
        if not req.keys:
            raise BadRequest("field 'keys' must contain at least one key")
        return cls(
            combos=parse_keys(req.keys, "keys"),
            duration_ms=req.duration,
            hold_keys=parse_hold_keys(req.hold_keys),
        )

    def check(self, screen: tuple[int, int]) -> None:
        pass

    def budget(self) -> Budget:
        keys = sum(len(combo) for combo in self.combos) + len(self.hold_keys)
        return Budget(self.duration_ms / 1000, 2 * keys, ("duration",))

    def run(self, runner: Runner) -> None:
        inp = runner.inp
        with inp.holding(self.hold_keys):
            if self.duration_ms:
                # Everything goes down together, is held, and comes up in reverse order.
                with inp.holding([keysym for combo in self.combos for keysym in combo]):
                    inp.flush()
                    runner.sleep(self.duration_ms / 1000)
            else:
                for combo in self.combos:
                    runner.pace()
                    with inp.holding(combo):
                        pass


@dataclasses.dataclass(frozen=True)
class SetCursor:
    kind: ClassVar[str] = "set_cursor"
    hidden: bool

    @classmethod
    def parse(cls, req: models.SetCursorRequest) -> SetCursor:
        return cls(hidden=req.hidden)

    def check(self, screen: tuple[int, int]) -> None:
        pass

    def budget(self) -> Budget:
        return Budget()

    def run(self, runner: Runner) -> None:
        runner.inp.set_cursor_hidden(self.hidden)


@dataclasses.dataclass(frozen=True)
class Sleep:
    kind: ClassVar[str] = "sleep"
    duration_ms: int

    @classmethod
    def parse(cls, req: models.SleepRequest) -> Sleep:
        return cls(duration_ms=req.duration_ms)

    def check(self, screen: tuple[int, int]) -> None:
        pass

    def budget(self) -> Budget:
        return Budget(self.duration_ms / 1000, 0, ("duration_ms",))

    def run(self, runner: Runner) -> None:
        runner.inp.flush()
        runner.sleep(self.duration_ms / 1000)


ACTIONS: dict[str, Any] = {
    cls.kind: cls for cls in (ClickMouse, MoveMouse, DragMouse, Scroll, TypeText, PressKey, SetCursor, Sleep)
}


class BatchActionFailed(AgentError):
    """One action of a batch failed; the status is that of the underlying error."""

    def __init__(self, index: int, kind: str, cause: Exception) -> None:
        message = cause.message if isinstance(cause, AgentError) else str(cause) or type(cause).__name__
        super().__init__(f"actions[{index}] ({kind}): {message}")
        self.index = index
        self.cause = cause
        if isinstance(cause, AgentError):
            self.status = cause.status
            self.code = cause.code

    def body(self) -> dict[str, Any]:
        out = super().body()
        out["details"] = [{"code": "failed_action", "message": f"index={self.index}"}]
        return out


def parse_batch(actions: Sequence[models.ComputerActionRequest]) -> list[Action]:
    parsed: list[Action] = []
    for index, item in enumerate(actions):
        kind = item.type
        given = item.given()
        extra = sorted(set(given) - {kind})
        try:
            if kind not in given:
                raise BadRequest(f"field '{kind}' is required when type is {kind}")
            if extra:
                raise BadRequest(f"only the '{kind}' field may accompany type {kind}, got {', '.join(extra)}")
            parsed.append(ACTIONS[kind].parse(getattr(item, kind)))
        except BadRequest as exc:
            raise BatchActionFailed(index, kind, exc) from None
    return parsed
