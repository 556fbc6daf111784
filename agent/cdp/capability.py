"""The CDP capability: the shared DevTools connection and the :9222 proxy (its own server, no API routes)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

from ..auth import AUTH_KEY
from ..capability import Capability
from ..config import Config
from ..server import HttpTimeouts
from ..services import Services
from ..tasks import TaskGroup
from . import CDP_KEY, CDP_PROXY_KEY
from .connection import CDPConnection
from .proxy import CDPProxy


@contextlib.asynccontextmanager
async def lifecycle(services: Services, config: Config) -> AsyncIterator[None]:
    connection = CDPConnection(config.chromium_cdp_url, max_message_bytes=config.cdp_max_message_bytes)
    proxy = CDPProxy(
        config.host,
        config.cdp_port,
        config.chromium_cdp_port,
        max_message_bytes=config.cdp_max_message_bytes,
        wait_for_chromium_s=config.cdp_proxy_wait_s,
        guard_config=config,
        http_timeouts=HttpTimeouts.from_config(config),
        auth=services.get(AUTH_KEY),
    )
    tasks = TaskGroup("cdp")
    tasks.spawn(connection.run(), name="connection")
    try:
        await proxy.start()
        services.provide(CDP_KEY, connection)
        services.provide(CDP_PROXY_KEY, proxy)
        yield
    finally:
        await proxy.stop()
        await connection.close()
        await tasks.close()


def health(services: Services) -> Mapping[str, Any]:
    return {"cdp": {**services.get(CDP_KEY).status(), "proxy": services.get(CDP_PROXY_KEY).status()}}


CAPABILITY = Capability(
    name="cdp",
    provides=(CDP_KEY, CDP_PROXY_KEY),
    requires=(AUTH_KEY,),
    lifecycle=lifecycle,
    health=health,
)
