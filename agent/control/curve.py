"""The one socket set-up both ends of the link share (agent DEALER, control-plane ROUTER): CURVE, a
message-size cap, no linger, TCP keepalive. Each end adds only what is its own (IMMEDIATE, ROUTER_MANDATORY,
ZMTP heartbeats)."""

from __future__ import annotations

from typing import Any

import zmq

# Larger messages are refused by libzmq itself and the peer disconnected (the protocol keeps frames below).
MAX_MESSAGE = 1024 * 1024


def configure(
    sock: zmq.Socket[Any],
    *,
    public: bytes,
    secret: bytes,
    server_key: bytes | None = None,
    sndhwm: int,
) -> None:
    """CURVE client when `server_key` is given (the agent), else CURVE server (the control plane)."""
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, sndhwm)
    sock.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE)
    sock.setsockopt(zmq.TCP_KEEPALIVE, 1)
    if server_key is None:
        sock.curve_server = True
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    if server_key is not None:
        sock.curve_serverkey = server_key
