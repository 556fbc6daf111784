"""One capability shape: every package declares itself the same way, and `agent/app.py` is a list of them.

A `Capability` says its name, the services it provides and requires (`Key`s in the service registry), its
lifecycle (an async context manager that provides its services, then closes them), its HTTP routes and its
`/health` section. `install` orders the capabilities by what they require (a missing provider or a cycle is
a start-up error naming both sides), runs their lifecycles as aiohttp `cleanup_ctx` in that order (closed in
reverse) and adds their routes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

from aiohttp import web

from .config import Config
from .operation import OPERATIONS_KEY, SERVICES_KEY, Operation, Operations
from .services import Key, Services
from .spec import Spec

Lifecycle = Callable[[Services, Config], contextlib.AbstractAsyncContextManager[None]]
# A capability's part of the /health report: {section name: section}.
HealthSection = Callable[[Services], Mapping[str, Any]]


class CapabilityError(RuntimeError):
    """The capability list cannot be wired: a requirement nobody provides, a cycle, a service not provided."""


@dataclasses.dataclass(frozen=True)
class Capability:
    name: str
    provides: tuple[Key[Any], ...] = ()
    requires: tuple[Key[Any], ...] = ()
    lifecycle: Lifecycle | None = None
    # The HTTP adapter: the routes of this capability's spec operations (and extensions).
    routes: Callable[[Config], Sequence[web.RouteDef]] = lambda config: ()
    # Its transport-independent operations (what the control link can call by operationId).
    operations: tuple[Operation[Any], ...] = ()
    health: HealthSection | None = None
    # Runs when the agent starts shutting down (aiohttp on_shutdown), after open streams were ended and before
    # in-flight requests are waited for: e.g. end running commands so their requests can answer.
    shutdown: Callable[[Services], Awaitable[None]] | None = None


log = logging.getLogger(__name__)

CAPABILITIES_KEY = web.AppKey("capabilities", tuple)
# The agent's Config is in the registry too (for health sections and operations that read a setting).
CONFIG_KEY = Key("config", Config)
OPERATIONS_SERVICE_KEY = Key("operations", Operations)  # the control link calls operations through it


def order(capabilities: Sequence[Capability]) -> list[Capability]:
    """The capabilities with every one after those it requires (otherwise in the order given)."""
    providers: dict[Key[Any], Capability] = {}
    for cap in capabilities:
        for key in cap.provides:
            if key in providers:
                raise CapabilityError(
                    f"capabilities {providers[key].name!r} and {cap.name!r} both provide {key.name!r}"
                )
            providers[key] = cap
    for cap in capabilities:
        for key in cap.requires:
            if key not in providers:
                raise CapabilityError(
                    f"capability {cap.name!r} requires {key.name!r}, which no capability provides"
                )
    done: list[Capability] = []
    placed: set[str] = set()

    def place(cap: Capability, path: tuple[str, ...]) -> None:
        if cap.name in placed:
            return
        if cap.name in path:
            cycle = " → ".join([*path[path.index(cap.name) :], cap.name])
            raise CapabilityError(f"capabilities require each other in a cycle: {cycle}")
        for key in cap.requires:
            place(providers[key], (*path, cap.name))
        placed.add(cap.name)
        done.append(cap)

    for cap in capabilities:
        place(cap, ())
    return done


def _cleanup_ctx(
    cap: Capability, lifecycle: Lifecycle, services: Services, config: Config
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        async with lifecycle(services, config):
            missing = [key.name for key in cap.provides if key not in services]
            if missing:
                raise CapabilityError(f"capability {cap.name!r} did not provide {', '.join(missing)}")
            try:
                yield
            finally:
                for key in cap.provides:
                    services.withdraw(key)

    return ctx


def install(app: web.Application, config: Config, spec: Spec, capabilities: Sequence[Capability]) -> Services:
    """Wire the capabilities into `app`: the registry, lifecycles in dependency order, routes, operations."""
    ordered = order(capabilities)
    services = Services()
    services.provide(CONFIG_KEY, config)
    app[SERVICES_KEY] = services
    app[CAPABILITIES_KEY] = tuple(ordered)
    app[OPERATIONS_KEY] = Operations(spec, services, [op for cap in ordered for op in cap.operations])
    services.provide(OPERATIONS_SERVICE_KEY, app[OPERATIONS_KEY])
    for cap in ordered:
        if cap.lifecycle is not None:
            app.cleanup_ctx.append(_cleanup_ctx(cap, cap.lifecycle, services, config))
        elif cap.provides:
            raise CapabilityError(f"capability {cap.name!r} provides services but has no lifecycle")
        app.add_routes(list(cap.routes(config)))
    app.on_shutdown.append(_shutdown_hooks(ordered, services))
    return services


def _shutdown_hooks(
    ordered: Sequence[Capability], services: Services
) -> Callable[[web.Application], Awaitable[None]]:
    async def on_shutdown(app: web.Application) -> None:
        for cap in reversed(ordered):
            if cap.shutdown is not None and all(key in services for key in cap.provides):
                try:
                    await cap.shutdown(services)
                except Exception:
                    log.exception("capability %s: shutdown hook failed", cap.name)

    return on_shutdown


def health_sections(app: web.Application) -> dict[str, Any]:
    """The /health sections of every started capability."""
    services = app[SERVICES_KEY]
    out: dict[str, Any] = {}
    for cap in app[CAPABILITIES_KEY]:
        if cap.health is not None and all(key in services for key in cap.provides):
            out.update(cap.health(services))
    return out
