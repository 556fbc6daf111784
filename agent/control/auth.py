"""Session tokens on the agent's HTTP API: `?jwt=` or `Authorization: Bearer`, checked once a key is known.

The key comes from config (`control_jwt_public_key`) or from the control plane over the link (WELCOME).
With no key, the agent behaves as before (loopback-only, the guard's rules). A bad, expired or foreign
token is 401, so the official SDK drops its direct route and goes through the control plane.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..config import Config
from ..errors import AgentError
from ..operation import SERVICES_KEY
from . import CONTROL_KEY
from .jwt import InvalidToken, load_public_key, verify

# Probes and the spec stay open: they reveal nothing of a session.
OPEN_PATHS = frozenset({"/health", "/spec.yaml", "/spec.json"})


class Unauthorized(AgentError):
    status = 401
    code = "unauthorized"


def token_of(request: web.Request) -> str | None:
    token = request.query.get("jwt")
    if token:
        return token
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return None


def middleware(config: Config) -> Callable[..., Awaitable[web.StreamResponse]]:
    configured: Ed25519PublicKey | None = (
        load_public_key(config.control_jwt_public_key) if config.control_jwt_public_key else None
    )

    @web.middleware
    async def check_token(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        key = configured
        session: str | None = None
        agent_id = config.control_agent_id
        services = request.app.get(SERVICES_KEY)
        if services is not None and CONTROL_KEY in services:
            control = services.get(CONTROL_KEY)
            key = key or control.jwt_key
            session = control.session_id
            agent_id = control.identity.agent_id
        if key is None or request.path in OPEN_PATHS:
            return await handler(request)
        token = token_of(request)
        if token is None:
            raise Unauthorized("a session token is required (?jwt= or Authorization: Bearer)")
        try:
            claims = verify(key, token)
        except InvalidToken as exc:
            raise Unauthorized(f"invalid session token: {exc}") from None
        if agent_id and claims.get("agent") not in (None, agent_id):
            raise Unauthorized("the token is for another agent")
        if session is not None and claims.get("sub") != session:
            raise Unauthorized("the token is for another session")
        return await handler(request)

    return check_token
