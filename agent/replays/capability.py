"""The replays capability: ffmpeg recordings of the display, listed from disk across agent restarts."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

from ..capability import Capability
from ..config import Config
from ..events import EVENTS_KEY
from ..services import Services
from . import REPLAYS_KEY, http
from .operations import OPERATIONS
from .service import ReplayService


@contextlib.asynccontextmanager
async def lifecycle(services: Services, config: Config) -> AsyncIterator[None]:
    service = ReplayService(config, services.get(EVENTS_KEY).publish)
    await service.open()
    services.provide(REPLAYS_KEY, service)
    try:
        yield
    finally:
        await service.close()


def health(services: Services) -> Mapping[str, Any]:
    return {"replays": services.get(REPLAYS_KEY).health()}


CAPABILITY = Capability(
    name="replays",
    provides=(REPLAYS_KEY,),
    requires=(EVENTS_KEY,),
    lifecycle=lifecycle,
    routes=http.routes,
    operations=OPERATIONS,
    health=health,
)
