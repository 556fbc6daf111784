"""The telemetry capability: the collector, the CDP monitor on the shared connection, the routes."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

from ..capability import Capability
from ..cdp import CDP_KEY, CDP_PROXY_KEY
from ..config import Config
from ..services import Key, Services
from ..tasks import TaskGroup
from . import TELEMETRY_KEY, http
from .models import parse_categories
from .monitor import Monitor
from .operations import OPERATIONS
from .service import TelemetryService
from .supervised import ServiceWatcher, events_file

MONITOR_KEY = Key("telemetry_monitor", Monitor)


@contextlib.asynccontextmanager
async def lifecycle(services: Services, config: Config) -> AsyncIterator[None]:
    service = TelemetryService(
        parse_categories(config.telemetry_categories),
        max_events=config.telemetry_buffer_events,
        max_bytes=config.telemetry_buffer_bytes,
        max_event_bytes=config.telemetry_max_event_bytes,
    )
    monitor = Monitor(
        service,
        services.get(CDP_KEY),
        services,
        queue_events=config.telemetry_queue_events,
        reconnect_timeout_s=config.telemetry_reconnect_timeout_s,
        screenshot_interval_s=config.telemetry_screenshot_interval_s,
    )
    services.provide(TELEMETRY_KEY, service)
    services.provide(MONITOR_KEY, monitor)
    proxy = services.get(CDP_PROXY_KEY)

    def proxy_client(kind: str, details: dict[str, Any]) -> None:
        event = "websocket_open" if kind == "connect" else "websocket_close"
        service.emit(f"cdp_{kind}", details, kind="kernel_api", event=event)

    proxy.listeners.append(proxy_client)
    monitor.start()
    tasks = TaskGroup("telemetry")
    state_dir = config.state_dir.resolve()
    watcher = ServiceWatcher(service, events_file(state_dir), state_dir / "service-events.cursor")
    tasks.spawn(watcher.run(), name="service-events")
    try:
        yield
    finally:
        await tasks.close()
        proxy.listeners.remove(proxy_client)
        await monitor.close()
        service.close()


def health(services: Services) -> Mapping[str, Any]:
    return {
        "telemetry": {**services.get(TELEMETRY_KEY).status(), "monitor": services.get(MONITOR_KEY).status()}
    }


CAPABILITY = Capability(
    name="telemetry",
    provides=(TELEMETRY_KEY, MONITOR_KEY),
    requires=(CDP_KEY, CDP_PROXY_KEY),
    lifecycle=lifecycle,
    routes=http.routes,
    operations=OPERATIONS,
    health=health,
)
