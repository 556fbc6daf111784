"""The curl capability: requests through hidden Chromium targets, on the shared CDP connection."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from ..capability import Capability
from ..cdp import CDP_KEY
from ..config import Config
from ..services import Services
from . import CURL_KEY, http
from .operations import OPERATIONS
from .service import CurlService


@contextlib.asynccontextmanager
async def lifecycle(services: Services, config: Config) -> AsyncIterator[None]:
    service = CurlService(
        services.get(CDP_KEY),
        max_body_bytes=config.curl_max_response_bytes,
        max_concurrency=config.curl_max_concurrency,
        idle_targets=config.curl_idle_targets,
    )
    services.provide(CURL_KEY, service)
    try:
        yield
    finally:
        await service.close()


CAPABILITY = Capability(
    name="curl",
    provides=(CURL_KEY,),
    requires=(CDP_KEY,),
    lifecycle=lifecycle,
    routes=http.routes,
    operations=OPERATIONS,
)
