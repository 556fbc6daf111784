"""The public session API over HTTP (the seed's shapes), with a bearer API key.

`POST /browsers` hands out an idle, connected agent as a session; `GET /browsers[/{id}]`, `PATCH` (telemetry
config → CFG over the link), `DELETE` (release). Every other `/browsers/{id}/<route>` is forwarded to the
agent's HTTP (bodies and answers streamed, so JSON, binary, multipart and SSE all pass; websockets are
relayed frame by frame), with a fresh session token as `Authorization: Bearer`. `/browsers/{id}/telemetry/
events` is served from the stored events. Each Browser carries `base_url` (the agent) and a `cdp_ws_url`
whose `jwt` (EdDSA, short-lived, bound to the session) lets the SDK call the agent directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hmac
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.jwt import session_token

from .gateway import Gateway
from .store import Store

log = logging.getLogger(__name__)

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "authorization",
    }
)


def error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"code": code, "message": message}, status=status)


class API:
    def __init__(
        self,
        gateway: Gateway,
        store: Store,
        api_key: str,
        signing_key: Ed25519PrivateKey,
        *,
        token_ttl_s: float = 900.0,
    ) -> None:
        self.gateway = gateway
        self.store = store
        self.api_key = api_key
        self.signing_key = signing_key
        self.token_ttl_s = token_ttl_s
        self._http: aiohttp.ClientSession | None = None
        self._lock = asyncio.Lock()  # one session per agent: creations are serialised

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth], client_max_size=64 * 1024 * 1024)
        app.router.add_post("/browsers", self.create)
        app.router.add_get("/browsers", self.list)
        app.router.add_get("/browsers/{id}", self.retrieve)
        app.router.add_patch("/browsers/{id}", self.update)
        app.router.add_delete("/browsers/{id}", self.delete)
        app.router.add_get("/browsers/{id}/telemetry/events", self.telemetry_events)
        app.router.add_route("*", "/browsers/{id}/{tail:.*}", self.forward)
        app.cleanup_ctx.append(self._client)
        return app

    async def _client(self, app: web.Application) -> AsyncIterator[None]:
        self._http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10), auto_decompress=False
        )
        yield
        await self._http.close()

    @web.middleware
    async def _auth(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        given = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        if not given or not hmac.compare_digest(given.encode(), self.api_key.encode()):
            return error(401, "unauthorized", "a valid API key is required (Authorization: Bearer)")
        return await handler(request)

    # ---- sessions -------------------------------------------------------------------------------------

    def token(self, session: dict[str, Any]) -> str:
        return session_token(self.signing_key, session["id"], session["agent_id"], self.token_ttl_s)

    def browser(self, session: dict[str, Any]) -> dict[str, Any]:
        conn = self.gateway.agents.get(session["agent_id"])
        hello = conn.hello if conn is not None else {}
        token = self.token(session)
        cdp = str(hello.get("cdp_url", ""))
        created = datetime.datetime.fromtimestamp(session["created"], datetime.UTC).isoformat()
        out: dict[str, Any] = {
            "session_id": session["id"],
            "base_url": hello.get("base_url"),
            "cdp_ws_url": f"{cdp}{'&' if '?' in cdp else '?'}{urlencode({'jwt': token})}",
            "webdriver_ws_url": "",
            "created_at": created,
            "headless": False,
            "stealth": False,
            "timeout_seconds": 0,
            "region": "us-east",
            "memory": {},
            "telemetry": session["telemetry"],
            "agent": {"id": session["agent_id"], "state": conn.state if conn is not None else "offline"},
        }
        if session["deleted"] is not None:
            out["deleted_at"] = datetime.datetime.fromtimestamp(session["deleted"], datetime.UTC).isoformat()
        return out

    async def _session(self, request: web.Request) -> dict[str, Any] | None:
        session = await self.store.call(self.store.session, request.match_info["id"])
        return session if session is not None and session["deleted"] is None else None

    async def _bind(self, agent_id: str, session_id: str) -> None:
        """Tell the agent which session its tokens must name ("" = none)."""
        self.gateway.sessions[agent_id] = session_id
        try:
            await self.gateway.command(agent_id, "agent.session", {"session_id": session_id}, timeout=10)
        except TimeoutError:
            log.warning("agent %s did not confirm its session binding", agent_id)

    async def create(self, request: web.Request) -> web.Response:
        async with self._lock:
            busy = await self.store.call(self.store.busy_agents)
            idle = [
                conn.agent_id
                for conn in self.gateway.agents.values()
                if conn.welcomed and conn.state == "online" and conn.agent_id not in busy
            ]
            if not idle:
                return error(503, "no_capacity", "no idle agent is connected")
            agent_id = idle[0]
            session_id = uuid.uuid4().hex[:20]
            await self.store.call(self.store.create_session, session_id, agent_id, {})
        await self._bind(agent_id, session_id)
        session = await self.store.call(self.store.session, session_id)
        assert session is not None
        return web.json_response(self.browser(session))

    async def list(self, request: web.Request) -> web.Response:
        sessions = await self.store.call(self.store.sessions)
        return web.json_response([self.browser(s) for s in sessions], headers={"X-Has-More": "false"})

    async def retrieve(self, request: web.Request) -> web.Response:
        session = await self._session(request)
        if session is None:
            return error(404, "not_found", "no such browser session")
        return web.json_response(self.browser(session))

    async def update(self, request: web.Request) -> web.Response:
        session = await self._session(request)
        if session is None:
            return error(404, "not_found", "no such browser session")
        try:
            body = await request.json() if request.can_read_body else {}
        except json.JSONDecodeError:
            return error(400, "bad_request", "the body is not JSON")
        if not isinstance(body, dict):
            return error(400, "bad_request", "the body must be an object")
        telemetry = body.get("telemetry")
        if telemetry is not None:
            if not isinstance(telemetry, dict):
                return error(400, "bad_request", "telemetry must be an object")
            version = await self.store.call(self.store.set_telemetry, session["id"], telemetry)
            self.gateway.configure(session["agent_id"], version, telemetry)
        fresh = await self.store.call(self.store.session, session["id"])
        assert fresh is not None
        return web.json_response(self.browser(fresh))

    async def delete(self, request: web.Request) -> web.Response:
        session = await self._session(request)
        if session is None:
            return error(404, "not_found", "no such browser session")
        await self.store.call(self.store.delete_session, session["id"])
        await self._bind(session["agent_id"], "")
        return web.Response(status=204)

    async def telemetry_events(self, request: web.Request) -> web.Response:
        session = await self._session(request)
        if session is None:
            return error(404, "not_found", "no such browser session")
        try:
            limit = max(1, min(int(request.query.get("limit", "20")), 1000))
            offset = int(request.query.get("offset", "0"))
        except ValueError:
            return error(400, "bad_request", "limit and offset are integers")
        rows = await self.store.call(self.store.telemetry_page, session["agent_id"], offset, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        headers = {"X-Has-More": "true" if more else "false"}
        if more:
            headers["X-Next-Offset"] = str(rows[-1]["cursor"])
        items = [{"seq": r["seq"], "event": r["data"]} for r in rows]
        return web.json_response(items, headers=headers)

    # ---- forwarding -----------------------------------------------------------------------------------

    async def forward(self, request: web.Request) -> web.StreamResponse:
        session = await self._session(request)
        if session is None:
            return error(404, "not_found", "no such browser session")
        conn = self.gateway.agents.get(session["agent_id"])
        base = str(conn.hello.get("base_url", "")) if conn is not None else ""
        if not base:
            return error(503, "unavailable", "the session's agent is not connected")
        query = [(k, v) for k, v in request.query.items() if k != "jwt"]
        url = f"{base.rstrip('/')}/{request.match_info['tail']}"
        if query:
            url += "?" + urlencode(query)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["Authorization"] = f"Bearer {self.token(session)}"
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._websocket(request, url, headers)
        assert self._http is not None

        async def body() -> AsyncIterator[bytes]:
            async for chunk in request.content.iter_any():
                yield chunk

        data = body() if request.body_exists else None
        try:
            async with self._http.request(
                request.method, url, headers=headers, data=data, allow_redirects=False
            ) as upstream:
                response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
                for name, value in upstream.headers.items():
                    if name.lower() not in HOP_BY_HOP:
                        response.headers.add(name, value)
                await response.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)  # per chunk: SSE events pass as they come
                await response.write_eof()
                return response
        except aiohttp.ClientConnectionError as exc:
            return error(502, "bad_gateway", f"the agent did not answer: {exc}")

    async def _websocket(self, request: web.Request, url: str, headers: dict[str, str]) -> web.StreamResponse:
        assert self._http is not None
        ws_headers = {"Authorization": headers["Authorization"]}
        protocols = [
            p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()
        ]
        async with self._http.ws_connect(url, headers=ws_headers, protocols=protocols, max_msg_size=0) as up:
            down = web.WebSocketResponse(protocols=protocols, max_msg_size=0)
            await down.prepare(request)

            async def pump(
                src: aiohttp.ClientWebSocketResponse | web.WebSocketResponse,
                dst: aiohttp.ClientWebSocketResponse | web.WebSocketResponse,
            ) -> None:
                async for msg in src:
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        await dst.send_str(msg.data)
                    elif msg.type == aiohttp.WSMsgType.BINARY:
                        await dst.send_bytes(msg.data)
                    else:
                        break
                await dst.close()

            tasks = [asyncio.ensure_future(pump(up, down)), asyncio.ensure_future(pump(down, up))]
            try:
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in tasks:
                    task.cancel()
                with contextlib.suppress(Exception):
                    await asyncio.gather(*tasks, return_exceptions=True)
            return down
