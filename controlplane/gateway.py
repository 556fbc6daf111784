"""The gateway: one ROUTER (CURVE server, ZAP admitting only registered agent keys) that speaks the link.

The authenticated key (ZAP User-Id) is the agent's identity; an agent id in a payload is only data. Sends
never block (ROUTER_MANDATORY + DONTWAIT: an unknown or congested peer loses that frame, the agent's own
buffer and liveness rules recover). Events are stored before they are acked, so an ACK means "on disk".
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import uuid
from typing import Any

import zmq
import zmq.asyncio
import zmq.auth.asyncio

from agent.control import codec, curve
from agent.control.codec import Frame

from .store import Store

log = logging.getLogger(__name__)

MAX_MESSAGE = curve.MAX_MESSAGE


@dataclasses.dataclass
class AgentConn:
    agent_id: str
    routing_id: bytes
    sid: str = ""
    hello: dict[str, Any] = dataclasses.field(default_factory=dict)
    last_seen: float = 0.0  # monotonic
    health: dict[str, Any] = dataclasses.field(default_factory=dict)
    state: str = "online"  # online, suspect, offline
    welcomed: bool = False
    cfg: dict[str, Any] | None = None  # desired {version, config}


class _KeyCheck:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def callback(self, domain: str, key: bytes) -> bool:
        return key.decode("ascii", "replace") in self.gateway.keys


class Gateway:
    def __init__(
        self,
        store: Store,
        bind: str,
        public_key: bytes,
        secret_key: bytes,
        *,
        heartbeat_s: float = 5.0,
        liveness: int = 3,
        offline_s: float = 60.0,
        credit: int = 1000,
        jwt_public_key: str = "",
    ) -> None:
        self.store = store
        self.bind = bind
        self.public_key = public_key
        self.secret_key = secret_key
        self.heartbeat_s = heartbeat_s
        self.liveness = liveness
        self.offline_s = offline_s
        self.credit = credit
        # Sent in every WELCOME: the key that verifies session tokens, and each agent's session ("" = none).
        self.jwt_public_key = jwt_public_key
        self.sessions: dict[str, str] = {}
        self.keys: dict[str, str] = {}  # Z85 public key → agent id
        self.agents: dict[str, AgentConn] = {}
        self._waiters: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._ctx = zmq.asyncio.Context()
        self._auth: zmq.auth.asyncio.AsyncioAuthenticator | None = None
        self._sock: zmq.asyncio.Socket | None = None
        self._raw: zmq.Socket[bytes] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.refused_version = 0
        self.endpoint = ""

    async def start(self) -> None:
        self.keys = await self.store.call(self.store.keys)
        self.sessions = {s["agent_id"]: s["id"] for s in await self.store.call(self.store.sessions)}
        auth = zmq.auth.asyncio.AsyncioAuthenticator(self._ctx)
        auth.start()
        auth.configure_curve_callback(domain="*", credentials_provider=_KeyCheck(self))
        self._auth = auth
        sock = self._ctx.socket(zmq.ROUTER)
        curve.configure(sock, public=self.public_key, secret=self.secret_key, sndhwm=1000)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.setsockopt(zmq.HEARTBEAT_IVL, int(self.heartbeat_s * 1000))
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, int(self.heartbeat_s * self.liveness * 1000))
        sock.bind(self.bind)
        self.endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self._sock = sock
        self._raw = zmq.Socket.shadow(sock.underlying)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._serve(), name="cp:gateway"),
            loop.create_task(self._liveness(), name="cp:liveness"),
        ]

    async def register(self, agent_id: str, public_key: str) -> None:
        await self.store.call(self.store.register, agent_id, public_key)
        self.keys = await self.store.call(self.store.keys)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._raw = None
        if self._sock is not None:
            self._sock.close(linger=0)
        if self._auth is not None:
            self._auth.stop()
        self._ctx.term()

    # ---- sending ------------------------------------------------------------------------------------------

    def send(self, conn: AgentConn, frame: Frame) -> bool:
        if self._raw is None:
            return False
        try:
            self._raw.send_multipart([conn.routing_id, *codec.encode(frame)], flags=zmq.DONTWAIT)
        except zmq.Again:
            return False  # congested: the agent's buffer and liveness recover
        except zmq.ZMQError as exc:
            if exc.errno == zmq.EHOSTUNREACH:
                return False  # gone (ROUTER_MANDATORY)
            raise
        return True

    # ---- receiving ----------------------------------------------------------------------------------------

    async def _serve(self) -> None:
        assert self._sock is not None
        while True:
            try:
                frames = await self._sock.recv_multipart(copy=False)
                await self._handle(frames)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("gateway: a message failed")

    async def _handle(self, frames: list[zmq.Frame]) -> None:
        routing_id = bytes(frames[0].bytes)
        user = frames[1].get("User-Id") if len(frames) > 1 else ""
        agent_id = self.keys.get(str(user))
        if agent_id is None:
            return  # ZAP admitted only registered keys; one unregistered since is ignored
        try:
            frame = codec.decode([f.bytes for f in frames[1:]])
        except codec.VersionMismatch:
            self.refused_version += 1
            tmp = AgentConn(agent_id, routing_id)
            self.send(tmp, Frame(codec.DISCONNECT, {"reason": "version", "version": codec.VERSION.decode()}))
            return
        except codec.CodecError:
            return
        conn = self.agents.get(agent_id)
        now = time.monotonic()
        if frame.kind == codec.HELLO:
            conn = await self._hello(agent_id, routing_id, frame.header, now)
            return
        if conn is None or conn.routing_id != routing_id or not conn.welcomed:
            # Not (or no longer) this agent's current connection: ask it to say HELLO again.
            self.send(AgentConn(agent_id, routing_id), Frame(codec.DISCONNECT, {"reason": "hello first"}))
            return
        conn.last_seen = now
        conn.state = "online"
        if frame.kind == codec.EVT:
            events = frame.events()
            ack, _ = await self.store.call(self.store.store_events, agent_id, conn.sid, events)
            self.send(conn, Frame(codec.ACK, {"ack_through": ack, "credit": self.credit}))
            for e in events:
                data = e.get("data")
                if e.get("kind") == "command.result" and isinstance(data, dict):
                    waiter = self._waiters.get(str(data.get("cmd_id")))
                    if waiter is not None and not waiter.done():
                        waiter.set_result(data)
        elif frame.kind == codec.HB:
            conn.health = frame.header
            await self.store.call(self.store.health, agent_id, frame.header)
            self.send(conn, Frame(codec.HB, {}))
        elif frame.kind == codec.BYE:
            conn.state = "offline"
        # DISCONNECT from the agent and unknown kinds: nothing to do.

    async def _hello(self, agent_id: str, routing_id: bytes, header: dict[str, Any], now: float) -> AgentConn:
        sid = str(header.get("sid", ""))
        ack = await self.store.call(self.store.hello, agent_id, sid, header)
        old = self.agents.get(agent_id)
        conn = AgentConn(agent_id, routing_id, sid=sid, hello=header, last_seen=now, welcomed=True)
        if old is not None:
            conn.cfg = old.cfg
        self.agents[agent_id] = conn
        welcome: dict[str, Any] = {
            "heartbeat_s": self.heartbeat_s,
            "liveness": self.liveness,
            "ack_through": ack,
            "credit": self.credit,
            "session_id": self.sessions.get(agent_id, ""),
        }
        if self.jwt_public_key:
            welcome["jwt_public_key"] = self.jwt_public_key
        if conn.cfg is not None:
            welcome["config"] = conn.cfg
        self.send(conn, Frame(codec.WELCOME, welcome))
        log.info("agent %s connected (sid %s, ack_through %s)", agent_id, sid, ack)
        return conn

    async def _liveness(self) -> None:
        while True:
            await asyncio.sleep(min(self.heartbeat_s / 2, 1.0))
            now = time.monotonic()
            for conn in self.agents.values():
                quiet = now - conn.last_seen
                if conn.state == "offline":
                    continue
                if quiet >= self.offline_s:
                    conn.state = "offline"
                elif quiet >= self.liveness * self.heartbeat_s:
                    conn.state = "suspect"

    # ---- commands and config ----

    def online(self, agent_id: str) -> AgentConn | None:
        conn = self.agents.get(agent_id)
        return conn if conn is not None and conn.state != "offline" else None

    async def command(
        self,
        agent_id: str,
        name: str,
        args: dict[str, Any],
        *,
        timeout: float = 30.0,
        cmd_id: str | None = None,
        retry_s: float = 2.0,
    ) -> dict[str, Any]:
        """Send a command and wait for its stored result; resent with the same cmd_id until it comes."""
        cmd_id = cmd_id or uuid.uuid4().hex
        deadline = time.time() + timeout
        await self.store.call(self.store.add_command, cmd_id, agent_id, name, args, deadline)
        existing = await self.store.call(self.store.result, cmd_id)
        if existing is not None:
            return existing
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters[cmd_id] = waiter
        try:
            while True:
                conn = self.agents.get(agent_id)
                if conn is not None:
                    header = {"cmd_id": cmd_id, "name": name, "args": args, "deadline": deadline}
                    if self.send(conn, Frame(codec.CMD, header)):
                        await self.store.call(self.store.command_sent, cmd_id)
                left = deadline - time.time()
                if left <= 0:
                    raise TimeoutError(f"command {name} ({cmd_id}) got no result in {timeout} s")
                with contextlib.suppress(TimeoutError):
                    return await asyncio.wait_for(asyncio.shield(waiter), min(retry_s, left))
        finally:
            self._waiters.pop(cmd_id, None)

    def configure(self, agent_id: str, version: int, config: dict[str, Any]) -> None:
        """Desired telemetry config (state): sent now and in every WELCOME."""
        conn = self.agents.get(agent_id)
        if conn is None:
            return
        conn.cfg = {"version": version, "config": config}
        self.send(conn, Frame(codec.CFG, conn.cfg))
