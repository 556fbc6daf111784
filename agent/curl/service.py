"""HTTP requests through Chromium's own network stack (cookies, proxy settings, TLS fingerprint).

A hidden target (`Target.createTarget hidden`: not in the tab strip, never shown, not a Playwright page)
holds an empty document *of the URL's origin*: it navigates to `<origin>/__agent_curl__` once and the `Fetch`
domain answers that navigation itself (`Fetch.fulfillRequest`), so nothing goes to the server and nothing of
the site runs. The request is then a `fetch()` from that document: same origin, so no CORS and every cookie of
the site goes with it (HttpOnly, SameSite=Strict), through the browser's proxy and TLS stack. The `Fetch`
domain merges the caller's headers and body in at the Request stage and reads status, headers and body at
the Response stage, then aborts the request (nothing reaches the page; Set-Cookie still lands in the jar).

The first request to an origin pays that extra navigation (no network); later ones reuse the document and
cost a few milliseconds. Hidden targets are pooled (`idle_targets` stay warm, the least recently used is
re-pointed at a new origin); a target that saw a failure or a timeout is closed instead of reused.
Redirects are not followed: a 3xx comes back as it is, with its Location (as `curl` without `-L`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from ..cdp.connection import CDPConnection, CDPDisconnected, CDPError, Session
from ..errors import AgentError, InternalError, Unavailable
from ..tasks import TaskGroup
from .net_errors import net_error_code, net_error_name

log = logging.getLogger(__name__)

# Methods whose answer has no body to read (Chromium refuses getResponseBody for them).
_NO_BODY_STATUS = frozenset({204, 205, 304})
_CHUNK = 4 * 1024 * 1024  # IO.read size when a body has no Content-Length
_IDLE_MAX_S = 300.0  # an idle hidden target older than this is closed instead of reused
BLANK_PATH = "/__agent_curl__"  # the hidden document's path (answered by the agent, never requested)
_BLANK_PAGE = base64.b64encode(b"<!doctype html><title>agent curl</title>").decode()
_IS_BLANK = f"location.pathname === {json.dumps(BLANK_PATH)} && location.origin !== 'null'"


# How a call fails when its target was closed or crashed under it (the agent's own message for a detached
# session, then Chromium's): the browser is shutting down or a renderer died; a retry gets a new target.
_TARGET_GONE = (
    "the target went away",
    "No session with given id",
    "Session with given id not found",
    "No target with given id",
    "Target closed",
)


def _target_gone(exc: Exception) -> bool:
    return isinstance(exc, CDPError) and any(words in exc.message for words in _TARGET_GONE)


def _blank_document(request_id: str) -> dict[str, Any]:
    return {
        "requestId": request_id,
        "responseCode": 200,
        "responseHeaders": [{"name": "Content-Type", "value": "text/html; charset=utf-8"}],
        "body": _BLANK_PAGE,
    }


def _fetch_expression(url: str, method: str) -> str:
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


@dataclasses.dataclass(frozen=True)
class CurlRequest:
    url: str
    method: str = "GET"
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    body: bytes | None = None
    timeout_ms: int = 30000


@dataclasses.dataclass
class CurlResponse:
    status: int
    headers: dict[str, list[str]]
    body: bytes
    duration_ms: int


@dataclasses.dataclass
class _Target:
    session: Session
    request_stage: bool | None = None  # whether Fetch pauses at the Request stage too (None: not set up)
    origin: str | None = None  # the origin of its document, once it has one
    idle_since: float = 0.0  # monotonic time it was last given back

    @property
    def target_id(self) -> str:
        return self.session.target_id


class _Dirty(Exception):
    """The target is in an unknown state (close it rather than reuse it)."""


def split_url(url: str) -> tuple[str, str, dict[str, str]]:
    """(URL without user:password@, its origin, an Authorization header for the credentials if any)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port is not None else "")
    headers: dict[str, str] = {}
    if parts.username is not None or parts.password is not None:
        # fetch() refuses URLs with credentials; curl sends them as Basic authentication.
        token = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(token).decode("ascii")
    bare = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    return bare, f"{parts.scheme}://{netloc}", headers


def _merge_headers(base: Mapping[str, str], custom: Mapping[str, str]) -> list[dict[str, str]]:
    """The browser's request headers with the caller's on top (names compared without case)."""
    merged: dict[str, tuple[str, str]] = {name.lower(): (name, value) for name, value in base.items()}
    for name, value in custom.items():
        merged[name.lower()] = (name, value)
    return [{"name": name, "value": value} for name, value in merged.values()]


