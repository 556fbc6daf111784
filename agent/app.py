"""build_app(config): the list of capabilities, wired by what each requires (agent/capability.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import web

from . import auth, events, guard, sse
from . import spec as spec_module
from .capability import Capability, install
from .cdp.capability import CAPABILITY as CDP
from .clipboard import http as clipboard_http
from .clipboard.capability import CAPABILITY as CLIPBOARD
from .computer import http as computer_http
from .computer.capability import CAPABILITY as COMPUTER
from .config import Config
from .control.capability import CAPABILITY as CONTROL
from .curl.capability import CAPABILITY as CURL
from .errors import Conflict, error_middleware
from .extensions.capability import CAPABILITY as EXTENSIONS
from .fs.capability import CAPABILITY as FS
from .health.capability import CAPABILITY as HEALTH
from .logs.capability import CAPABILITY as LOGS
from .playwright.capability import CAPABILITY as PLAYWRIGHT
from .process.capability import CAPABILITY as PROCESS
from .replays.capability import CAPABILITY as REPLAYS
from .screenshot import http as screenshot_http
from .screenshot.capability import CAPABILITY as SCREENSHOT
from .services import Services
from .spec import SPEC_KEY, Spec
from .telemetry import api as telemetry_api
from .telemetry.capability import CAPABILITY as TELEMETRY
from .unimplemented import complete as complete_spec
from .webmcp.capability import CAPABILITY as WEBMCP

CONFIG_KEY = web.AppKey("config", Config)

# The /spec.yaml and /spec.json routes.
SPEC = Capability(name="spec", routes=lambda config: spec_module.routes())


class NoDisplay(Conflict):
    code = "no_display"


NO_DISPLAY = (
    "this agent runs Chromium headless (AGENT_HEADLESS=1): there is no display for computer controls; "
    "use the CDP endpoint or /playwright/execute"
)


def _refusing(config: Config) -> list[web.RouteDef]:
    """The headless variant's computer routes: each answers 409 no_display. Xvfb still runs, but headless
    Chromium draws nothing on it, so screenshots would be black and input would reach no window."""

    async def refuse(request: web.Request) -> web.Response:
        raise NoDisplay(NO_DISPLAY)

    routes = [*computer_http.routes(config), *screenshot_http.routes(config), *clipboard_http.routes(config)]
    return [web.route(route.method, route.path, refuse) for route in routes]


def _no_display_health(services: Services) -> Mapping[str, Any]:
    return {"display": {"available": False, "detail": "none (headless): " + NO_DISPLAY}}


# In the headless variant, in place of computer, screenshot and clipboard: their routes, refusing.
NO_DISPLAY_CAPABILITY = Capability(name="no_display", routes=_refusing, health=_no_display_health)


def capabilities(config: Config) -> Sequence[Capability]:
    display = [NO_DISPLAY_CAPABILITY] if config.headless else [COMPUTER, SCREENSHOT, CLIPBOARD]
    control = [CONTROL] if config.control_url else []  # the control link is off without a control plane
    return [
        *(events.CAPABILITY, SPEC, CDP, HEALTH),
        *display,
        *(FS, PROCESS, CURL, PLAYWRIGHT, LOGS, EXTENSIONS, WEBMCP, REPLAYS, TELEMETRY),
        *control,
    ]


def build_app(config: Config, spec: Spec | None = None) -> web.Application:
    spec = spec or Spec.load()
    app = web.Application(
        # The guard first: a web page's request is refused before anything else looks at it.
        middlewares=[
            guard.middleware(config),
            telemetry_api.middleware(),  # api_call events and X-Telemetry-Seq
            error_middleware,
            auth.middleware(),  # session tokens: once a key is known, or beyond loopback (agent/auth.py)
            spec_module.validation_middleware(config.max_json_body),
        ],
        client_max_size=config.max_json_body,
    )
    app[CONFIG_KEY] = config
    app[SPEC_KEY] = spec
    sse.install(app, config.sse_max_streams)  # open SSE streams end cleanly on shutdown; capped
    install(app, config, spec, capabilities(config))
    missing = spec_module.unspecified_routes(app, spec)
    if missing:
        raise RuntimeError("routes missing from agent/openapi.yaml: " + ", ".join(missing))
    complete_spec(app, spec)
    return app
