"""Clipboard text through the X CLIPBOARD selection, owned and read in process."""

from ..services import Key
from .service import ClipboardService

CLIPBOARD_KEY = Key("clipboard", ClipboardService)

__all__ = ["CLIPBOARD_KEY"]
