"""build_app(config): every capability's routes and lifecycles, wired in dependency order."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from . import guard, sse
from . import spec as spec_module
from .cdp import CDP_KEY, CDP_PROXY_KEY
from .cdp import http as cdp_http
from .clipboard import http as clipboard_http
from .clipboard.service import ClipboardService
from .computer import http as computer_http
from .computer.service import ComputerService, input_thread
from .config import Config
from .curl import http as curl_http
from .errors import Conflict, error_middleware
from .fs import http as fs_http
from .health import http as health_http
from .health.service import Readiness
from .playwright import http as playwright_http
from .process import http as process_http
from .screenshot import http as screenshot_http
from .screenshot.service import ScreenshotService
from .spec import SPEC_KEY, Spec
from .tasks import TaskGroup
from .unimplemented import complete as complete_spec
from .x11.input import CursorState
from .x11.selection import SelectionThread

log = logging.getLogger(__name__)

CONFIG_KEY = web.AppKey("config", Config)
TASKS_KEY = web.AppKey("tasks", TaskGroup)

Lifecycle = Callable[[web.Application], AsyncIterator[None]]
# A capability package's `http.install(app, config)`: adds its routes and its cleanup_ctx lifecycle.
Installer = Callable[[web.Application, Config], None]

# Capabilities that install themselves, in dependency order (each line: `<package>_http.install,`).
INSTALLERS: list[Installer] = [
    fs_http.install,
    process_http.install,
    cdp_http.install,
    curl_http.install,
    playwright_http.install,
]


def _tasks(app: web.Application) -> Lifecycle:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        group = TaskGroup("agent")
        app[TASKS_KEY] = group
        yield
        await group.close()

    return ctx


def _readiness(config: Config) -> Lifecycle:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        readiness = Readiness(config)
        app[health_http.READINESS_KEY] = readiness
        app[TASKS_KEY].spawn(readiness.run(), name="readiness")
        yield

    return ctx


class NoDisplay(Conflict):
    code = "no_display"


NO_DISPLAY = (
    "this agent runs Chromium headless (AGENT_HEADLESS=1): there is no display for computer controls; "
    "use the CDP endpoint or /playwright/execute"
)


def _refusing(routes: list[web.RouteDef]) -> list[web.RouteDef]:
    """The headless variant's computer routes: each answers 409 no_display. Xvfb still runs, but headless
    Chromium draws nothing on it, so screenshots would be black and input would reach no window."""

    async def refuse(request: web.Request) -> web.Response:
        raise NoDisplay(NO_DISPLAY)

    return [web.route(route.method, route.path, refuse) for route in routes]


def _computer(config: Config) -> Lifecycle:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        sections = app[health_http.READINESS_KEY].sections
        if config.headless:
            sections["display"] = lambda: {"available": False, "detail": "none (headless): " + NO_DISPLAY}
            yield
            return
        sections["display"] = lambda: {"available": True, "detail": f"{config.display} {config.screen}"}
        cursor = CursorState()
        x_input = input_thread(config.display, cursor)
        screenshots = ScreenshotService(config.display, cursor_visible=lambda: not cursor.hidden)
        selection = SelectionThread(config.display)
        selection.start()
        app[computer_http.COMPUTER_KEY] = ComputerService(x_input)
        app[screenshot_http.SCREENSHOT_KEY] = screenshots
        app[clipboard_http.CLIPBOARD_KEY] = ClipboardService(selection)
        yield
        await asyncio.gather(x_input.close(), screenshots.close(), selection.stop(), return_exceptions=True)

    return ctx


async def _cdp_health(app: web.Application) -> AsyncIterator[None]:
    """/health reports the shared CDP connection and the proxy, and Chromium's readiness follows that
    connection: ready while its websocket is open (however slowly a busy browser answers a poll), not ready
    the moment it closes."""
    readiness = app[health_http.READINESS_KEY]
    connection, proxy = app[CDP_KEY], app[CDP_PROXY_KEY]
    readiness.sections["cdp"] = lambda: {**connection.status(), "proxy": proxy.status()}
    unfollow = readiness.follow(connection)
    yield
    unfollow()
    readiness.sections.pop("cdp", None)


def build_app(config: Config, spec: Spec | None = None) -> web.Application:
    spec = spec or Spec.load()
    app = web.Application(
        # The guard first: a web page's request is refused before anything else looks at it.
        middlewares=[
            guard.middleware(config),
            error_middleware,
            spec_module.validation_middleware(config.max_json_body),
        ],
        client_max_size=config.max_json_body,
    )
    app[CONFIG_KEY] = config
    app[SPEC_KEY] = spec
    sse.install(app)  # open SSE streams end cleanly on shutdown
    app.cleanup_ctx.extend([_tasks(app), _readiness(config), _computer(config)])
    for install in INSTALLERS:
        install(app, config)
    app.cleanup_ctx.append(_cdp_health)
    display_routes = [*computer_http.routes(), *screenshot_http.routes(), *clipboard_http.routes()]
    if config.headless:
        display_routes = _refusing(display_routes)
    app.add_routes([*spec_module.routes(), *health_http.routes(), *display_routes])
    missing = spec_module.unspecified_routes(app, spec)
    if missing:
        raise RuntimeError("routes missing from agent/openapi.yaml: " + ", ".join(missing))
    complete_spec(app, spec)
    return app
