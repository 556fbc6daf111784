"""Screenshots: an MIT-SHM grab with mss and a fast PNG or JPEG encode."""

from ..services import Key
from .service import ScreenshotService

SCREENSHOT_KEY = Key("screenshot", ScreenshotService)

__all__ = ["SCREENSHOT_KEY"]
