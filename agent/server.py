"""The HTTP server of the API (and of the CDP proxy): aiohttp's, plus the read timeouts it lacks.

aiohttp (3.14) closes a kept-alive connection that stays idle (`keepalive_timeout`: http_idle_timeout_s),
but a client that sends half a request head, or a body that stops half-way, holds its connection (and a
handler) for as long as it likes. `GuardedHandler` bounds both:
- head: a connection must deliver a complete request head within `header_s` of opening, or of the first
  byte of its next request when kept alive; else 408 and close (a connection that sent nothing at all is
  just closed: nothing was asked, so nothing is answered).
- body: while a handler runs and its request body is incomplete, the socket may go at most `body_s` without
  data while the server is ready to read (a handler that reads slowly pauses the socket: that is not the
  client's fault and does not count); else 408 if no response byte went out yet, and close. Handlers see
  exactly what a client disconnect looks like (cancellation, a reset payload), a path they already handle.
Upgraded connections (websockets: process attach, the CDP proxy) are never timed, and SSE streams have no
request body, so long-lived responses are never cut.

Every use of aiohttp internals is in this module (tests/agent/test_server.py fails loudly if they change).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import resource
import signal
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_server import Server

from .config import Config

log = logging.getLogger(__name__)

# aiohttp's request-body buffer (default 64 KiB): bigger means fewer socket pause/resume cycles on uploads.
READ_BUFSIZE = 256 * 1024
# After a timeout, how long a peer that does not read gets to take the 408 before the socket is cut.
_CLOSE_GRACE_S = 1.0


@dataclasses.dataclass(frozen=True)
class HttpTimeouts:
    header_s: float = 10.0
    body_s: float = 60.0
    idle_s: float = 60.0

    @classmethod
    def from_config(cls, config: Config) -> HttpTimeouts:
        return cls(config.http_header_timeout_s, config.http_body_timeout_s, config.http_idle_timeout_s)

    @property
    def check_every_s(self) -> float | None:
        """How often a connection checks its clocks: a timeout fires within a quarter of itself late."""
        bounds = [t for t in (self.header_s, self.body_s) if t > 0]
        return max(0.05, min(bounds) / 4) if bounds else None


def timeout_response(message: str) -> bytes:
    """A complete 408 with the spec's Error body (written straight to the socket: no handler is involved)."""
    body = json.dumps({"code": "request_timeout", "message": message}).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "error"


