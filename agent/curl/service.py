"""HTTP requests through Chromium's own network stack (cookies, proxy settings, TLS fingerprint).

The request is a `fetch()` from an empty document of the URL's origin in a hidden target (`pool.py`): same
origin, so no CORS and every cookie of the site goes with it (HttpOnly, SameSite=Strict), through the
browser's proxy and TLS stack. The `Fetch` domain merges the caller's headers and body in at the Request
stage and reads status, headers and body at the Response stage, then aborts the request (nothing reaches the
page; Set-Cookie still lands in the jar). What to send when is `exchange.py`'s (no I/O); this module is the
shell that carries it out on a CDP session, with the request's timeout and the error mapping.

The first request to an origin pays an extra navigation (no network); later ones reuse the document and cost
a few milliseconds. Redirects are not followed: a 3xx comes back as it is, with its Location (as `curl`
without `-L`).
"""

from __future__ import annotations

import asyncio
import binascii
import collections
import contextlib
import dataclasses
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from ..cdp.connection import CDPConnection, CDPDisconnected, CDPError, Session
from ..errors import InternalError, Unavailable
from .errors import CurlTransportError, Dirty, target_gone, timed_out
from .exchange import FETCH_ENDED, Answer, Drain, Exchange, Send
from .models import CurlRequest, CurlResponse
from .pool import Target, TargetPool
from .urls import split_url

RAW_CHUNK = 1024 * 1024  # IO.read size of a /curl/raw body (base64 on the wire: 1.33 MiB per message)
RAW_IN_FLIGHT = 2  # IO.read commands of a /curl/raw body in flight at once


def _decoded(reply: dict[str, Any]) -> bytes:
    """An IO.read chunk (binascii straight from the ASCII str: no str → bytes copy first)."""
    data = reply.get("data", "")
    if reply.get("base64Encoded"):
        return binascii.a2b_base64(data)
    return str(data).encode("utf-8")


@dataclasses.dataclass
class _Attempt:
    generation: int | None = None  # of the browser the request's target belongs to


@dataclasses.dataclass(frozen=True)
class RawAnswer:
    status: int
    headers: dict[str, list[str]]
    body: AsyncIterator[bytes]
    has_body: bool  # False: a HEAD, 204, 304 or 3xx answer (Chromium hands over no body for those)


