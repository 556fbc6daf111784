"""api_call events: the middleware that records every HTTP call to the agent, and sets X-Telemetry-Seq.

It stands right after the guard (outside the error middleware), so it sees the status every client gets.
The event is recorded when the handler returns, so its seq marks the moment the call finished: a client
that reads the stream from `X-Telemetry-Seq` sees its own api_call and everything that happened after it.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from ..operation import SERVICES_KEY
from ..spec import operation_for
from . import TELEMETRY_KEY

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Reading telemetry, health and the spec are not calls that drive the browser: recording them would make
# every stream read an event of its own.
UNRECORDED = frozenset(
    {
        "streamBrowserTelemetry",
        "streamTelemetry",
        "listTelemetryEvents",
        "getTelemetryConfig",
        "putTelemetryConfig",
        "patchTelemetryConfig",
        "getHealth",
        "getSpecYaml",
        "getSpecJson",
    }
)
SEQ_HEADER = "X-Telemetry-Seq"


def middleware() -> Middleware:
    ids = itertools.count(1)
    prefix = f"{os.getpid():x}-"

    @web.middleware
    async def record_api_call(request: web.Request, handler: Handler) -> web.StreamResponse:
        op = operation_for(request)
        services = request.app.get(SERVICES_KEY)
        if op is None or op.operation_id in UNRECORDED or services is None or TELEMETRY_KEY not in services:
            return await handler(request)
        telemetry = services.get(TELEMETRY_KEY)
        request_id = prefix + str(next(ids))
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            data = {
                "operation_id": op.operation_id,
                "request_id": request_id,
                "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 3),
            }
            seq = telemetry.emit("api_call", data, kind="kernel_api", event=f"{op.method} {op.path}")
        if seq is not None and not response.prepared:
            response.headers[SEQ_HEADER] = str(seq)
        return response

    return record_api_call
