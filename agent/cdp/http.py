"""Wiring of the CDP plane: the shared connection (`CDP_KEY`), the :9222 proxy, and their /health section.

No REST routes: the proxy is its own server on config.cdp_port, outside the API on config.port.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from ..config import Config
from ..health.http import READINESS_KEY
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
        )
        tasks = TaskGroup("cdp")
        tasks.spawn(connection.run(), name="connection")
        await proxy.start()
        app[CDP_KEY] = connection
        app[CDP_PROXY_KEY] = proxy

        def section() -> dict[str, Any]:
            return {**connection.status(), "proxy": proxy.status()}

        readiness = app.get(READINESS_KEY)
        remove_listener = None
        if readiness is not None:
            readiness.sections["cdp"] = section
            chromium = readiness.chromium

            def on_state(connected: bool, generation: int) -> None:
                # The websocket closes the moment Chromium dies: /health says so at once instead of at
                # its next poll (which sets it ready again once Chromium answers).
                if not connected:
                    chromium.set(False, "the DevTools connection to Chromium closed (Chromium restarting?)")

            remove_listener = connection.on_state(on_state)
        try:
            yield
        finally:
            if remove_listener is not None:
                remove_listener()
            if readiness is not None:
                readiness.sections.pop("cdp", None)
            await proxy.stop()
            await connection.close()
            await tasks.close()

    app.cleanup_ctx.append(lifecycle)
