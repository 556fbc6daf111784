"""The CDP plane: one shared connection to Chromium (`connection.py`) and the stable :9222 proxy (`proxy.py`).

Other capabilities (curl, playwright, telemetry) get the shared connection from the app under `CDP_KEY`.
"""

from aiohttp import web

from .connection import CDPConnection
from .proxy import CDPProxy

CDP_KEY = web.AppKey("cdp", CDPConnection)
CDP_PROXY_KEY = web.AppKey("cdp_proxy", CDPProxy)

__all__ = ["CDP_KEY", "CDP_PROXY_KEY", "CDPConnection", "CDPProxy"]
