"""Typed requests and responses of the clipboard operations."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class ReadClipboardRequest:
    pass


@dataclasses.dataclass(frozen=True)
class WriteClipboardRequest:
    text: str


@dataclasses.dataclass(frozen=True)
class ClipboardText:
    text: str
