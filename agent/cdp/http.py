"""Wiring of the CDP plane: the shared connection (`CDP_KEY`) and the :9222 proxy (app.py adds /health).

No REST routes: the proxy is its own server on config.cdp_port, outside the API on config.port.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from ..config import Config
from ..server import HttpTimeouts
from ..tasks import TaskGroup
from . import CDP_KEY, CDP_PROXY_KEY
from .connection import CDPConnection
from .proxy import CDPProxy


def install(app: web.Application, config: Config) -> None:
    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        connection = CDPConnection(config.chromium_cdp_url, max_message_bytes=config.cdp_max_message_bytes)
        proxy = CDPProxy(
            config.host,
            config.cdp_port,
            config.chromium_cdp_port,
            max_message_bytes=config.cdp_max_message_bytes,
            wait_for_chromium_s=config.cdp_proxy_wait_s,
            guard_config=config,
            http_timeouts=HttpTimeouts.from_config(config),
        )
        tasks = TaskGroup("cdp")
        tasks.spawn(connection.run(), name="connection")
        await proxy.start()
        app[CDP_KEY] = connection
        app[CDP_PROXY_KEY] = proxy

        try:
            yield
        finally:
            await proxy.stop()
            await connection.close()
            await tasks.close()

    app.cleanup_ctx.append(lifecycle)
