"""Keyboard and pointer through XTest, on one X connection (used only from its XThread).

Keys are pressed by keycode. A keysym that the keyboard map lacks (non-Latin text, "€", "✓") is put on one of
the spare keycodes Xvfb leaves unmapped. Spare keycodes are handed out least-recently-used and kept mapped,
so a burst of distinct characters never remaps a keycode whose key event a client may still be translating.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator

from Xlib import XK, X
from Xlib.display import Display
from Xlib.ext import xtest

from .keysyms import MODIFIER_KEYSYMS

log = logging.getLogger(__name__)

SHIFT_KEYSYM = XK.XK_Shift_L
# A spare keycode is not remapped within this time of its last use (a client may still translate it).
_REMAP_QUIET_S = 0.15
# After a keymap change, clients get this long to reload their map before a key of it is pressed.
_MAPPING_SETTLE_S = 0.1
# Requests python-xlib queues unflushed: its send buffer grows by concatenation (quadratic time, unbounded
# memory), so long actions flush every this many events (a few KB on the wire).
FLUSH_EVERY = 128


class CursorState:
    """Whether the pointer is hidden; shared with screenshots, which draw the pointer only when shown."""

    def __init__(self) -> None:
        self.hidden = False


class XInput:
    def __init__(self, display: Display, cursor: CursorState | None = None) -> None:
        self.display = display
        self.cursor = cursor or CursorState()
        self.cursor.hidden = False  # a new connection starts with the pointer shown
        self.root = display.screen().root
        self.width: int = display.screen().width_in_pixels
        self.height: int = display.screen().height_in_pixels
        self._keycodes: dict[int, tuple[int, bool]] = {}
        self._spare: collections.OrderedDict[int, int] = collections.OrderedDict()  # keycode -> keysym
        self._spare_used: dict[int, float] = {}
        self._load_keymap()
        # Keys and buttons down right now, in press order, so a failure can release them.
        self.held_keys: list[int] = []
        self.held_buttons: list[int] = []
        # Events queued since the last flush.
        self.pending = 0
        # How waits inside input work (keymap changes) sleep; a running action makes it cancellable.
        self.sleep: Callable[[float], None] = time.sleep

    # --- keyboard map ---------------------------------------------------------------------------------

    def _load_keymap(self) -> None:
        info = self.display.display.info
        first, last = info.min_keycode, info.max_keycode
        mapping = self.display.get_keyboard_mapping(first, last - first + 1)
        self._keycodes.clear()
        self._spare.clear()
        for offset, syms in enumerate(mapping):
            keycode = first + offset
            if not any(syms):
                self._spare[keycode] = 0
                continue
            # Level 0 (plain) and 1 (with Shift) of the first group; earlier keycodes win.
            for level in (0, 1):
                if level < len(syms) and syms[level]:
                    self._keycodes.setdefault(syms[level], (keycode, level == 1))
        # Modifiers found only on a shifted level (Meta_L on Alt's key) are pressed without Shift.
        for offset, syms in enumerate(mapping):
            for sym in syms:
                if sym in MODIFIER_KEYSYMS and sym not in self._keycodes:
                    self._keycodes[sym] = (first + offset, False)

    def has_keycode(self, keysym: int) -> bool:
        return keysym in self._keycodes or keysym in self._spare.values()

    def keycode_for(self, keysym: int) -> tuple[int, bool]:
        """(keycode, needs_shift) for a keysym, mapping a spare keycode if the keymap lacks it."""
        found = self._keycodes.get(keysym)
        if found is not None:
            return found
        if not self.has_keycode(keysym):
            self.map_keysyms([keysym])
        for keycode, mapped in self._spare.items():
            if mapped == keysym:
                self._spare.move_to_end(keycode)
                return keycode, False
        raise RuntimeError("no spare keycode to map a keysym on")

    def map_keysyms(self, keysyms: Iterable[int]) -> None:
        """Put the keysyms the keymap lacks on spare keycodes, as many as fit, in order, in one go.

        Clients reload their keymap when told it changed, a moment later; a key pressed before that is
        read with the old map (Chromium drops it). So one change is followed by one settle wait, and a text
        maps its characters a batch at a time rather than one remap (and one wait) per character.
        """
        wanted = [k for k in dict.fromkeys(keysyms) if k not in self._keycodes]
        keep = {code for code, mapped in self._spare.items() if mapped in wanted}
        changed = False
        for keysym in wanted:
            if keysym in self._spare.values():
                continue
            free = [code for code in self._spare if code not in keep]  # least recently used first
            if not free:
                break
            keycode = free[0]
            if self._spare[keycode]:
                wait = self._spare_used.get(keycode, 0.0) + _REMAP_QUIET_S - time.monotonic()
                if wait > 0:
                    self.sleep(wait)
            self.display.change_keyboard_mapping(keycode, [(keysym, keysym)])
            self._spare[keycode] = keysym
            self._spare.move_to_end(keycode)
            keep.add(keycode)
            changed = True
        if changed:
            self.display.sync()
            self.sleep(_MAPPING_SETTLE_S)

    def restore_spare_keycodes(self) -> None:
        for keycode, mapped in self._spare.items():
            if mapped:
                self.display.change_keyboard_mapping(keycode, [(0, 0)])
                self._spare[keycode] = 0
        self.display.sync()

    # --- raw events -----------------------------------------------------------------------------------

    def _fake(self, event: int, detail: int = 0, x: int = 0, y: int = 0) -> None:
        xtest.fake_input(self.display, event, detail, x=x, y=y)
        self.pending += 1

    def key_down(self, keycode: int) -> None:
        self._fake(X.KeyPress, keycode)
        self.held_keys.append(keycode)

    def key_up(self, keycode: int) -> None:
        self._fake(X.KeyRelease, keycode)
        if keycode in self.held_keys:
            self.held_keys.remove(keycode)
        if keycode in self._spare:
            self._spare_used[keycode] = time.monotonic()

    def button_down(self, button: int) -> None:
        self._fake(X.ButtonPress, button)
        self.held_buttons.append(button)

    def button_up(self, button: int) -> None:
        self._fake(X.ButtonRelease, button)
        if button in self.held_buttons:
            self.held_buttons.remove(button)

    def move(self, x: int, y: int) -> None:
        self._fake(X.MotionNotify, x=int(x), y=int(y))

    def flush(self) -> None:
        """Send what is queued and wait until the server has processed it."""
        self.display.sync()
        self.pending = 0

    def send(self) -> None:
        """Send what is queued without waiting for the server."""
        self.display.flush()
        self.pending = 0

    def pointer(self) -> tuple[int, int]:
        reply = self.root.query_pointer()
        return int(reply.root_x), int(reply.root_y)

    # --- composite ------------------------------------------------------------------------------------

    def keysym_down(self, keysym: int) -> list[int]:
        """Press a keysym (with Shift if its level needs it); returns the keycodes pressed, in order."""
        keycode, needs_shift = self.keycode_for(keysym)
        pressed = []
        shift_code = self._keycodes[SHIFT_KEYSYM][0] if needs_shift else None
        if shift_code is not None and shift_code not in self.held_keys:
            self.key_down(shift_code)
            pressed.append(shift_code)
        self.key_down(keycode)
        pressed.append(keycode)
        return pressed

    def tap_keysym(self, keysym: int) -> None:
        for keycode in reversed(self.keysym_down(keysym)):
            self.key_up(keycode)

    @contextlib.contextmanager
    def holding(self, keysyms: list[int]) -> Iterator[None]:
        """Hold keys for the duration of a block; released in reverse order whatever happens."""
        pressed: list[int] = []
        try:
            for keysym in keysyms:
                pressed.extend(self.keysym_down(keysym))
            yield
        finally:
            for keycode in reversed(pressed):
                if keycode in self.held_keys:
                    self.key_up(keycode)
            if pressed:
                self.flush()

    def release_all(self) -> None:
        """After a failure: let go of every key and button this connection holds."""
        for button in reversed(list(self.held_buttons)):
            self.button_up(button)
        for keycode in reversed(list(self.held_keys)):
            self.key_up(keycode)
        self.flush()

    # --- cursor ---------------------------------------------------------------------------------------

    def set_cursor_hidden(self, hidden: bool) -> None:
        # XFixes hide/show nests per client and is undone when the client disconnects; this connection
        # lives as long as the agent, and the flag keeps the nesting at one level.
        if hidden == self.cursor.hidden:
            return
        self.display.xfixes_query_version()
        if hidden:
            self.root.xfixes_hide_cursor()
        else:
            self.root.xfixes_show_cursor()
        self.display.sync()
        self.cursor.hidden = hidden
