"""The curl operation's typed request and response model, and the service's own request and answer.

`BrowserCurlRequest` is the spec's BrowserCurlRequest as validated (defaults applied: method GET, timeout_ms
30000, response_encoding utf8, so none is restated here); `CurlRequest` is what the service sends (a checked
URL, the body as bytes); `CurlResponse` what it got back; `BrowserCurlResult` the spec's answer.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Mapping


@dataclasses.dataclass(frozen=True)
class BrowserCurlRequest:
    url: str
    method: str
    timeout_ms: int
    response_encoding: str
    headers: Mapping[str, str] | None = None
    body: str | None = None


@dataclasses.dataclass(frozen=True)
class CurlRawRequest:
    """The typed request of /curl/raw (any method): the target URL; the rest of the query, the headers and
    the body are the transport's and go through raw."""

    url: str


@dataclasses.dataclass(frozen=True)
class CurlRequest:
    url: str
    method: str
    timeout_ms: int
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    body: bytes | None = None


@dataclasses.dataclass(frozen=True)
class CurlResponse:
    status: int
    headers: dict[str, list[str]]
    body: bytes
    duration_ms: int


@dataclasses.dataclass(frozen=True)
class BrowserCurlResult:
    status: int
    headers: dict[str, list[str]]
    body: str
    duration_ms: int

    @classmethod
    def of(cls, response: CurlResponse, response_encoding: str) -> BrowserCurlResult:
        if response_encoding == "base64":
            body = base64.b64encode(response.body).decode("ascii")
        else:
            body = response.body.decode("utf-8", errors="replace")
        return cls(response.status, response.headers, body, response.duration_ms)
