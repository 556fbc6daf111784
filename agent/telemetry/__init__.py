"""Telemetry: every event the spec defines, from the real browser and the agent, on one resumable stream.

The collector (`service.py`) keeps one bounded ring buffer of envelopes; the CDP monitor (`monitor.py`)
feeds it from the shared DevTools connection, `api.py` records each HTTP call (api_call) and the CDP proxy's
clients (cdp_connect / cdp_disconnect), `supervised.py` notices supervisord programs that exit.
"""

from ..services import Key
from .service import TelemetryService

TELEMETRY_KEY = Key("telemetry", TelemetryService)

__all__ = ["TELEMETRY_KEY"]
