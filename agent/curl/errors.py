"""How a browser curl request fails: the spec's 502 transport error, and a target left in an unknown state."""

from __future__ import annotations

from typing import Any

from ..cdp.connection import CDPError
from ..errors import AgentError
from .net_errors import net_error_code


class CurlTransportError(AgentError):
    """The request never produced an HTTP answer: 502 `BrowserCurlTransportError`."""

    status = 502
    code = "browser_curl_transport_error"

    def __init__(self, message: str, name: str | None = None) -> None:
        super().__init__(message)
        self.net_error_name = name
        self.net_error = net_error_code(name) if name else None

    def body(self) -> dict[str, Any]:
        # The spec's BrowserCurlTransportError {message, net_error, net_error_name}, plus `code` so that it is
        # an Error {code, message} like every other error body (declared as an extension in openapi.yaml).
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.net_error is not None:
            out["net_error"] = self.net_error
        if self.net_error_name:
            out["net_error_name"] = self.net_error_name
        return out


def timed_out(url: str, timeout_ms: int) -> CurlTransportError:
    return CurlTransportError(f"request to {url} timed out after {timeout_ms} ms", "ERR_TIMED_OUT")


class Dirty(Exception):
    """The target is in an unknown state (close it rather than reuse it)."""


# How a call fails when its target was closed or crashed under it (the agent's own message for a detached
# session, then Chromium's): the browser is shutting down or a renderer died; a retry gets a new target.
_TARGET_GONE = (
    "the target went away",
    "No session with given id",
    "Session with given id not found",
    "No target with given id",
    "Target closed",
)


def target_gone(exc: Exception) -> bool:
    return isinstance(exc, CDPError) and any(words in exc.message for words in _TARGET_GONE)
