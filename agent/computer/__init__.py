"""Computer controls: mouse, keyboard, cursor and batches over XTest, on one X input thread."""

from ..services import Key
from ..x11.input import CursorState
from .service import ComputerService

COMPUTER_KEY = Key("computer", ComputerService)
# Whether the pointer is hidden: screenshots draw it only when shown.
CURSOR_KEY = Key("cursor", CursorState)

__all__ = ["COMPUTER_KEY", "CURSOR_KEY"]
