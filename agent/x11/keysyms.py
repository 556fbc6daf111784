"""Key names as xdotool takes them (X keysym names, combos, the usual aliases) and characters → keysyms.

Pure functions, no X connection: names are checked before anything is pressed.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Sequence

from Xlib import XK

from ..errors import BadRequest

_GROUPS = (
    "latin2", "latin3", "latin4", "greek", "cyrillic", "arabic", "hebrew", "thai", "katakana", "korean",
    "technical", "special", "publishing", "apl", "currency", "xkb", "xf86",
)  # fmt: skip

# Names people type that are not X keysym names (compared case-insensitively).
ALIASES: dict[str, str] = {
    "ctrl": "Control_L",
    "control": "Control_L",
    "lctrl": "Control_L",
    "rctrl": "Control_R",
    "shift": "Shift_L",
    "lshift": "Shift_L",
    "rshift": "Shift_R",
    "alt": "Alt_L",
    "lalt": "Alt_L",
    "ralt": "Alt_R",
    "option": "Alt_L",
    "altgr": "ISO_Level3_Shift",
    "super": "Super_L",
    "win": "Super_L",
    "windows": "Super_L",
    "cmd": "Super_L",
    "command": "Super_L",
    "meta": "Meta_L",
    "enter": "Return",
    "return": "Return",
    "esc": "Escape",
    "escape": "Escape",
    "del": "Delete",
    "delete": "Delete",
    "ins": "Insert",
    "backspace": "BackSpace",
    "bksp": "BackSpace",
    "space": "space",
    "spacebar": "space",
    "tab": "Tab",
    "pgup": "Prior",
    "pageup": "Prior",
    "pgdn": "Next",
    "pagedown": "Next",
    "arrowup": "Up",
    "arrowdown": "Down",
    "arrowleft": "Left",
    "arrowright": "Right",
    "capslock": "Caps_Lock",
    "numlock": "Num_Lock",
    "scrolllock": "Scroll_Lock",
    "printscreen": "Print",
    "prtsc": "Print",
    "menu": "Menu",
    "plus": "plus",
    "minus": "minus",
}

# Keysyms that act as modifiers: they are pressed on their own keycode, never with Shift added.
MODIFIER_KEYSYMS = frozenset(range(0xFFE1, 0xFFEF)) | {0xFE03, 0xFF7E}  # + ISO_Level3_Shift, Mode_switch


@functools.cache
def _names_by_lowercase() -> dict[str, int]:
    for group in _GROUPS:
        try:
            XK.load_keysym_group(group)
        except ImportError:
            continue
    table: dict[str, int] = {}
    for attr in dir(XK):
        if attr.startswith("XK_"):
            value = getattr(XK, attr)
            if isinstance(value, int) and value:
                table.setdefault(attr[3:].lower(), value)
    return table


_CONTROL_KEYSYMS = {"\n": 0xFF0D, "\r": 0xFF0D, "\t": 0xFF09, "\b": 0xFF08}  # Return, Tab, BackSpace


def char_to_keysym(char: str) -> int:
    """The keysym that types `char` (Latin-1 keysyms are the code point; others use the Unicode range)."""
    code = ord(char)
    if char in _CONTROL_KEYSYMS:
        return _CONTROL_KEYSYMS[char]
    if 0x20 <= code <= 0x7E or 0xA0 <= code <= 0xFF:
        return code
    return 0x01000000 | code


def name_to_keysym(name: str) -> int:
    """One key name (no '+') → keysym; raises BadRequest for unknown names."""
    if not name:
        raise BadRequest("empty key name")
    _names_by_lowercase()  # make sure every keysym group is loaded
    keysym: int = XK.string_to_keysym(name)
    if keysym:
        return keysym
    alias = ALIASES.get(name.lower())
    if alias:
        return int(XK.string_to_keysym(alias))
    if len(name) == 1:
        if unicodedata.category(name) == "Cc" and name not in "\n\r\t\b":
            raise BadRequest(f"unknown key name {name!r}")
        return char_to_keysym(name)
    found = _names_by_lowercase().get(name.lower())
    if found:
        return int(found)
    if name.lower().startswith(("u+", "0x")):
        try:
            return char_to_keysym(chr(int(name[2:], 16)))
        except (ValueError, OverflowError):
            pass
    raise BadRequest(f"unknown key name {name!r}")


def parse_combo(combo: str) -> list[int]:
    """'Ctrl+Shift+Tab' → [Control_L, Shift_L, Tab]; 'Ctrl++' and '+' mean the plus key."""
    if combo == "+":
        return [name_to_keysym("plus")]
    parts = combo.split("+")
    if combo.endswith("++"):
        parts = [*parts[:-2], "plus"]
    if any(not part.strip() for part in parts):
        raise BadRequest(f"malformed key combination {combo!r}")
    return [name_to_keysym(part.strip()) for part in parts]


def parse_keys(names: Sequence[str], field: str) -> list[list[int]]:
    """Every combo of a request, checked up front; the error names the field and the bad entry."""
    out = []
    for index, combo in enumerate(names):
        try:
            out.append(parse_combo(combo))
        except BadRequest as exc:
            raise BadRequest(f"field '{field}[{index}]': {exc.message}") from None
    return out


def parse_hold_keys(names: Sequence[str] | None, field: str = "hold_keys") -> list[int]:
    return [keysym for combo in parse_keys(names or [], field) for keysym in combo]
