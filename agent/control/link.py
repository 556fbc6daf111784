"""The thin pyzmq shell around `protocol.AgentProtocol`: one DEALER, CURVE both ways, non-blocking sends.

All decisions are the protocol's; this module only moves frames, keeps the clock and turns `Connect` /
`Recycle` into sockets. A send that would block (IMMEDIATE=1 and no connection yet, or SNDHWM reached) waits
in a small queue retried every loop turn; if that queue fills, the socket is recycled (the protocol's buffer
holds the events, not libzmq).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import zmq
import zmq.asyncio

from . import codec, curve
from .protocol import (
    Action,
    AgentProtocol,
    ApplyConfig,
    Command,
    Connect,
    Recycle,
    Run,
    Send,
    Stopped,
    Welcomed,
)

log = logging.getLogger(__name__)

MAX_MESSAGE = curve.MAX_MESSAGE
# Frames waiting for a socket that would block; more than this and the socket is recycled.
MAX_PENDING = 256


class CurveKeys:
    def __init__(self, public: bytes, secret: bytes, server: bytes) -> None:
        self.public = public
        self.secret = secret
        self.server = server


def load_keys(key_file: str, server_key: str) -> CurveKeys:
    """The agent's keypair from its certificate file and the CP's public key (start-up errors name both)."""
    import zmq.auth

    if not key_file or not server_key:
        raise RuntimeError(
            "the control link needs AGENT_CONTROL_KEY_FILE and AGENT_CONTROL_SERVER_KEY (CURVE)"
        )
    public, secret = zmq.auth.load_certificate(key_file)
    if secret is None:
        raise RuntimeError(f"{key_file}: no secret-key in the certificate")
    if len(server_key) != 40:
        raise RuntimeError("AGENT_CONTROL_SERVER_KEY must be a Z85 CURVE public key (40 characters)")
    return CurveKeys(public, secret, server_key.encode())


class Link:
    def __init__(
        self,
        url: str,
        keys: CurveKeys,
        protocol: AgentProtocol,
        run_command: Callable[[Command], None],
        apply_config: Callable[[ApplyConfig], None],
        *,
        on_welcome: Callable[[Welcomed], None] = lambda welcomed: None,
        tick_s: float = 0.1,
    ) -> None:
        self.url = url
        self.keys = keys
        self.protocol = protocol
        self._run_command = run_command
        self._apply_config = apply_config
        self._on_welcome = on_welcome
        self.tick_s = tick_s
        self._ctx = zmq.asyncio.Context()
        self._sock: zmq.asyncio.Socket | None = None
        # A plain (sync) view of the same libzmq socket: DONTWAIT sends and receives that never wait.
        self._raw: zmq.Socket[bytes] | None = None
        self._pending: collections.deque[list[bytes]] = collections.deque()
        self.stopped = asyncio.Event()
        self.recycles = 0
        self.frames_in = 0
        self.frames_out = 0

    # ---- local inputs (called from the agent's coroutines; all on the one loop) ------------------------

    def emit(self, kind: str, data: Any) -> None:
        self.apply(self.protocol.emit(kind, data, time.monotonic(), time.time()))

    def command_done(self, cmd_id: str, result: dict[str, Any]) -> None:
        self.apply(self.protocol.command_done(cmd_id, result, time.monotonic(), time.time()))

    def drain(self) -> None:
        self.apply(self.protocol.drain(time.monotonic()))

    # ---- the shell ----

    def apply(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Send):
                self._send(codec.encode(action.frame))
            elif isinstance(action, Connect):
                self._open()
            elif isinstance(action, Recycle):
                log.info("control link: new socket (%s)", action.reason)
                self.recycles += 1
                self._close()
            elif isinstance(action, Run):
                self._run_command(action.command)
            elif isinstance(action, ApplyConfig):
                self._apply_config(action)
            elif isinstance(action, Welcomed):
                self._on_welcome(action)
            elif isinstance(action, Stopped):
                log.info("control link stopped: %s", action.reason)
                self._flush_pending()
                self._close()
                self.stopped.set()

    def _open(self) -> None:
        self._close()
        sock = self._ctx.socket(zmq.DEALER)
        curve.configure(
            sock, public=self.keys.public, secret=self.keys.secret, server_key=self.keys.server, sndhwm=100
        )
        sock.setsockopt(zmq.IMMEDIATE, 1)
        sock.setsockopt(zmq.RCVHWM, 1000)
        sock.connect(self.url)
        self._sock = sock
        self._raw = zmq.Socket.shadow(sock.underlying)

    def _close(self) -> None:
        self._pending.clear()
        self._raw = None
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None

    def _send(self, parts: list[bytes]) -> None:
        if self._sock is None:
            return
        if self._pending:
            self._queue(parts)
            return
        if not self._try_send(parts):
            self._queue(parts)

    def _try_send(self, parts: list[bytes]) -> bool:
        assert self._raw is not None
        try:
            self._raw.send_multipart(parts, flags=zmq.DONTWAIT)
        except zmq.Again:
            return False
        self.frames_out += 1
        return True

    def _queue(self, parts: list[bytes]) -> None:
        if len(self._pending) >= MAX_PENDING:
            self.apply(self.protocol.congested(time.monotonic()))
            return
        self._pending.append(parts)

    def _flush_pending(self) -> None:
        while self._pending and self._raw is not None:
            if not self._try_send(self._pending[0]):
                return
            self._pending.popleft()

    async def run(self) -> None:
        self.apply(self.protocol.start(time.monotonic()))
        while not self.stopped.is_set():
            sock = self._sock
            if sock is None:
                await asyncio.sleep(self.tick_s)
            else:
                self._flush_pending()
                events = await sock.poll(timeout=int(self.tick_s * 1000))  # POLLIN
                if events and sock is self._sock:
                    self._receive(sock)
            self.apply(self.protocol.tick(time.monotonic()))

    def _receive(self, sock: zmq.asyncio.Socket) -> None:
        for _ in range(1000):  # bounded: the timers get their turn
            if sock is not self._sock or self._raw is None:
                return
            try:
                parts = self._raw.recv_multipart(flags=zmq.DONTWAIT)
            except zmq.Again:
                return
            self.frames_in += 1
            now = time.monotonic()
            try:
                frame = codec.decode(parts)
            except codec.CodecError as exc:
                self.apply(self.protocol.bad_frame(exc, now))
                continue
            self.apply(self.protocol.receive(frame, now, time.time()))

    async def close(self) -> None:
        self._close()
        self._ctx.term()


async def run_guarded(coro: Callable[[], Awaitable[None]], name: str) -> None:
    """Keep a link task alive across an unexpected bug (logged), so a bad frame never ends reporting."""
    while True:
        try:
            await coro()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s failed; restarting it in 1 s", name)
            await asyncio.sleep(1.0)
