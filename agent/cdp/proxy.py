"""The stable CDP address (config.cdp_port, 9222): Chromium's DevTools HTTP and websocket endpoints, proxied.

Chromium itself listens on 127.0.0.1:chromium_cdp_port and gets a new browser id every time it starts. The
proxy keeps one address for clients across restarts:
- `/json/version`, `/json/list` (`/json`), `/json/new`, `/json/activate/…`, `/json/close/…`, `/json/protocol`
  are forwarded; websocket and DevTools-frontend URLs in the answers point at the proxy (built from the
  request's Host header, so they work from wherever the client stands).
- `/devtools/browser/<any id>` (and `/`, as the control plane's `cdp_ws_url` has it) is the current browser
  endpoint, whatever id the client remembers; page and
  other `/devtools/<kind>/<id>` endpoints are forwarded as they are. Frames of any size pass both ways.
- While Chromium is down (restarting), requests wait for it for a few seconds instead of failing at once.
With a session-token check (`agent/auth.py`), every request and websocket upgrade needs a valid token
(`?jwt=` or `Authorization: Bearer`) before anything reaches Chromium: 401 otherwise. The token is taken
out of the query forwarded to Chromium, and put into the websocket URLs of `/json` answers when it came
in the query (so `connect_over_cdp("http://…?jwt=…")` works as `ws://…?jwt=…` does).
It counts live websocket connections and the time of the last activity (the session inactivity timeout uses
`idle_s()`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import WSMsgType, web

from .. import guard
from ..auth import SessionAuth, Unauthorized, token_of
from ..config import Config
from ..errors import error_response
from ..server import GuardedAppRunner, HttpTimeouts
from .json_api import ChromiumJson

log = logging.getLogger(__name__)

_BROWSER_PATH = re.compile(r"^(/|/devtools/browser(/[^/]*)?)$")
_REWRITTEN = ("webSocketDebuggerUrl", "devtoolsFrontendUrl", "devtoolsFrontendUrlCompat")
_BLANK_URLS = frozenset({"", "about:blank"})
NEW_TAB_HOOK_S = 5.0  # the longest a new-tab hook may hold the client's command
_HOP_HEADERS = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "upgrade", "host", "content-length", "content-encoding"}
)


def _without_token(request: web.Request) -> str:
    """The request's path and query without `jwt=` (Chromium never sees the token). The raw query is kept
    as it is otherwise: `/json/new?<url>` is not a key=value query."""
    raw = request.raw_path
    path, sep, query = raw.partition("?")
    if not sep or "jwt=" not in query:
        return raw
    kept = [part for part in query.split("&") if not part.startswith("jwt=")]
    return path + ("?" + "&".join(kept) if kept else "")


def opens_tab_on_url(frame: str) -> bool:
    """Whether a client's websocket frame is `Target.createTarget` with a URL (other than a blank one)."""
    if "Target.createTarget" not in frame:  # most frames: a scan, no parse
        return False
    try:
        message = json.loads(frame)
    except ValueError:
        return False
    if not isinstance(message, dict) or message.get("method") != "Target.createTarget":
        return False
    params = message.get("params")
    url = params.get("url") if isinstance(params, dict) else None
    return isinstance(url, str) and url not in _BLANK_URLS


class ChromiumUnavailable(Exception):
    pass


