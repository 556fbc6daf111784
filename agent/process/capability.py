"""The process capability: commands and spawned processes, each in its own session, reaped by the agent."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from ..capability import Capability
from ..config import Config
from ..events import EVENTS_KEY
from ..services import Services
from . import PROCESS_KEY, http
from .operations import OPERATIONS
from .service import ProcessService


@contextlib.asynccontextmanager
async def lifecycle(services: Services, config: Config) -> AsyncIterator[None]:
    service = ProcessService(config, services.get(EVENTS_KEY).publish)
    await service.start()
    services.provide(PROCESS_KEY, service)
    try:
        yield
    finally:
        await service.close()


async def shutdown(services: Services) -> None:
    await services.get(PROCESS_KEY).end_execs()


CAPABILITY = Capability(
    name="process",
    provides=(PROCESS_KEY,),
    requires=(EVENTS_KEY,),
    lifecycle=lifecycle,
    routes=http.routes,
    operations=OPERATIONS,
    # Running execs answer with what they have (exit 143) before the server stops waiting for requests.
    shutdown=shutdown,
)
