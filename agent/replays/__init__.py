"""Screen recordings of the X display (ffmpeg x11grab → H.264 in fragmented MP4), kept on disk."""

from ..services import Key
from .service import ReplayService

REPLAYS_KEY = Key("replays", ReplayService)

__all__ = ["REPLAYS_KEY"]
