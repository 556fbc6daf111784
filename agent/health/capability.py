"""The health capability: readiness of X (polled) and Chromium (the shared DevTools connection's state)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from ..capability import Capability
from ..cdp import CDP_KEY
from ..config import Config
from ..services import Services
from ..tasks import TaskGroup
from . import READINESS_KEY, http
from .service import Readiness


@contextlib.asynccontextmanager
async def lifecycle(services: Services, config: Config) -> AsyncIterator[None]:
    readiness = Readiness(config)
    # Ready while the DevTools websocket is open (however slowly a busy browser answers a poll), not ready
    # the moment it closes.
    unfollow = readiness.follow(services.get(CDP_KEY))
    tasks = TaskGroup("health")
    tasks.spawn(readiness.run(), name="readiness")
    services.provide(READINESS_KEY, readiness)
    try:
        yield
    finally:
        unfollow()
        await tasks.close()


CAPABILITY = Capability(
    name="health",
    provides=(READINESS_KEY,),
    requires=(CDP_KEY,),
    lifecycle=lifecycle,
    routes=http.routes,
)