class _RawBody:
    """The body stream of a /curl/raw answer: read as the caller asks for it, closed in any case."""

    def __init__(self, session: Session, handle: str | None, max_bytes: int, url: str) -> None:
        self.session = session
        self.handle = handle
        self.max_bytes = max_bytes
        self.url = url
        self.broken = False  # a read failed: the target's state is unknown

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        if self.handle is None:
            return
        loop = asyncio.get_running_loop()
        params = {"handle": self.handle, "size": RAW_CHUNK}
        # Reads of one handle are answered in order: with a few in flight, Chromium reads and encodes the
        # next chunk while this one is decoded and written to the client (reads past the end answer eof).
        reads: collections.deque[asyncio.Task[dict[str, Any]]] = collections.deque()
        size = 0
        try:
            while True:
                while len(reads) < RAW_IN_FLIGHT:
                    reads.append(loop.create_task(self.session.send("IO.read", params), name="curl-raw-read"))
                try:
                    reply = await reads.popleft()
                except (CDPError, TimeoutError) as exc:
                    self.broken = True
                    message = f"reading the body of {self.url} failed: {exc}"
                    raise CurlTransportError(message, "ERR_FAILED") from None
                chunk = _decoded(reply)
                size += len(chunk)
                if size > self.max_bytes:
                    raise CurlTransportError(
                        f"response body of {self.url} is too large (the limit is {self.max_bytes} bytes, "
                        "config curl_raw_max_bytes)",
                        "ERR_FILE_TOO_BIG",
                    )
                if chunk:
                    yield chunk
                if reply.get("eof"):
                    return
        finally:
            # Reads still in flight are answered before the IO.close that follows (same session, in order).
            for read in reads:
                read.cancel()
            for read in reads:
                with contextlib.suppress(BaseException):
                    await read

    async def close(self) -> bool:
        """Close the stream; whether the target may be reused."""
        if self.handle is None:
            return not self.broken
        try:
            await self.session.send("IO.close", {"handle": self.handle}, timeout=5)
        except (CDPError, TimeoutError):
            return False
        return not self.broken


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
        self._slots = asyncio.Semaphore(max_concurrency)
        self.pool = TargetPool(cdp, idle_targets=idle_targets, connect_wait_s=connect_wait_s)

    @property
    def target_ids(self) -> set[str]:
        """Hidden targets this service owns (other CDP consumers, e.g. telemetry, may want to skip them)."""
        return self.pool.target_ids

    def status(self) -> dict[str, Any]:
        return self.pool.status()

    async def close(self) -> None:
        """Close every hidden target this service made (Chromium outlives the agent)."""
        await self.pool.close()

    async def request(self, request: CurlRequest) -> CurlResponse:
        started = time.monotonic()
        url, origin, credentials = split_url(request.url)
        exchange = Exchange(
            url=url,
            method=request.method,
            headers={**credentials, **request.headers},
            body=request.body,
            max_body_bytes=self.max_body_bytes,
            shown_url=request.url,
        )
        attempt = _Attempt()
        try:
            async with asyncio.timeout(request.timeout_ms / 1000):
                async with self._slots:
                    target, answer, fetched, paused = await self._start(exchange, origin, request, attempt)
                    # Aborting the request and giving the target back happen after the answer.
                    self.pool.give_back(target, fetched, paused)
        except Exception as exc:
            raise await self._mapped(exc, request, attempt.generation) from None
        duration_ms = round((time.monotonic() - started) * 1000)
        return CurlResponse(answer.status, answer.headers, answer.body, duration_ms)

    @contextlib.asynccontextmanager
    async def raw(self, request: CurlRequest, *, max_body_bytes: int) -> AsyncIterator[RawAnswer]:
        """Status and headers within `request.timeout_ms`, then the body as it arrives (`RawAnswer.body`),
        in chunks of at most `RAW_CHUNK` bytes; past `max_body_bytes` it stops with a CurlTransportError."""
        url, origin, credentials = split_url(request.url)
        exchange = Exchange(
            url=url,
            method=request.method,
            headers={**credentials, **request.headers},
            body=request.body,
            max_body_bytes=max_body_bytes,
            shown_url=request.url,
            stream_body=True,
            cap_name="curl_raw_max_bytes",
        )
        attempt = _Attempt()
        async with contextlib.AsyncExitStack() as stack:
            try:
                async with asyncio.timeout(request.timeout_ms / 1000):
                    # The slot is held until the body has been read (or given up).
                    await stack.enter_async_context(self._slots)
                    target, answer, fetched, paused = await self._start(exchange, origin, request, attempt)
            except Exception as exc:
                raise await self._mapped(exc, request, attempt.generation) from None
            body = _RawBody(target.session, exchange.stream, max_body_bytes, request.url)
            chunks = body.chunks()
            try:
                yield RawAnswer(answer.status, answer.headers, chunks, exchange.stream is not None)
            finally:
                # A caller that stopped half-way leaves reads in flight: they end before the stream closes.
                await chunks.aclose()
                if await body.close():
                    self.pool.give_back(target, fetched, paused)
                else:
                    self.pool.discard(target)
                    if not fetched.done():
                        fetched.cancel()
                    with contextlib.suppress(BaseException):
                        await fetched

    async def _start(
        self, exchange: Exchange, origin: str, request: CurlRequest, attempt: _Attempt
    ) -> tuple[Target, Answer, asyncio.Task[dict[str, Any]], dict[str, Any]]:
        """Lease a target and run the exchange up to its answer (the caller holds a slot)."""
        target = await self.pool.lease(origin)
        attempt.generation = target.session.generation
        try:
            if target.origin != origin:
                await self.pool.open_origin(target, origin)
            answer, fetched, paused = await self._exchange(target, exchange, request.timeout_ms)
        except BaseException:
            self.pool.discard(target)
            raise
        return target, answer, fetched, paused

    async def _mapped(self, exc: Exception, request: CurlRequest, generation: int | None) -> Exception:
        """The API error for a failure of the request (the error itself when it already is one)."""
        if isinstance(exc, TimeoutError):
            return timed_out(request.url, request.timeout_ms)
        if isinstance(exc, CDPDisconnected):
            return Unavailable(f"Chromium went away during the request ({exc.message}); retry")
        if isinstance(exc, Dirty | CDPError):
            # While Chromium shuts down its targets go first (their sessions detach, fetch() ends with no
            # answer) and the DevTools connection closes a moment later: that is a 503 to retry, not a bug.
            if target_gone(exc) or await self._browser_went_away(generation):
                return Unavailable(
                    f"Chromium closed the request's tab or went away during the request ({exc}); retry"
                )
            return InternalError(f"browser curl failed: {exc}")
        return exc

    async def _browser_went_away(self, generation: int | None, within_s: float = 2.0) -> bool:
        """Whether the browser of `generation` is gone, or goes within `within_s`."""
        deadline = time.monotonic() + within_s
        while self.cdp.connected and self.cdp.generation == generation:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def _exchange(
        self, target: Target, exchange: Exchange, timeout_ms: int
    ) -> tuple[Answer, asyncio.Task[dict[str, Any]], dict[str, Any]]:
        """The answer, the fetch() call (still to be aborted) and the paused request."""
        session = target.session
        await self.pool.prepare(target, request_stage=exchange.request_stage)
        session.drain()
        fetched = asyncio.get_running_loop().create_task(
            session.send("Runtime.evaluate", exchange.fetch_params(), timeout=timeout_ms / 1000 + 5),
            name="curl-fetch",
        )
        # The end of the fetch() call is an event like the others (in order with them).
        fetched.add_done_callback(lambda _: session.events.put_nowait({"method": FETCH_ENDED}))
        try:
            await drive(session, exchange)
        except BaseException:
            if not fetched.done():
                fetched.cancel()
            with contextlib.suppress(BaseException):
                await fetched
            raise
        if exchange.error is not None:
            error = exchange.error
            if not fetched.done():
                fetched.cancel()
            with contextlib.suppress(BaseException):
                await fetched
            raise error
        assert exchange.answer is not None and exchange.paused is not None
        return exchange.answer, fetched, exchange.paused


async def drive(session: Session, exchange: Exchange) -> None:
    """Carry out the exchange on `session` until it has finished (one command at a time)."""
    action: Send | Drain | None = None
    while not exchange.finished:
        if isinstance(action, Send):
            try:
                result = await session.send(action.method, action.params)
            except CDPError as exc:
                action = exchange.failed(exc)
            else:
                action = exchange.reply(result)
        elif isinstance(action, Drain):
            events = []
            while not session.events.empty():
                events.append(session.events.get_nowait())
            action = exchange.drained(events)
        else:
            quiet = exchange.quiet_after
            if quiet is None:
                event = await session.events.get()
            else:
                try:
                    event = await asyncio.wait_for(session.events.get(), quiet)
                except TimeoutError:
                    action = exchange.quiet()
                    continue
            action = exchange.event(event)