def _multi_headers(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    spelling: dict[str, str] = {}
    for name, value in pairs:
        key = spelling.setdefault(name.lower(), name)
        out.setdefault(key, []).append(value)
    return out


def _response_headers(paused: Mapping[str, Any], raw: Mapping[str, str] | None) -> dict[str, list[str]]:
    # Network.responseReceivedExtraInfo has the raw headers, Set-Cookie included (multiple values joined by
    # newlines); Fetch's own list leaves Set-Cookie out, so it is the fallback only.
    if raw is not None:
        return _multi_headers([(name, v) for name, value in raw.items() for v in str(value).split("\n")])
    return _multi_headers([(h["name"], h["value"]) for h in paused.get("responseHeaders", [])])


class CurlService:
    def __init__(
        self,
        cdp: CDPConnection,
        *,
        max_body_bytes: int = 32 * 1024 * 1024,
        max_concurrency: int = 16,
        idle_targets: int = 2,
        connect_wait_s: float = 10.0,
    ) -> None:
        self.cdp = cdp
        self.max_body_bytes = max_body_bytes
        self.idle_targets = idle_targets
        self.connect_wait_s = connect_wait_s
        self._slots = asyncio.Semaphore(max_concurrency)
        self._idle: list[_Target] = []
        self._leased: set[str] = set()
        self._settling = 0  # targets whose last request is still being aborted
        self._doomed: set[str] = set()  # targets to close (closing now, or at shutdown)
        self._closed = False
        self._released = asyncio.Event()
        self._tasks = TaskGroup("curl")
        self._remove_listener = cdp.on_state(self._on_state)
        if cdp.connected:
            self._on_state(True, cdp.generation)

    @property
    def target_ids(self) -> set[str]:
        """Hidden targets this service owns (other CDP consumers, e.g. telemetry, may want to skip them)."""
        return {t.target_id for t in self._idle} | self._leased | self._doomed

    def status(self) -> dict[str, Any]:
        return {"idle_targets": len(self._idle), "busy_targets": len(self._leased)}

    def _on_state(self, connected: bool, generation: int) -> None:
        # Targets of a dead browser are gone with it; warm one up in the new browser.
        self._idle = [t for t in self._idle if t.session.generation == generation and connected]
        if connected:
            self._doomed.clear()  # ids of the previous browser mean nothing to this one
        if connected and not self._idle and self.idle_targets > 0:
            self._tasks.spawn(self._warm(), name="warm-target")

    async def _warm(self) -> None:
        with contextlib.suppress(CDPError, TimeoutError):
            target = await self._new_target()
            await self._prepare(target, request_stage=False)
            self._keep_or_close(target)

    async def close(self) -> None:
        """Close every hidden target this service made (Chromium outlives the agent)."""
        self._closed = True
        self._remove_listener()
        await asyncio.wait_for(self._tasks.close(), 5)  # settling targets land in _idle or _doomed
        doomed = {t.target_id for t in self._idle if t.session.alive} | self._doomed
        self._idle = []
        if self.cdp.connected and doomed:
            await asyncio.gather(*(self._close(target_id) for target_id in doomed))

    # --- the request -------------------------------------------------------------------------------------

    async def request(self, request: CurlRequest) -> CurlResponse:
        started = time.monotonic()
        url, origin, credentials = split_url(request.url)
        headers = {**credentials, **request.headers}
        generation: int | None = None  # of the browser the request's target belongs to
        try:
            async with asyncio.timeout(request.timeout_ms / 1000):
                async with self._slots:
                    target = await self._lease(origin)
                    generation = target.session.generation
                    try:
                        if target.origin != origin:
                            await self._open_origin(target, origin)
                        response, fetched, paused = await self._exchange(
                            target, url, headers, request, started
                        )
                    except BaseException:
                        self._close_later(target)
                        raise
                    # Aborting the request and giving the target back happen after the answer.
                    self._settling += 1
                    self._tasks.spawn(self._settle(target, fetched, paused), name="settle-target")
                    return response
        except TimeoutError:
            raise CurlTransportError(
                f"request to {request.url} timed out after {request.timeout_ms} ms", "ERR_TIMED_OUT"
            ) from None
        except CDPDisconnected as exc:
            raise Unavailable(f"Chromium went away during the request ({exc.message}); retry") from None
        except (_Dirty, CDPError) as exc:
            # While Chromium shuts down its targets go first (their sessions detach, fetch() ends with no
            # answer) and the DevTools connection closes a moment later: that is a 503 to retry, not a bug.
            if _target_gone(exc) or await self._browser_went_away(generation):
                raise Unavailable(
                    f"Chromium closed the request's tab or went away during the request ({exc}); retry"
                ) from None
            raise InternalError(f"browser curl failed: {exc}") from None

    async def _browser_went_away(self, generation: int | None, within_s: float = 2.0) -> bool:
        """Whether the browser of `generation` is gone, or goes within `within_s`."""
        deadline = time.monotonic() + within_s
        while self.cdp.connected and self.cdp.generation == generation:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def _lease(self, origin: str) -> _Target:
        """An idle target, one whose document already has `origin` if possible."""
        if not self.cdp.connected:
            try:
                await self.cdp.wait_connected(self.connect_wait_s)
            except CDPDisconnected as exc:
                raise Unavailable(f"Chromium is not reachable: {exc.message}") from None
        while True:
            # Targets idle for long go (their renderer's memory with them; a stale document is never used).
            now = time.monotonic()
            for stale in [t for t in self._idle if now - t.idle_since > _IDLE_MAX_S]:
                self._idle.remove(stale)
                self._close_later(stale)
            self._idle = [t for t in self._idle if t.session.alive]
            if self._idle:
                # The same origin first; else the least recently used (it gets a new document).
                same = [t for t in self._idle if t.origin == origin]
                target = same[-1] if same else self._idle[0]
                self._idle.remove(target)
                self._leased.add(target.target_id)
                return target
            if not self._settling:
                break
            # A target is about to come back (its last request is being aborted): cheaper than a new one.
            self._released.clear()
            try:
                await asyncio.wait_for(self._released.wait(), 0.1)
            except TimeoutError:
                break
        target = await self._new_target()
        self._leased.add(target.target_id)
        return target

    async def _new_target(self) -> _Target:
        created = await self.cdp.send("Target.createTarget", {"url": "about:blank", "hidden": True})
        try:
            session = await self.cdp.attach(created["targetId"])
            # Raw response headers (Set-Cookie) come from Network events. The site's service worker must not
            # answer instead of the network (nor serve the hidden document).
            await session.send("Network.enable")
            await session.send("Network.setBypassServiceWorker", {"bypass": True})
        except BaseException:
            with contextlib.suppress(CDPError, TimeoutError):
                await self.cdp.send("Target.closeTarget", {"targetId": created["targetId"]}, timeout=5)
            raise
        return _Target(session)

    async def _open_origin(self, target: _Target, origin: str) -> None:
        """Give the target an empty document of `origin`, answered by us (no request leaves the browser)."""
        session = target.session
        target.origin = None
        await self._prepare(target, request_stage=True)
        session.drain()
        navigated = asyncio.get_running_loop().create_task(
            session.send("Page.navigate", {"url": origin + BLANK_PATH}), name="curl-open-origin"
        )
        navigated.add_done_callback(lambda _: session.events.put_nowait({"method": "agent.done"}))
        try:
            while True:
                event = await session.events.get()
                if event.get("method") == "Fetch.requestPaused":
                    params = event["params"]
                    if params.get("resourceType") == "Document" and "responseStatusCode" not in params:
                        await session.send("Fetch.fulfillRequest", _blank_document(params["requestId"]))
                    else:  # nothing else belongs to an empty document
                        await session.send(
                            "Fetch.failRequest", {"requestId": params["requestId"], "errorReason": "Aborted"}
                        )
                elif event.get("method") == "agent.done":
                    break
            error_text = str(navigated.result().get("errorText") or "")
        finally:
            if not navigated.done():
                navigated.cancel()
            with contextlib.suppress(BaseException):
                await navigated
        if error_text:
            name = net_error_name(error_text)
            raise CurlTransportError(f"request to {origin} failed: {name}", name)
        # The navigation has committed; make sure scripts run in the new document before using it.
        for _ in range(100):
            reply = await session.send("Runtime.evaluate", {"expression": _IS_BLANK, "returnByValue": True})
            if reply.get("result", {}).get("value") is True:
                target.origin = origin
                return
            await asyncio.sleep(0.01)
        raise _Dirty(f"the hidden document for {origin} did not load")

    async def _prepare(self, target: _Target, *, request_stage: bool) -> None:
        if target.request_stage == request_stage:
            return
        patterns = [{"urlPattern": "*", "requestStage": "Response"}]
        if request_stage:
            patterns.insert(0, {"urlPattern": "*", "requestStage": "Request"})
        await target.session.send("Fetch.enable", {"patterns": patterns})
        target.request_stage = request_stage

    def _keep_or_close(self, target: _Target) -> None:
        self._leased.discard(target.target_id)
        if target.session.alive and len(self._idle) < self.idle_targets and not self._closed:
            target.idle_since = time.monotonic()
            self._idle.append(target)
            self._released.set()
        else:
            self._close_later(target)

    def _close_later(self, target: _Target) -> None:
        self._leased.discard(target.target_id)
        self._released.set()
        target.session.close()
        if not target.session.alive:
            return  # gone with its browser
        self._doomed.add(target.target_id)
        if not self._closed:
            self._tasks.spawn(self._close(target.target_id), name="close-target")

    async def _close(self, target_id: str) -> None:
        with contextlib.suppress(CDPError, TimeoutError):
            await self.cdp.send("Target.closeTarget", {"targetId": target_id}, timeout=5)
        self._doomed.discard(target_id)

    async def _settle(
        self, target: _Target, fetched: asyncio.Task[dict[str, Any]], paused: dict[str, Any]
    ) -> None:
        """Abort the request (the page never sees the answer) and give the target back once everything about
        it has been reported, so no late event of it can be mistaken for the next request's."""
        session = target.session
        network_id = paused.get("networkId")
        reusable = False
        try:
            await session.send(
                "Fetch.failRequest", {"requestId": paused["requestId"], "errorReason": "Aborted"}
            )
            async with asyncio.timeout(2.0):
                ended = network_id is None
                while not (ended and fetched.done()):
                    event = await session.events.get()
                    if event.get("method") in ("Network.loadingFailed", "Network.loadingFinished"):
                        ended = ended or event.get("params", {}).get("requestId") == network_id
            reusable = True
        except (CDPError, TimeoutError):
            pass
        finally:
            self._settling -= 1
            if not fetched.done():
                fetched.cancel()
            with contextlib.suppress(BaseException):
                await fetched
            if reusable:
                self._keep_or_close(target)
            else:
                self._close_later(target)

    async def _exchange(
        self,
        target: _Target,
        url: str,
        headers: Mapping[str, str],
        request: CurlRequest,
        started: float,
    ) -> tuple[CurlResponse, asyncio.Task[dict[str, Any]], dict[str, Any]]:
        """The response, the fetch() call (still to be aborted) and the paused request."""
        session = target.session
        await self._prepare(target, request_stage=bool(headers) or request.body is not None)
        session.drain()
        fetched = asyncio.get_running_loop().create_task(
            session.send(
                "Runtime.evaluate",
                {"expression": _fetch_expression(url, request.method), "awaitPromise": True},
                timeout=request.timeout_ms / 1000 + 5,
            ),
            name="curl-fetch",
        )
        # The end of the fetch() call is an event like the others.
        fetched.add_done_callback(lambda _: session.events.put_nowait({"method": "agent.done"}))
        try:
            response, paused = await self._follow(session, url, headers, request, started)
        except BaseException:
            if not fetched.done():
                fetched.cancel()
            with contextlib.suppress(BaseException):
                await fetched
            raise
        return response, fetched, paused

    async def _follow(
        self,
        session: Session,
        url: str,
        headers: Mapping[str, str],
        request: CurlRequest,
        started: float,
    ) -> tuple[CurlResponse, dict[str, Any]]:
        raw_headers: dict[str, dict[str, str]] = {}  # Network requestId → raw response headers
        done = False  # the fetch() call ended
        while True:
            if done:
                try:  # the failure's details may trail the end of the call a little
                    event = await asyncio.wait_for(session.events.get(), 0.5)
                except TimeoutError:
                    raise _Dirty(f"the request to {url} ended without a response") from None
            else:
                event = await session.events.get()
            method = event.get("method")
            params: dict[str, Any] = event.get("params", {})
            if method == "Network.responseReceivedExtraInfo":
                raw_headers[params.get("requestId", "")] = params.get("headers", {})
            elif method == "Network.loadingFailed" and not params.get("canceled"):
                error_text = str(params.get("errorText") or "")
                name = net_error_name(error_text) if error_text else "ERR_FAILED"
                raise CurlTransportError(f"request to {request.url} failed: {name}", name)
            elif method == "Fetch.requestPaused":
                request_id = params["requestId"]
                if "responseErrorReason" in params:
                    # Let it fail for real: Network.loadingFailed then names the exact net error.
                    await session.send("Fetch.continueRequest", {"requestId": request_id})
                elif "responseStatusCode" not in params:
                    overrides = self._overrides(request_id, params, headers, request)
                    await session.send("Fetch.continueRequest", overrides)
                else:
                    return await self._answer(session, params, raw_headers, request, started), params
            elif method == "agent.done":
                done = True

    @staticmethod
    def _overrides(
        request_id: str, paused: Mapping[str, Any], headers: Mapping[str, str], request: CurlRequest
    ) -> dict[str, Any]:
        out: dict[str, Any] = {"requestId": request_id}
        if headers:
            out["headers"] = _merge_headers(paused.get("request", {}).get("headers", {}), headers)
        if request.body is not None:
            out["postData"] = base64.b64encode(request.body).decode("ascii")
        return out

    async def _answer(
        self,
        session: Session,
        paused: dict[str, Any],
        raw_headers: dict[str, dict[str, str]],
        request: CurlRequest,
        started: float,
    ) -> CurlResponse:
        request_id = paused["requestId"]
        status = int(paused["responseStatusCode"])
        headers = _response_headers(paused, raw_headers.get(paused.get("networkId", "")))
        try:
            body = await self._body(session, request_id, status, headers, request)
        except BaseException:
            with contextlib.suppress(CDPError):
                await session.send("Fetch.failRequest", {"requestId": request_id, "errorReason": "Aborted"})
            raise
        if paused.get("networkId", "") not in raw_headers:
            # The raw headers usually come first; look again for any that arrived meanwhile.
            while not session.events.empty():
                event = session.events.get_nowait()
                if event.get("method") == "Network.responseReceivedExtraInfo":
                    raw_headers[event["params"].get("requestId", "")] = event["params"].get("headers", {})
            headers = _response_headers(paused, raw_headers.get(paused.get("networkId", "")))
        duration_ms = round((time.monotonic() - started) * 1000)
        return CurlResponse(status=status, headers=headers, body=body, duration_ms=duration_ms)

    async def _body(
        self,
        session: Session,
        request_id: str,
        status: int,
        headers: dict[str, list[str]],
        request: CurlRequest,
    ) -> bytes:
        if request.method == "HEAD" or status in _NO_BODY_STATUS or 300 <= status < 400:
            # No body to read (Chromium has none for a redirect either: it would follow it).
            return await self._optional_body(session, request_id)
        length = next((v for k, v in headers.items() if k.lower() == "content-length"), None)
        declared = int(length[0]) if length and length[0].strip().isdigit() else None
        if declared is not None and declared > self.max_body_bytes:
            raise self._too_big(request.url, f"{declared} bytes declared")
        if declared is not None:
            reply = await session.send("Fetch.getResponseBody", {"requestId": request_id})
            body = self._decode(reply)
        else:
            body = await self._stream_body(session, request_id, request.url)
        if len(body) > self.max_body_bytes:  # a compressed body can grow past its Content-Length
            raise self._too_big(request.url, f"{len(body)} bytes")
        return body

    async def _optional_body(self, session: Session, request_id: str) -> bytes:
        try:
            return self._decode(await session.send("Fetch.getResponseBody", {"requestId": request_id}))
        except CDPError as exc:
            if isinstance(exc, CDPDisconnected):
                raise
            return b""

    async def _stream_body(self, session: Session, request_id: str, url: str) -> bytes:
        handle = (await session.send("Fetch.takeResponseBodyAsStream", {"requestId": request_id}))["stream"]
        chunks: list[bytes] = []
        size = 0
        try:
            while True:
                reply = await session.send("IO.read", {"handle": handle, "size": _CHUNK})
                chunk = self._decode(reply, key="data")
                size += len(chunk)
                if size > self.max_body_bytes:
                    raise self._too_big(url, f"more than {self.max_body_bytes} bytes")
                chunks.append(chunk)
                if reply.get("eof"):
                    return b"".join(chunks)
        finally:
            with contextlib.suppress(CDPError):
                await session.send("IO.close", {"handle": handle})

    @staticmethod
    def _decode(reply: Mapping[str, Any], key: str = "body") -> bytes:
        data = str(reply.get(key, ""))
        if reply.get("base64Encoded"):
            return base64.b64decode(data)
        return data.encode("utf-8")

    def _too_big(self, url: str, what: str) -> CurlTransportError:
        return CurlTransportError(
            f"response body of {url} is too large ({what}; the limit is {self.max_body_bytes} bytes, "
            "config curl_max_response_bytes)",
            "ERR_FILE_TOO_BIG",
        )
