"""The telemetry operations, transport-independent (the streams are HTTP-only: SSE is their transport)."""

from __future__ import annotations

from typing import Any

from ..operation import Operation
from ..services import Services
from . import TELEMETRY_KEY
from .models import (
    CATEGORIES,
    EventsPage,
    GetTelemetryConfigRequest,
    ListTelemetryEventsRequest,
    TelemetryConfigRequest,
    TelemetryConfigView,
)


async def _get_config(services: Services, req: GetTelemetryConfigRequest) -> TelemetryConfigView:
    return TelemetryConfigView(services.get(TELEMETRY_KEY).enabled)


async def _put_config(services: Services, req: TelemetryConfigRequest) -> TelemetryConfigView:
    # A replacement: what the body does not turn on is off (an empty body turns everything off).
    named = req.browser.named() if req.browser is not None else {}
    enabled = {name for name in CATEGORIES if named.get(name)}
    return TelemetryConfigView(services.get(TELEMETRY_KEY).set_enabled(enabled))


async def _patch_config(services: Services, req: TelemetryConfigRequest) -> TelemetryConfigView:
    service = services.get(TELEMETRY_KEY)
    named = req.browser.named() if req.browser is not None else {}
    enabled = {name for name in CATEGORIES if named.get(name, name in service.enabled)}
    return TelemetryConfigView(service.set_enabled(enabled))


async def _list_events(services: Services, req: ListTelemetryEventsRequest) -> EventsPage:
    return services.get(TELEMETRY_KEY).page(req)


GET_CONFIG = Operation("getTelemetryConfig", GetTelemetryConfigRequest, _get_config)
PUT_CONFIG = Operation("putTelemetryConfig", TelemetryConfigRequest, _put_config)
PATCH_CONFIG = Operation("patchTelemetryConfig", TelemetryConfigRequest, _patch_config)
LIST_EVENTS = Operation("listTelemetryEvents", ListTelemetryEventsRequest, _list_events)
OPERATIONS: tuple[Operation[Any], ...] = (GET_CONFIG, PUT_CONFIG, PATCH_CONFIG, LIST_EVENTS)