class CDPProxy:
    def __init__(
        self,
        host: str,
        port: int,
        chromium_port: int,
        *,
        max_message_bytes: int = 256 * 1024 * 1024,
        wait_for_chromium_s: float = 8.0,
        guard_config: guard.GuardConfig | None = None,
        http_timeouts: HttpTimeouts | None = None,
        auth: SessionAuth | None = None,
    ) -> None:
        self.auth = auth  # session tokens (None: not checked, as for a loopback-only agent without a key)
        self.host, self.port, self.chromium_port = host, port, chromium_port
        self.upstream = f"127.0.0.1:{chromium_port}"
        self.max_message_bytes = max_message_bytes
        self.wait_for_chromium_s = wait_for_chromium_s
        # Which Host names and web origins may use the proxy besides loopback clients (see agent/guard.py).
        self.guard_config: guard.GuardConfig = guard_config or Config()
        self.http_timeouts = http_timeouts or HttpTimeouts()
        self.active_connections = 0
        self.total_connections = 0
        self.http_requests = 0
        self.last_activity = time.monotonic()
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None
        self._sockets: set[web.WebSocketResponse] = set()
        # Told of each websocket client: ("connect" | "disconnect", details); telemetry listens here.
        self.listeners: list[Callable[[str, dict[str, Any]], None]] = []
        # Awaited before a client's command that opens a tab on a URL reaches Chromium (WebMCP holds that
        # tab's first document until its script is in); the client's later frames wait behind it.
        self.new_tab_hooks: list[Callable[[], Awaitable[None]]] = []

    async def _before_new_tab(self) -> None:
        for hook in list(self.new_tab_hooks):
            try:
                await asyncio.wait_for(hook(), NEW_TAB_HOOK_S)
            except Exception:
                log.exception("CDP proxy new-tab hook failed")

    def _tell(self, kind: str, details: dict[str, Any]) -> None:
        for listener in list(self.listeners):
            try:
                listener(kind, details)
            except Exception:
                log.exception("CDP proxy listener failed")

    # --- activity, for /health and the inactivity timeout ---------------------------------------------

    def touch(self) -> None:
        self.last_activity = time.monotonic()

    def idle_s(self) -> float:
        """Seconds since the last request or frame through the proxy (0 while a connection is open)."""
        if self.active_connections:
            return 0.0
        return time.monotonic() - self.last_activity

    def status(self) -> dict[str, Any]:
        return {
            "address": f"{self.host}:{self.port}",
            "connections": self.active_connections,
            "total_connections": self.total_connections,
            "http_requests": self.http_requests,
            "last_activity_s_ago": round(time.monotonic() - self.last_activity, 3),
        }

    # --- lifecycle --------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30, sock_connect=2))
        app = web.Application(client_max_size=self.max_message_bytes)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # The API's read timeouts: a half-sent request cannot hold the proxy; its websockets are never timed.
        self._runner = GuardedAppRunner(
            app,
            timeouts=self.http_timeouts,
            access_log=None,
            handler_cancellation=True,
            shutdown_timeout=1.0,
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        log.info("CDP proxy on %s:%d -> Chromium %s", self.host, self.port, self.upstream)

    async def stop(self) -> None:
        for ws in list(self._sockets):
            with contextlib.suppress(Exception):
                await ws.close(code=1001, message=b"agent shutting down")
        if self._runner is not None:
            await self._runner.cleanup()
        if self._http is not None:
            await self._http.close()

    # --- requests ---------------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        # Before anything else, websocket upgrades included: a web page (or a DNS-rebound name) gets a 403,
        # counts as no activity, and never reaches Chromium. Chromium's own port refuses such Hosts too.
        refused = guard.response_for(request, self.guard_config)
        if refused is not None:
            return refused
        if self.auth is not None:
            try:
                self.auth.check_token(token_of(request.query, request.headers))
            except Unauthorized as exc:
                return error_response(exc.status, exc.code, str(exc))
        self.touch()
        try:
            if request.headers.get("Upgrade", "").lower() == "websocket":
                return await self._websocket(request)
            self.http_requests += 1
            return await self._forward(request)
        except ChromiumUnavailable as exc:
            return error_response(503, "unavailable", str(exc))

    async def _retrying(self, what: str, attempt: Any) -> Any:
        """Run `attempt()` until Chromium answers, for up to wait_for_chromium_s (it may be restarting)."""
        deadline = time.monotonic() + self.wait_for_chromium_s
        while True:
            try:
                return await attempt()
            except (aiohttp.ClientConnectionError, TimeoutError) as exc:
                if time.monotonic() >= deadline:
                    raise ChromiumUnavailable(
                        f"Chromium's DevTools ({what}) is not answering: {exc}"
                    ) from None
                await asyncio.sleep(0.1)

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._http is not None
        http = self._http
        body = await request.read()
        path = _without_token(request)
        if request.path == "/json/new" and path.partition("?")[2] not in _BLANK_URLS:
            await self._before_new_tab()
        url = f"http://{self.upstream}{path}"
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}

        async def attempt() -> tuple[int, str, bytes]:
            async with http.request(request.method, url, data=body or None, headers=headers) as response:
                return response.status, response.headers.get("Content-Type", ""), await response.read()

        status, content_type, data = await self._retrying(request.path, attempt)
        if request.path.startswith("/json") and content_type.startswith("application/json"):
            with contextlib.suppress(ValueError, UnicodeDecodeError):
                data = json.dumps(self._rewrite(json.loads(data), request), indent=2).encode()
        out = web.Response(status=status, body=data)
        if content_type:
            out.headers["Content-Type"] = content_type
        return out

    def _rewrite(self, node: Any, request: web.Request) -> Any:
        """Point Chromium's websocket and frontend URLs at this proxy, as the client addressed it."""
        if isinstance(node, list):
            return [self._rewrite(item, request) for item in node]
        if not isinstance(node, dict):
            return node
        here = request.host or f"{self.host}:{self.port}"
        scheme = "wss" if request.scheme == "https" else "ws"
        token = request.query.get("jwt")
        out = dict(node)
        for key in _REWRITTEN:
            value = out.get(key)
            if not isinstance(value, str):
                continue
            for prefix in ("ws://", "wss://"):
                if value.startswith(prefix + self.upstream) or value.startswith(prefix + "localhost:"):
                    _, _, path = value[len(prefix) :].partition("/")
                    value = f"{scheme}://{here}/{path}"
            value = value.replace(f"ws={self.upstream}/", f"ws={here}/")
            value = value.replace(f"ws=localhost:{self.chromium_port}/", f"ws={here}/")
            if token and key == "webSocketDebuggerUrl" and "?" not in value:
                value += "?" + urlencode({"jwt": token})
            out[key] = value
        return out

    def _chromium_json(self, http: aiohttp.ClientSession) -> ChromiumJson:
        return ChromiumJson(f"http://{self.upstream}", http)

    async def _upstream_ws_url(self, path: str) -> str:
        if _BROWSER_PATH.match(path):
            # The browser id changes with every Chromium start: always use the current one.
            assert self._http is not None
            http = self._http

            data = await self._retrying("/json/version", self._chromium_json(http).version)
            current = str(data.get("webSocketDebuggerUrl", ""))
            _, _, browser_path = current.partition("/devtools/")
            return f"ws://{self.upstream}/devtools/{browser_path}"
        return f"ws://{self.upstream}{path}"

    async def _target_exists(self, target_id: str) -> bool:
        assert self._http is not None
        try:
            targets = await self._chromium_json(self._http).targets()
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return True  # cannot tell; do not claim it is missing
        return any(t.get("id") == target_id for t in targets)

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        assert self._http is not None
        http = self._http
        target = await self._upstream_ws_url(request.path)
        query = _without_token(request).partition("?")[2]
        if query:
            target += "?" + query

        async def open_upstream() -> aiohttp.ClientWebSocketResponse:
            return await http.ws_connect(
                target,
                max_msg_size=self.max_message_bytes,
                autoping=True,
                compress=0,
                timeout=aiohttp.ClientWSTimeout(ws_close=2),
            )

        try:
            upstream = await self._retrying(request.path, open_upstream)
        except aiohttp.WSServerHandshakeError as exc:
            # Chromium answers an unknown target id with a bare 500 ("No such target id").
            target_id = request.path.rstrip("/").rpartition("/")[2]
            if not await self._target_exists(target_id):
                return error_response(404, "not_found", f"no DevTools target {target_id!r}")
            return error_response(502, "bad_gateway", f"Chromium refused the websocket: {exc.status}")
        client = web.WebSocketResponse(max_msg_size=self.max_message_bytes, autoping=True, compress=False)
        try:
            await client.prepare(request)
        except BaseException:
            await upstream.close()
            raise
        self._sockets.add(client)
        self.active_connections += 1
        self.total_connections += 1
        connection_id, opened, relayed = str(self.total_connections), time.monotonic(), [0]
        self._tell("connect", {"connection_id": connection_id})
        to_chromium = asyncio.create_task(
            self._pump(client, upstream, relayed, from_client=True), name="cdp-proxy-up"
        )
        to_client = asyncio.create_task(self._pump(upstream, client, relayed), name="cdp-proxy-down")
        reason = "context_cancelled"
        try:
            await asyncio.wait({to_chromium, to_client}, return_when=asyncio.FIRST_COMPLETED)
            reason = "client_close" if to_chromium.done() else "upstream_changed"
        finally:
            if reason == "context_cancelled" and (to_chromium.done() or client.closed):
                reason = "client_close"  # the handler was cancelled because the client went away
            self._tell(
                "disconnect",
                {
                    "connection_id": connection_id,
                    "duration_ms": round((time.monotonic() - opened) * 1000, 3),
                    "message_count": relayed[0],
                    "reason": reason,
                },
            )
            for task in (to_chromium, to_client):
                task.cancel()
            await asyncio.gather(to_chromium, to_client, return_exceptions=True)
            self.active_connections -= 1
            self._sockets.discard(client)
            self.touch()
            code = upstream.close_code if upstream.closed and upstream.close_code else 1001
            if code in (1005, 1006, 1015) or not 1000 <= code < 5000:
                code = 1001  # codes that only report a state may not be sent: "going away"
            with contextlib.suppress(Exception):
                await upstream.close()
            with contextlib.suppress(Exception):
                await client.close(code=code, message=b"Chromium closed the connection")
        return client

    async def _pump(
        self,
        source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
        sink: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
        relayed: list[int] | None = None,
        *,
        from_client: bool = False,
    ) -> None:
        try:
            async for message in source:
                self.last_activity = time.monotonic()
                if relayed is not None:
                    relayed[0] += 1
                if message.type == WSMsgType.TEXT:
                    if from_client and self.new_tab_hooks and opens_tab_on_url(message.data):
                        await self._before_new_tab()
                    await sink.send_str(message.data)
                elif message.type == WSMsgType.BINARY:
                    await sink.send_bytes(message.data)
                elif message.type == WSMsgType.ERROR:
                    log.debug("CDP proxy websocket error: %s", source.exception())
                    return
        except (ConnectionError, aiohttp.ClientError, RuntimeError) as exc:
            # RuntimeError: aiohttp refuses to send on a socket that is closing.
            log.debug("CDP proxy pump ended: %s", exc)
