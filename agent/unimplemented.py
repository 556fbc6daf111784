"""Spec operations that no capability serves yet: each answers 501 instead of looking like a wrong URL.

The list shrinks as capabilities land; `build_app` refuses to start when a spec operation is neither served
nor listed here, or when a listed one is served (so the list cannot go stale).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from .errors import AgentError
from .spec import Spec

# operationIds of agent/openapi.yaml that are not built yet.
NOT_IMPLEMENTED: frozenset[str] = frozenset()


class NotImplementedYet(AgentError):
    status = 501
    code = "not_implemented"


def _handler(operation_id: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        raise NotImplementedYet(f"{operation_id} is not implemented yet")

    return handler


def complete(app: web.Application, spec: Spec, not_implemented: frozenset[str] = NOT_IMPLEMENTED) -> None:
    """Add a 501 route for every listed operation; fail if the spec and the served routes disagree."""
    served = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method not in ("HEAD", "*")
    }
    by_id = {op.operation_id: key for key, op in spec.operations.items()}
    unknown = sorted(not_implemented - set(by_id))
    if unknown:
        raise RuntimeError("NOT_IMPLEMENTED names operations agent/openapi.yaml lacks: " + ", ".join(unknown))
    stale = sorted(op_id for op_id in not_implemented if by_id[op_id] in served)
    if stale:
        raise RuntimeError("served operations still listed in NOT_IMPLEMENTED: " + ", ".join(stale))
    missing = sorted(
        f"{op.operation_id} ({method} {path})"
        for (method, path), op in spec.operations.items()
        if (method, path) not in served and op.operation_id not in not_implemented
    )
    if missing:
        listing = ", ".join(missing)
        raise RuntimeError(f"spec operations neither served nor listed as not implemented: {listing}")
    for op_id in sorted(not_implemented):
        method, path = by_id[op_id]
        app.router.add_route(method, path, _handler(op_id))
