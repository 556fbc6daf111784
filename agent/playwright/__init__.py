"""POST /playwright/execute and its executors: warm Node workers from the python playwright wheel."""

from ..services import Key
from .service import PlaywrightService

PLAYWRIGHT_KEY = Key("playwright", PlaywrightService)

__all__ = ["PLAYWRIGHT_KEY"]
