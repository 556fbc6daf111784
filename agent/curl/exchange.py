"""The Fetch exchange of one browser curl request, sans I/O: CDP events and replies in, CDP commands out.

The I/O shell (`service.py`) starts the page's `fetch()` (`fetch_params`), then feeds the target session's
events to `event()`, tells `fetch_ended()` when that call returns, and carries out each action the exchange
hands back, one at a time:

- `Send(method, params)`: send the command, then `reply(result)` or `failed(error)`;
- `Drain()`: `drained(events)` with every event queued at that moment (late raw headers);
- `None`: wait for the next event; if `quiet_after` is set and nothing comes for that long, `quiet()`.

Once `finished`, `answer` (status, headers, body) or `error` says how it ended, and `paused` is the
response-stage `Fetch.requestPaused` the shell still has to abort. The exchange reads no clock and never
gives up by itself: the request's timeout is the shell's (it closes the target, which ends the request).

At the Request stage it merges the caller's headers and body in (`Fetch.continueRequest`); at the Response
stage it reads status and headers (the raw ones from `Network.responseReceivedExtraInfo`, Set-Cookie
included) and the body: whole with `Fetch.getResponseBody` when Content-Length is declared, else streamed
(`Fetch.takeResponseBodyAsStream` + `IO.read`) so that a body past `max_body_bytes` stops early.
With `stream_body` (/curl/raw) it stops at the stream: the answer has no body and `stream` is the IO
handle the shell reads the body from, chunk by chunk, while it writes it to its client.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import json
from collections.abc import Iterable, Mapping
from typing import Any

from ..cdp.connection import CDPDisconnected
from .errors import CurlTransportError, Dirty
from .net_errors import net_error_name

# Statuses whose answer has no body to read (Chromium refuses getResponseBody for them).
NO_BODY_STATUS = frozenset({204, 205, 304})
CHUNK = 4 * 1024 * 1024  # IO.read size when a body has no Content-Length
QUIET_S = 0.5  # how long the failure's details may trail the end of the fetch() call
FETCH_ENDED = "agent.fetchEnded"  # the pseudo-event the shell queues when the fetch() call returns


@dataclasses.dataclass(frozen=True)
class Send:
    method: str
    params: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Drain:
    """Hand in every event queued now (`drained`)."""


Action = Send | Drain | None


@dataclasses.dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, list[str]]
    body: bytes


class _State(enum.Enum):
    WAITING = "waiting"  # for the response stage; continuing the request stage meanwhile
    CONTINUING = "continuing"  # a Fetch.continueRequest is under way
    BODY = "body"  # reading the body (optional, whole or streamed)
    CLOSING = "closing"  # IO.close of the body stream
    ABORTING = "aborting"  # Fetch.failRequest of the paused response, after an error
    HEADERS = "headers"  # looking for raw headers that came while the body was read
    FINISHED = "finished"


def fetch_expression(url: str, method: str) -> str:
    # The site's own kind of request: same origin, the site's cookies included, no referrer (the hidden
    # document's path is ours), redirects handed back rather than followed, never answered from the cache.
    options = {
        "method": method,
        "credentials": "include",
        "redirect": "manual",
        "referrerPolicy": "no-referrer",
        "cache": "no-store",
    }
    return f"fetch({json.dumps(url)}, {json.dumps(options)}).then(() => true, () => false)"


def merge_headers(base: Mapping[str, str], custom: Mapping[str, str]) -> list[dict[str, str]]:
    """The browser's request headers with the caller's on top (names compared without case)."""
    merged: dict[str, tuple[str, str]] = {name.lower(): (name, value) for name, value in base.items()}
    for name, value in custom.items():
        merged[name.lower()] = (name, value)
    return [{"name": name, "value": value} for name, value in merged.values()]


def multi_headers(pairs: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    spelling: dict[str, str] = {}
    for name, value in pairs:
        key = spelling.setdefault(name.lower(), name)
        out.setdefault(key, []).append(value)
    return out


def response_headers(paused: Mapping[str, Any], raw: Mapping[str, str] | None) -> dict[str, list[str]]:
    # Network.responseReceivedExtraInfo has the raw headers, Set-Cookie included (multiple values joined by
    # newlines); Fetch's own list leaves Set-Cookie out, so it is the fallback only.
    if raw is not None:
        return multi_headers([(name, v) for name, value in raw.items() for v in str(value).split("\n")])
    return multi_headers([(h["name"], h["value"]) for h in paused.get("responseHeaders", [])])


def decode(reply: Mapping[str, Any], key: str = "body") -> bytes:
    data = str(reply.get(key, ""))
    if reply.get("base64Encoded"):
        return binascii.a2b_base64(data)  # straight from the ASCII str (b64decode copies it to bytes first)
    return data.encode("utf-8")


class Exchange:
    def __init__(
        self,
        *,
        url: str,
        method: str,
        headers: Mapping[str, str],
        body: bytes | None,
        max_body_bytes: int,
        shown_url: str | None = None,
        stream_body: bool = False,
        cap_name: str = "curl_max_response_bytes",
    ) -> None:
        self.url = url  # what fetch() asks for (no credentials)
        self.shown_url = shown_url or url  # what error messages name (the caller's URL)
        self.method = method
        self.headers = dict(headers)
        self.body = body
        self.max_body_bytes = max_body_bytes
        self.stream_body = stream_body
        self.cap_name = cap_name  # the Config field of max_body_bytes (error messages name it)
        self.stream: str | None = None  # with stream_body: the IO handle of the body (None: no body)
        self.answer: Answer | None = None
        self.error: BaseException | None = None
        self.paused: dict[str, Any] | None = None  # the response-stage pause, still to be aborted
        self._state = _State.WAITING
        self._fetch_ended = False
        self._raw: dict[str, dict[str, str]] = {}  # Network requestId → raw response headers
        self._pending: str | None = None  # the method of the Send under way
        self._status = 0
        self._body_mode = ""  # optional | whole | stream
        self._stream: str | None = None
        self._chunks: list[bytes] = []
        self._size = 0
        self._body = b""

    # --- what the shell asks ------------------------------------------------------------------------------

    @property
    def request_stage(self) -> bool:
        """Whether Fetch must pause at the Request stage too (there is something to merge in)."""
        return bool(self.headers) or self.body is not None

    def fetch_params(self) -> dict[str, Any]:
        return {"expression": fetch_expression(self.url, self.method), "awaitPromise": True}

    @property
    def finished(self) -> bool:
        return self._state is _State.FINISHED

    @property
    def quiet_after(self) -> float | None:
        """Once the fetch() call ended, how long to wait for the next event before `quiet()`."""
        return QUIET_S if self._fetch_ended and self._state is _State.WAITING else None

    # --- inputs -------------------------------------------------------------------------------------------

    def event(self, event: Mapping[str, Any]) -> Action:
        method = event.get("method")
        params: dict[str, Any] = event.get("params", {})
        if method == FETCH_ENDED:
            self._fetch_ended = True
            return None
        if method == "Network.responseReceivedExtraInfo":
            self._raw[params.get("requestId", "")] = params.get("headers", {})
            return None
        if self._state is not _State.WAITING:
            return None
        if method == "Network.loadingFailed" and not params.get("canceled"):
            error_text = str(params.get("errorText") or "")
            name = net_error_name(error_text) if error_text else "ERR_FAILED"
            return self._fail(CurlTransportError(f"request to {self.shown_url} failed: {name}", name))
        if method == "Fetch.requestPaused":
            request_id = params["requestId"]
            if "responseErrorReason" in params:
                # Let it fail for real: Network.loadingFailed then names the exact net error.
                return self._send("Fetch.continueRequest", {"requestId": request_id}, _State.CONTINUING)
            if "responseStatusCode" not in params:
                return self._send("Fetch.continueRequest", self._overrides(params), _State.CONTINUING)
            return self._response(params)
        return None

    def fetch_ended(self) -> Action:
        return self.event({"method": FETCH_ENDED})

    def quiet(self) -> Action:
        """No event for `quiet_after` s after the fetch() call ended: there will be no answer."""
        return self._fail(Dirty(f"the request to {self.url} ended without a response"))

    def reply(self, result: Mapping[str, Any]) -> Action:
        method, self._pending = self._pending, None
        state = self._state
        if state is _State.CONTINUING:
            self._state = _State.WAITING
            return None
        if state is _State.BODY:
            if method == "Fetch.takeResponseBodyAsStream":
                self._stream = str(result["stream"])
                if self.stream_body:
                    self.stream = self._stream  # the shell reads (and closes) it
                    return self._body_done(b"")
                return self._read()
            if method == "IO.read":
                chunk = decode(result, key="data")
                self._size += len(chunk)
                if self._size > self.max_body_bytes:
                    self.error = self._too_big(f"more than {self.max_body_bytes} bytes")
                    return self._close_stream()
                self._chunks.append(chunk)
                return self._close_stream() if result.get("eof") else self._read()
            # Fetch.getResponseBody
            body = decode(result)
            if self._body_mode == "whole" and len(body) > self.max_body_bytes:
                # A compressed body can grow past its Content-Length.
                return self._fail(self._too_big(f"{len(body)} bytes"))
            return self._body_done(body)
        if state is _State.CLOSING:
            return self._after_close()
        if state is _State.ABORTING:
            self._state = _State.FINISHED
            return None
        raise RuntimeError(f"unexpected reply to {method} in state {state.value}")

    def failed(self, error: Exception) -> Action:
        method, self._pending = self._pending, None
        state = self._state
        if state is _State.CONTINUING:
            self.error, self._state = error, _State.FINISHED
            return None
        if state is _State.BODY:
            if self._body_mode == "optional" and not isinstance(error, CDPDisconnected):
                return self._body_done(b"")  # e.g. a HEAD answer has no body to read
            if method == "IO.read":
                self.error = error
                return self._close_stream()
            return self._fail(error)
        if state is _State.CLOSING:  # the stream is gone either way
            return self._after_close()
        if state is _State.ABORTING:
            self._state = _State.FINISHED
            return None
        raise RuntimeError(f"unexpected failure of {method} in state {state.value}") from error

    def drained(self, events: Iterable[Mapping[str, Any]]) -> Action:
        for event in events:
            if event.get("method") == "Network.responseReceivedExtraInfo":
                params = event.get("params", {})
                self._raw[params.get("requestId", "")] = params.get("headers", {})
        return self._finish()

    # --- steps --------------------------------------------------------------------------------------------

    def _send(self, method: str, params: dict[str, Any], state: _State) -> Send:
        self._pending, self._state = method, state
        return Send(method, params)

    def _overrides(self, paused: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"requestId": paused["requestId"]}
        if self.headers:
            out["headers"] = merge_headers(paused.get("request", {}).get("headers", {}), self.headers)
        if self.body is not None:
            out["postData"] = base64.b64encode(self.body).decode("ascii")
        return out

    def _response(self, paused: dict[str, Any]) -> Action:
        self.paused = paused
        self._status = status = int(paused["responseStatusCode"])
        request_id = {"requestId": paused["requestId"]}
        no_body = self.method == "HEAD" or status in NO_BODY_STATUS or 300 <= status < 400
        if no_body and self.stream_body:
            return self._body_done(b"")  # nothing to stream: the answer is complete as it is
        if no_body:
            # No body to read (Chromium has none for a redirect either: it would follow it).
            self._body_mode = "optional"
            return self._send("Fetch.getResponseBody", request_id, _State.BODY)
        headers = response_headers(paused, self._raw.get(paused.get("networkId", "")))
        length = next((v for k, v in headers.items() if k.lower() == "content-length"), None)
        declared = int(length[0]) if length and length[0].strip().isdigit() else None
        if declared is not None and declared > self.max_body_bytes:
            return self._fail(self._too_big(f"{declared} bytes declared"))
        if declared is not None and not self.stream_body:
            self._body_mode = "whole"
            return self._send("Fetch.getResponseBody", request_id, _State.BODY)
        self._body_mode = "stream"
        return self._send("Fetch.takeResponseBodyAsStream", request_id, _State.BODY)

    def _read(self) -> Send:
        return self._send("IO.read", {"handle": self._stream, "size": CHUNK}, _State.BODY)

    def _close_stream(self) -> Send:
        return self._send("IO.close", {"handle": self._stream}, _State.CLOSING)

    def _after_close(self) -> Action:
        if self.error is not None:
            error, self.error = self.error, None
            return self._fail(error)
        return self._body_done(b"".join(self._chunks))

    def _body_done(self, body: bytes) -> Action:
        assert self.paused is not None
        self._body = body
        if self.paused.get("networkId", "") not in self._raw:
            # The raw headers usually come first; look again for any that arrived meanwhile.
            self._state = _State.HEADERS
            return Drain()
        return self._finish()

    def _finish(self) -> Action:
        assert self.paused is not None
        headers = response_headers(self.paused, self._raw.get(self.paused.get("networkId", "")))
        self.answer = Answer(self._status, headers, self._body)
        self._state = _State.FINISHED
        return None

    def _fail(self, error: BaseException) -> Action:
        self.error = error
        if self.paused is not None:
            # Abort the paused answer (the page never sees it), then fail.
            return self._send(
                "Fetch.failRequest",
                {"requestId": self.paused["requestId"], "errorReason": "Aborted"},
                _State.ABORTING,
            )
        self._state = _State.FINISHED
        return None

    def _too_big(self, what: str) -> CurlTransportError:
        return CurlTransportError(
            f"response body of {self.shown_url} is too large ({what}; the limit is {self.max_body_bytes} "
            f"bytes, config {self.cap_name})",
            "ERR_FILE_TOO_BIG",
        )
