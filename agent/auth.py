"""Session tokens: the check on the agent's HTTP API and on the CDP proxy (`?jwt=` or Bearer).

A token is a compact EdDSA JWT the control plane signs (`agent/jwt.py`), bound to a session and an agent.
The key that verifies it comes from config (`control_jwt_public_key`) or from the control plane over the
link (WELCOME); the control service keeps `SessionAuth` up to date (key, session, agent id).

- A key is known: every route but `/health` and the spec needs a valid token; bad, expired, foreign → 401.
- No key, and the agent (or its CDP proxy) binds beyond loopback: every such route is 401 until a key
  arrives (fail closed), unless `insecure_no_auth` says otherwise. Without a key and without a control
  link the agent refuses to start there at all (`startup_problem`).
- No key, loopback only: as before (the guard's rules keep web pages out).

Tokens never reach a log line: `RedactTokens` rewrites `jwt=…` in every record the agent's handlers emit
(the access log included), and no error message echoes one.
"""

from __future__ import annotations

import collections
import ipaddress
import logging
import re
import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .config import Config
from .errors import AgentError, Handler
from .jwt import LEEWAY_S, InvalidToken, load_public_key, verify
from .operation import SERVICES_KEY
from .services import Key

# Probes and the spec stay open: they reveal nothing of a session (the supervisor's and Docker's
# HEALTHCHECK read /health without a token).
OPEN_PATHS = frozenset({"/health", "/spec.yaml", "/spec.json"})

INSECURE_HINT = "--insecure-no-auth (AGENT_INSECURE_NO_AUTH=1)"
VERIFIED_CACHE = 256


class Unauthorized(AgentError):
    status = 401
    code = "unauthorized"


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the port on this machine ('' and 0.0.0.0 / :: are every interface)."""
    name = host.strip().strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # a name: whatever it resolves to may be reachable from outside


def startup_problem(config: Config) -> str | None:
    """Why the agent must not start with this config (a message naming the fix), or None."""
    if config.control_jwt_public_key:
        try:
            load_public_key(config.control_jwt_public_key)
        except (ValueError, OSError) as exc:
            return f"AGENT_CONTROL_JWT_PUBLIC_KEY is not a usable Ed25519 public key: {exc}"
    if is_loopback(config.host) or config.insecure_no_auth:
        return None
    if config.control_jwt_public_key or config.control_url:
        return None  # a key from config, or one the control plane sends over the link
    return (
        f"refusing to serve on {config.host!r}, beyond loopback, without a session-token key: anyone who "
        "reaches the port could drive the browser and run commands. Set AGENT_CONTROL_JWT_PUBLIC_KEY "
        "(--control-jwt-public-key), or AGENT_CONTROL_URL so that the control plane sends the key, or bind "
        f"127.0.0.1 (AGENT_HOST), or pass {INSECURE_HINT} to serve without authentication."
    )


class SessionAuth:
    """Who may call: the verification key, the session and agent tokens must name, and whether a token is
    needed even before a key is known."""

    def __init__(
        self,
        key: Ed25519PublicKey | None = None,
        *,
        agent_id: str = "",
        required: bool = False,
        configured: bool = False,
    ) -> None:
        self.key = key
        self.agent_id = agent_id
        self.session_id: str | None = None  # None = not told: any session of this agent
        self.required = required
        self._configured = configured  # a key from config wins over one from the link
        self.refused = 0
        # Tokens whose signature verified (an Ed25519 check costs ~150 µs; the SDK sends one token on every
        # call): token → claims, bounded; expiry, agent and session are still checked on each use.
        self._verified: collections.OrderedDict[str, dict[str, Any]] = collections.OrderedDict()

    @classmethod
    def from_config(cls, config: Config) -> SessionAuth:
        key = load_public_key(config.control_jwt_public_key) if config.control_jwt_public_key else None
        required = not is_loopback(config.host) and not config.insecure_no_auth
        return cls(key, agent_id=config.control_agent_id, required=required, configured=key is not None)

    def set_key(self, key: Ed25519PublicKey) -> None:
        if not self._configured:
            self.key = key
            self._verified.clear()

    @property
    def active(self) -> bool:
        return self.key is not None or self.required

    @property
    def token_needed(self) -> bool:
        # Beyond loopback, or with a key from config. A key that came only over the link to a loopback-only
        # agent verifies every token sent but needs none (`make run`'s sandbox links to a local control
        # plane, and its curl quickstart and local tools keep working; the guard still keeps web pages out).
        return self.required or (self._configured and self.key is not None)

    def check(self, path: str, token: str | None) -> None:
        """Raise Unauthorized unless this API request may pass."""
        if path not in OPEN_PATHS:
            self.check_token(token)

    def check_token(self, token: str | None) -> None:
        """Raise Unauthorized unless `token` may pass (nothing is open: the CDP proxy's check)."""
        if not self.active or (token is None and not self.token_needed):
            return
        try:
            self._check(token)
        except Unauthorized:
            self.refused += 1
            raise

    def _check(self, token: str | None) -> None:
        if self.key is None:
            raise Unauthorized(
                "a session token is required here, and no key to verify it is known yet (the control plane "
                "sends it over the link; or set AGENT_CONTROL_JWT_PUBLIC_KEY)"
            )
        if token is None:
            raise Unauthorized("a session token is required (?jwt= or Authorization: Bearer)")
        claims = self._verified.get(token)
        if claims is not None and time.time() > claims["exp"] + LEEWAY_S:
            del self._verified[token]
            claims = None
        if claims is None:
            try:
                claims = verify(self.key, token)
            except InvalidToken as exc:
                raise Unauthorized(f"invalid session token: {exc}") from None
            self._verified[token] = claims
            while len(self._verified) > VERIFIED_CACHE:
                self._verified.popitem(last=False)
        if self.agent_id and claims.get("agent") not in (None, self.agent_id):
            raise Unauthorized("the token is for another agent")
        if self.session_id is not None and claims.get("sub") != self.session_id:
            raise Unauthorized("the token is for another session")

    def status(self) -> dict[str, object]:
        return {"key": self.key is not None, "required": self.token_needed, "refused": self.refused}


AUTH_KEY = Key("auth", SessionAuth)


def token_of(query: Mapping[str, str], headers: Mapping[str, str]) -> str | None:
    token = query.get("jwt")
    if token:
        return token
    auth = headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return None


def middleware() -> Middleware:
    @web.middleware
    async def check_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        services = request.app.get(SERVICES_KEY)
        if services is not None and AUTH_KEY in services:
            services.get(AUTH_KEY).check(request.path, token_of(request.query, request.headers))
        return await handler(request)

    return check_token


_TOKEN_IN_TEXT = re.compile(r"(jwt=|[Bb]earer\s+)[A-Za-z0-9_\-.%]+")


def redact(text: str) -> str:
    """`text` with every `jwt=<token>` and `Bearer <token>` replaced (URLs, queries, headers)."""
    return _TOKEN_IN_TEXT.sub(r"\1<redacted>", text)


class RedactTokens(logging.Filter):
    """On a handler: no record it writes carries a session token."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "jwt=" in message or "earer" in message:
            record.msg, record.args = redact(message), None
        return True
