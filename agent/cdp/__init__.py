"""The CDP plane: one shared connection to Chromium (`connection.py`) and the stable :9222 proxy (`proxy.py`).

Other capabilities (curl, playwright, telemetry) take the shared connection from the service registry under
`CDP_KEY`.
"""

from ..services import Key
from .connection import CDPConnection
from .proxy import CDPProxy

CDP_KEY = Key("cdp", CDPConnection)
CDP_PROXY_KEY = Key("cdp_proxy", CDPProxy)

__all__ = ["CDP_KEY", "CDP_PROXY_KEY", "CDPConnection", "CDPProxy"]
