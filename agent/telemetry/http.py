"""Routes: GET /telemetry and /telemetry/stream (SSE), GET /telemetry/events, the configuration."""

from __future__ import annotations

from aiohttp import web

from .. import sse
from ..config import Config
from ..operation import json_route, services_of, to_json, typed_request
from . import TELEMETRY_KEY
from . import operations as ops
from .models import StreamBrowserTelemetryRequest, StreamTelemetryRequest, split_list


async def stream_spec(request: web.Request) -> web.StreamResponse:
    typed_request(request, StreamBrowserTelemetryRequest)
    service = services_of(request).get(TELEMETRY_KEY)
    after = service.start_after(sse.last_event_id(request), None)
    return await sse.stream(request, service.follow_frames(after))


async def stream_sdk(request: web.Request) -> web.StreamResponse:
    req = typed_request(request, StreamTelemetryRequest)
    service = services_of(request).get(TELEMETRY_KEY)
    after = service.start_after(sse.last_event_id(request), req.replay)
    return await sse.stream(request, service.follow_frames(after, split_list(req.type)))


async def list_events(request: web.Request) -> web.StreamResponse:
    page = await ops.LIST_EVENTS.run(services_of(request), typed_request(request, ops.LIST_EVENTS.request))
    return web.json_response(
        to_json(page),
        headers={"X-Next-Offset": str(page.next_offset), "X-Has-More": "true" if page.has_more else "false"},
    )


def routes(config: Config) -> list[web.RouteDef]:
    return [
        web.get("/telemetry", stream_spec),
        web.get("/telemetry/stream", stream_sdk),
        web.get("/telemetry/events", list_events),
        json_route("GET", "/telemetry/config", ops.GET_CONFIG),
        json_route("PUT", "/telemetry", ops.PUT_CONFIG),
        json_route("PATCH", "/telemetry", ops.PATCH_CONFIG),
    ]
