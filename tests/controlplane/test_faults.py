"""The link's faults with real sockets (pyzmq, CURVE, ZAP), the real gateway and SQLite store, and the agent's
real protocol + shell in process (events and commands driven by the test)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio
import zmq.utils.monitor

from agent.control import codec
from agent.control.codec import Frame
from agent.control.protocol import READY, Settings
from controlplane.gateway import Gateway
from harness.controlplane import InProcessAgent, Keys, Relay, gateway, wait_for
from harness.sandboxes import free_port

FAST = Settings(heartbeat_s=0.2, backoff_base_s=0.05, backoff_max_s=0.3)
GW: dict[str, Any] = {"heartbeat_s": 0.2, "liveness": 3}


def stored(gw: Gateway, kind: str | None = None) -> list[int]:
    return sorted(e["seq"] for e in gw.store.events("agent-1", kind=kind, limit=10**6))


async def test_cp_killed_and_restarted_while_events_flow_loses_and_doubles_nothing(tmp_path: Path) -> None:
    keys, port, db = Keys(tmp_path), free_port(), tmp_path / "cp.db"
    n = 3000
    async with InProcessAgent(keys.agent_keys(), f"tcp://127.0.0.1:{port}", FAST) as agent:
        async with gateway(keys, db, port, **GW) as gw:
            await wait_for(lambda: agent.protocol.state == READY, what="welcome")
            for i in range(n // 2):
                agent.link.emit("process.exit", {"i": i})
                if i % 100 == 0:
                    await asyncio.sleep(0.01)
        # The CP is gone: events keep coming and wait in the agent's buffer.
        for i in range(n // 2, n):
            agent.link.emit("process.exit", {"i": i})
            if i % 100 == 0:
                await asyncio.sleep(0.01)
        async with gateway(keys, db, port, **GW) as gw:
            await wait_for(
                lambda: agent.protocol.buffered == 0 and agent.protocol.state == READY, 30, "all acked"
            )
            seqs = stored(gw, "process.exit")
            assert seqs == list(range(1, n + 1))  # none lost, none twice (PRIMARY KEY (agent, sid, seq))
            data = [e["data"]["i"] for e in gw.store.events("agent-1", limit=10**6)]
            assert sorted(data) == list(range(n))


async def test_agent_restart_starts_a_new_sid_and_old_events_stay(tmp_path: Path) -> None:
    keys, port = Keys(tmp_path), free_port()
    async with gateway(keys, tmp_path / "cp.db", port, **GW) as gw:
        url = f"tcp://127.0.0.1:{port}"
        async with InProcessAgent(keys.agent_keys(), url, FAST, sid="first") as agent:
            await wait_for(lambda: agent.protocol.state == READY, what="welcome")
            for i in range(100):
                agent.link.emit("process.exit", {"i": i})
            await wait_for(lambda: agent.protocol.buffered == 0, what="acked")
        async with InProcessAgent(keys.agent_keys(), url, FAST, sid="second") as agent:
            await wait_for(lambda: agent.protocol.state == READY, what="welcome again")
            for i in range(50):
                agent.link.emit("process.exit", {"i": i})
            await wait_for(lambda: agent.protocol.buffered == 0, what="acked again")
        assert len(gw.store.events("agent-1", sid="first", limit=1000)) == 100
        assert [e["seq"] for e in gw.store.events("agent-1", sid="second", limit=1000)] == list(range(1, 51))
        assert gw.agents["agent-1"].sid == "second"


async def test_black_holed_link_is_noticed_within_the_liveness_window_and_resumes(tmp_path: Path) -> None:
    keys, port = Keys(tmp_path), free_port()
    async with (
        gateway(keys, tmp_path / "cp.db", port, **GW) as gw,
        Relay(port) as relay,
        InProcessAgent(keys.agent_keys(), f"tcp://127.0.0.1:{relay.port}", FAST) as agent,
    ):
        await wait_for(lambda: agent.protocol.state == READY, what="welcome")
        agent.link.emit("process.exit", {"i": 0})
        await wait_for(lambda: agent.protocol.buffered == 0, what="acked")
        recycles = agent.link.recycles
        relay.blackhole = True
        started = time.monotonic()
        await wait_for(lambda: agent.link.recycles > recycles, 10, "the agent noticing")
        # Liveness 3 x 0.2 s; generous slack for a busy machine.
        assert time.monotonic() - started < 3.0
        for i in range(1, 20):
            agent.link.emit("process.exit", {"i": i})
        await asyncio.sleep(0.5)
        relay.blackhole = False
        await wait_for(lambda: agent.protocol.buffered == 0, 20, "resumed and acked")
        assert stored(gw) == list(range(1, 21))


async def test_unknown_or_wrong_keys_are_refused(tmp_path: Path) -> None:
    keys, port = Keys(tmp_path), free_port()
    (tmp_path / "other").mkdir()
    stranger = Keys(tmp_path / "other")
    url = f"tcp://127.0.0.1:{port}"
    async with gateway(keys, tmp_path / "cp.db", port, **GW) as gw:
        # An agent key the CP never registered: ZAP refuses the handshake.
        unknown = stranger.agent_keys()
        unknown.server = keys.cp_public
        async with InProcessAgent(unknown, url, FAST) as agent:
            await asyncio.sleep(1.5)
            assert agent.protocol.state != READY and gw.agents == {}
        # The right agent key but a wrong server key: the CURVE handshake fails on the agent's side.
        wrong = keys.agent_keys()
        wrong.server = stranger.cp_public
        async with InProcessAgent(wrong, url, FAST) as agent:
            await asyncio.sleep(1.5)
            assert agent.protocol.state != READY and gw.agents == {}
        # The registered key is admitted.
        async with InProcessAgent(keys.agent_keys(), url, FAST) as agent:
            await wait_for(lambda: agent.protocol.state == READY, what="welcome")


async def raw_dealer(ctx: zmq.asyncio.Context, keys: Keys, port: int) -> zmq.asyncio.Socket:
    k = keys.agent_keys()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.curve_secretkey, sock.curve_publickey, sock.curve_serverkey = k.secret, k.public, k.server
    sock.connect(f"tcp://127.0.0.1:{port}")
    return sock


async def test_oversized_frame_is_dropped_and_the_peer_disconnected(tmp_path: Path) -> None:
    keys, port = Keys(tmp_path), free_port()
    async with gateway(keys, tmp_path / "cp.db", port, **GW) as gw:
        ctx = zmq.asyncio.Context()
        sock = await raw_dealer(ctx, keys, port)
        monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED)
        hello = Frame(codec.HELLO, {"sid": "s", "agent_id": "agent-1"})
        await sock.send_multipart(codec.encode(hello))
        welcome = codec.decode(await asyncio.wait_for(sock.recv_multipart(), 5))
        assert welcome.kind == codec.WELCOME
        big = codec.events_frame([{"seq": 1, "kind": "x", "ts": 0, "data": b"\0" * (2 * 1024 * 1024)}])
        await sock.send_multipart(codec.encode(big))

        async def disconnected() -> None:
            while True:
                event = zmq.utils.monitor.parse_monitor_message(await monitor.recv_multipart())
                if event["event"] == zmq.EVENT_DISCONNECTED:
                    return

        await asyncio.wait_for(disconnected(), 10)
        assert gw.store.events("agent-1") == []
        # A wrong protocol version is answered DISCONNECT (the DEALER reconnects by itself).
        await sock.send_multipart([b"BVA9", b"HELLO", codec.pack({}), b""])
        reply = codec.decode(await asyncio.wait_for(sock.recv_multipart(), 10))
        assert reply.kind == codec.DISCONNECT and reply.header["reason"] == "version"
        monitor.close()
        sock.close()
        ctx.term()


async def test_buffer_overflow_sends_a_gap_and_counts_drops(tmp_path: Path) -> None:
    keys, port = Keys(tmp_path), free_port()
    settings = Settings(heartbeat_s=0.2, backoff_base_s=0.05, backoff_max_s=0.3, max_events=50)
    async with InProcessAgent(keys.agent_keys(), f"tcp://127.0.0.1:{port}", settings) as agent:
        for i in range(200):  # no CP yet
            agent.link.emit("telemetry.console", {"i": i})
        async with gateway(keys, tmp_path / "cp.db", port, **GW) as gw:
            await wait_for(
                lambda: agent.protocol.state == READY and agent.protocol.buffered == 0, what="acked"
            )
            (gap,) = gw.store.events("agent-1", kind="gap")
            assert gap["data"] == {"ranges": [[1, 150]], "count": 150}
            assert stored(gw, "telemetry.console") == list(range(151, 201))

            def reported() -> bool:
                link = gw.agents["agent-1"].health.get("link", {})
                return bool(link.get("dropped", {}).get("low") == 150)

            await wait_for(reported, what="drops in a heartbeat")
            assert agent.protocol.ack_through == 201  # the gap settled the dropped seqs


async def test_duplicate_command_runs_once_and_late_commands_are_refused(tmp_path: Path) -> None:
    keys, port = Keys(tmp_path), free_port()
    async with (
        gateway(keys, tmp_path / "cp.db", port, **GW) as gw,
        InProcessAgent(keys.agent_keys(), f"tcp://127.0.0.1:{port}", FAST) as agent,
    ):
        await wait_for(lambda: agent.protocol.state == READY, what="welcome")
        pending = asyncio.ensure_future(
            gw.command("agent-1", "getMousePosition", {}, cmd_id="c1", retry_s=0.05)
        )
        await wait_for(lambda: agent.commands, what="the command")
        await asyncio.sleep(0.5)  # the CP resends c1 meanwhile
        assert gw.store.db.execute("SELECT sends FROM commands WHERE cmd_id='c1'").fetchone()[0] > 1
        agent.link.command_done("c1", {"ok": True, "result": {"x": 1, "y": 2}})
        assert (await pending)["result"] == {"x": 1, "y": 2}
        # The CP asks again (lost result, say): the agent answers from its cache.
        gw.send(
            gw.agents["agent-1"], Frame(codec.CMD, {"cmd_id": "c1", "name": "getMousePosition", "args": {}})
        )
        before = gw.store.answers("c1")
        await wait_for(lambda: gw.store.answers("c1") > before, what="the cached answer")
        assert [c.cmd_id for c in agent.commands] == ["c1"]  # ran once
        # A command whose deadline passed before it arrived is refused, not run.
        late = {"cmd_id": "c2", "name": "getMousePosition", "args": {}, "deadline": time.time() - 1}
        gw.send(gw.agents["agent-1"], Frame(codec.CMD, late))
        result = await wait_for(lambda: gw.store.result("c2"), what="the refusal")
        assert result["ok"] is False and result["error"]["code"] == "deadline_exceeded"
        assert [c.cmd_id for c in agent.commands] == ["c1"]