class GuardedHandler(RequestHandler):
    """aiohttp's connection protocol with a head and a body read timeout (see the module docstring)."""

    def __init__(self, manager: Server, *, timeouts: HttpTimeouts, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._timeouts = timeouts
        self._check_handle: asyncio.TimerHandle | None = None
        self._head_since: float | None = None  # when the request head now awaited began to be due
        self._head_bytes = False  # some of that head arrived (a 408 is owed rather than a silent close)
        self._last_read = 0.0
        # The last request's body: bytes that still belong to it (aiohttp reads and drops what a handler
        # left unread) are not the start of a next request head.
        self._previous_body: StreamReader | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        now = self._loop.time()
        self._head_since = self._last_read = now
        self._head_clock_takes_over()
        self._schedule()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._check_handle is not None:
            self._check_handle.cancel()
            self._check_handle = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        between_requests = (
            self._current_request is None
            and not self._messages
            and (self._previous_body is None or self._previous_body.is_eof())
        )
        heads = self._request_count
        super().data_received(data)
        if self._request_count != heads:  # a complete head (or a bad one, answered 400) was parsed
            self._head_since, self._head_bytes = None, False
        elif data and between_requests and not self._upgraded:
            if self._head_since is None:
                self._head_since = self._loop.time()
                self._head_clock_takes_over()
            self._head_bytes = True
        if data:
            self._last_read = self._loop.time()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        # What never reached a handler (a 64 KB header, a malformed request line, bad bytes in the head)
        # aiohttp answers in text/plain; every 4xx/5xx of the API is the spec's Error body.
        super().handle_error(request, status, exc, message)  # logs; raises if a response already began
        client = 400 <= status < 500
        reason = getattr(exc, "message", None) if client else None
        # aiohttp quotes the offending bytes (`...: b'...'`): a header's value is not echoed back.
        text = " ".join(str(reason).split(" b'")[0].split())[:200] if reason else _phrase(status)
        response = web.json_response(
            {"code": "bad_request" if client else "internal_error", "message": text}, status=status
        )
        response.force_close()
        return response

    async def finish_response(
        self, request: BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        self._previous_body = request.content
        result = await super().finish_response(request, resp, start_time)
        # Kept alive from here: idle until the next request's first byte (aiohttp's keepalive_timeout).
        self._head_since, self._head_bytes = None, False
        return result

    def _head_clock_takes_over(self) -> None:
        # While a head is due, the head timeout governs: aiohttp's keep-alive timer would close the
        # connection silently (or at the same moment), and the client would never see its 408.
        if self._timeouts.header_s > 0 and self._keepalive_handle is not None:
            self._keepalive_handle.cancel()
            self._keepalive_handle = None

    def _schedule(self) -> None:
        every = self._timeouts.check_every_s
        if every is not None:
            self._check_handle = self._loop.call_later(every, self._check)

    def _check(self) -> None:
        self._check_handle = None
        transport = self.transport
        if transport is None or self._force_close or self._upgraded or self._payload_parser is not None:
            return  # closed, or a websocket: long-lived by design
        now, limits = self._loop.time(), self._timeouts
        request = self._current_request
        if request is None:
            if (
                limits.header_s > 0
                and self._head_since is not None
                and not self._messages
                and now - self._head_since >= limits.header_s
            ):
                message = f"no complete request head within {limits.header_s:g} s"
                self._time_out(transport, message, respond=self._head_bytes)
                return
        elif limits.body_s > 0 and not request.content.is_eof():
            if not transport.is_reading():
                # Paused: the handler has not taken what came (or reads the socket itself, the fs splice
                # path, with the same bound): the wait is ours, not the client's.
                self._last_read = now
            elif now - self._last_read >= limits.body_s:
                message = f"the request body stalled: nothing came for {limits.body_s:g} s"
                self._time_out(transport, message, respond=request.writer.output_size == 0)
                return
        self._schedule()

    def _time_out(self, transport: asyncio.Transport, message: str, *, respond: bool) -> None:
        log.info("closing an HTTP connection from %s: %s", self.peername, message)
        if respond:
            transport.write(timeout_response(message))
        # Flushes the 408, then connection_lost: the handler is cancelled as on a client disconnect.
        self.force_close()
        self._loop.call_later(_CLOSE_GRACE_S, transport.abort)  # a peer that does not read cannot hold it


class GuardedServer(Server):
    """The Server aiohttp builds for an app, making GuardedHandlers instead of RequestHandlers."""

    def __init__(self, plain: Server, timeouts: HttpTimeouts) -> None:
        super().__init__(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=plain._loop,
            **plain._kwargs,
        )
        self.timeouts = timeouts

    def __call__(self) -> RequestHandler:
        return GuardedHandler(self, loop=self._loop, timeouts=self.timeouts, **self._kwargs)


class GuardedAppRunner(web.AppRunner):
    """web.AppRunner whose connections have the read timeouts (keepalive_timeout is the idle one)."""

    def __init__(self, app: web.Application, *, timeouts: HttpTimeouts, **kwargs: Any) -> None:
        super().__init__(app, keepalive_timeout=timeouts.idle_s, **kwargs)
        self.timeouts = timeouts

    async def _make_server(self) -> Server:
        return GuardedServer(await super()._make_server(), self.timeouts)


def raise_fd_limit() -> None:
    """Use the hard limit on open files: a thousand idle clients must not make accept() fail for others."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 65536)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def _serve(app: web.Application, config: Config, access_log: logging.Logger | None) -> None:
    runner = GuardedAppRunner(
        app,
        timeouts=HttpTimeouts.from_config(config),
        access_log=access_log,
        # A client that goes away cancels its handler: a long drag or batch stops and lets go of the
        # keys and buttons it holds (see computer.actions.Runner).
        handler_cancellation=True,
        read_bufsize=READ_BUFSIZE,
        shutdown_timeout=3.0,  # in-flight requests get this long; supervisord restarts must be quick
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, config.host, config.port, reuse_address=True).start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()


def run(app: web.Application, config: Config, access_log: logging.Logger | None = None) -> None:
    """Serve `app` on config.host:port until SIGTERM or SIGINT (what web.run_app does, with our runner)."""
    raise_fd_limit()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    main = loop.create_task(_serve(app, config, access_log), name="serve")
    try:
        loop.run_until_complete(main)
    except KeyboardInterrupt:
        pass
    finally:
        if not main.done():
            main.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                loop.run_until_complete(main)
        leftovers = asyncio.all_tasks(loop)
        for task in leftovers:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        # Unlike asyncio.run, do not wait for executor threads (a blocked one must not hold the exit).
        loop.close()
