"""Unpacked Chromium extensions: POST /extensions installs them under `<state dir>/extensions/<name>` and
restarts Chromium (through supervisord) with every installed extension loaded."""

from ..services import Key
from .service import ExtensionsService

EXTENSIONS_KEY = Key("extensions", ExtensionsService)

__all__ = ["EXTENSIONS_KEY"]
