"""GET /logs/stream: the typed request → an opened log → its lines as LogEvents over SSE."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from .. import sse
from ..config import Config
from ..operation import services_of, typed_request
from .models import LogsStreamRequest
from .operations import open_stream
from .service import LogFile


async def _frames(logfile: LogFile) -> AsyncIterator[sse.Batch]:
    # A read's lines go out as one chunk: one event-loop round per line would cap a stream near 10k lines/s.
    async with contextlib.aclosing(logfile.events()) as batches:
        async for batch in batches:
            yield sse.Batch((None, event.to_json()) for event in batch)


async def logs_stream(request: web.Request) -> web.StreamResponse:
    logfile = await open_stream(services_of(request), typed_request(request, LogsStreamRequest))
    try:
        return await sse.stream(request, _frames(logfile))
    finally:
        logfile.close()  # also when the stream never started (the generator's own finally did not run)


def routes(config: Config) -> list[web.RouteDef]:
    return [web.get("/logs/stream", logs_stream)]
