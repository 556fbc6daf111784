"""Readiness of what the agent stands on (the X display, Chromium) and GET /health."""

from ..services import Key
from .service import Readiness

READINESS_KEY = Key("readiness", Readiness)

__all__ = ["READINESS_KEY", "Readiness"]
