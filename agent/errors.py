"""The agent's error hierarchy; `error_middleware` maps it to the spec's Error {code, message} bodies."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)


class AgentError(Exception):
    """An error with an HTTP status and a machine-readable code."""

    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, details: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def headers(self) -> dict[str, str]:
        """Headers the error response carries (Retry-After on a cap)."""
        return {}

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            out["details"] = self.details
        return out


class BadRequest(AgentError):
    status = 400
    code = "bad_request"


class Forbidden(AgentError):
    status = 403
    code = "forbidden"


class NotFound(AgentError):
    status = 404
    code = "not_found"


class Conflict(AgentError):
    status = 409
    code = "conflict"


class PayloadTooLarge(AgentError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(AgentError):
    status = 415
    code = "unsupported_media_type"


class InternalError(AgentError):
    status = 500
    code = "internal_error"


class Unavailable(AgentError):
    """A dependency (the X display, Chromium) is not ready yet; the client may retry."""

    status = 503
    code = "unavailable"


class AtCapacity(AgentError):
    """A cap on what the agent holds at once (streams, processes) is reached: 503 with Retry-After, which
    the SDK honours when it retries (it retries 5xx), by when something held may have ended."""

    status = 503
    code = "at_capacity"

    def __init__(self, message: str, *, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


class InsufficientStorage(AgentError):
    """The disk (or quota) is full: nothing was written in place of what was there (RFC 4918's 507)."""

    status = 507
    code = "insufficient_storage"


def error_response(status: int, code: str, message: str, **extra: Any) -> web.Response:
    body: dict[str, Any] = {"code": code, "message": message, **extra}
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")


# aiohttp's own HTTP errors (unknown route, wrong method, body too large) get our codes.
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    507: "insufficient_storage",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except AgentError as exc:
        if exc.status >= 500:
            log.warning("%s %s -> %d %s", request.method, request.path, exc.status, exc.message)
        return web.Response(
            status=exc.status,
            text=json.dumps(exc.body()),
            content_type="application/json",
            headers=exc.headers() or None,
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "internal_error" if exc.status >= 500 else "bad_request")
        message = exc.reason
        if exc.status == 404:
            message = f"no route {request.method} {request.path}"
        elif exc.status == 405:
            message = f"method {request.method} not allowed on {request.path}"
        response = error_response(exc.status, code, message)
        for name in ("Allow",):
            if name in exc.headers:
                response.headers[name] = exc.headers[name]
        return response
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(500, "internal_error", "internal error; see the agent log")
