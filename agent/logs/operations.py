"""The logs operation, transport-independent: a typed request → an opened log whose events a transport sends.

`logsStream` is a stream (SSE is its transport), so it is not a JSON `Operation` in `OPERATIONS`;
`open_stream` is what the HTTP adapter calls, and what a control-link stream would call too.
"""

from __future__ import annotations

from typing import Any

from ..operation import Operation
from ..services import Services
from . import LOGS_KEY
from .models import LogsStreamRequest
from .service import LogFile


async def open_stream(services: Services, req: LogsStreamRequest) -> LogFile:
    """The requested log, opened: 400/403/404 here, before anything is streamed; then `events()`."""
    return await services.get(LOGS_KEY).open(req)


OPERATIONS: tuple[Operation[Any], ...] = ()
