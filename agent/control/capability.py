"""The control capability: on only when `Config.control_url` is set (agent/app.py lists it then)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

from ..auth import AUTH_KEY
from ..capability import OPERATIONS_SERVICE_KEY, Capability
from ..cdp import CDP_KEY
from ..config import Config
from ..events import EVENTS_KEY
from ..health import READINESS_KEY
from ..services import Services
from ..telemetry import TELEMETRY_KEY
from . import CONTROL_KEY
from .service import ControlService


@contextlib.asynccontextmanager
async def lifecycle(services: Services, config: Config) -> AsyncIterator[None]:
    cdp = services.get(CDP_KEY)
    readiness = services.get(READINESS_KEY)

    def state() -> dict[str, Any]:
        return {"chromium": cdp.status(), "ready": readiness.ready}

    # The Operations registry is put in the services by install() itself, before any lifecycle runs.
    service = ControlService(
        config,
        services.get(OPERATIONS_SERVICE_KEY),
        state=state,
        auth=services.get(AUTH_KEY),
        telemetry=services.get(TELEMETRY_KEY),
    )

    def on_state(connected: bool, generation: int) -> None:
        # Chromium restarts (the DevTools connection drops and comes back) are forwarded events.
        service.emit(
            "chromium.connected" if connected else "chromium.disconnected", {"generation": generation}
        )

    unfollow = cdp.on_state(on_state)
    # What the other capabilities publish (process exits, recordings, extensions) goes to the CP as is.
    unsubscribe = services.get(EVENTS_KEY).subscribe(service.emit)
    service.start()
    services.provide(CONTROL_KEY, service)
    try:
        yield
    finally:
        unfollow()
        unsubscribe()
        await service.close()


def _health(services: Services) -> Mapping[str, Any]:
    service = services.get(CONTROL_KEY)
    return {
        "control": {
            "url": service.config.control_url,
            "sid": service.identity.sid,
            "telemetry_forwarded": sorted(service.forwarded),
            **service.protocol.stats(),
        }
    }


CAPABILITY = Capability(
    name="control",
    provides=(CONTROL_KEY,),
    requires=(CDP_KEY, READINESS_KEY, EVENTS_KEY, AUTH_KEY, TELEMETRY_KEY),
    lifecycle=lifecycle,
    health=_health,
)
