"""The control link's sans-io core: tables of "in → out", no sockets, no clock."""

from __future__ import annotations

import random
from typing import Any

import pytest

from agent.control import codec
from agent.control.codec import Frame
from agent.control.protocol import (
    BACKOFF,
    READY,
    Action,
    AgentProtocol,
    ApplyConfig,
    Connect,
    Identity,
    Recycle,
    Run,
    Send,
    Settings,
    Stopped,
)


def proto(**settings: Any) -> AgentProtocol:
    return AgentProtocol(Identity("agent-1", "sid-1"), Settings(**settings), random.Random(7))


def sent(actions: list[Action], kind: str | None = None) -> list[Frame]:
    return [a.frame for a in actions if isinstance(a, Send) and (kind is None or a.frame.kind == kind)]


def seqs(actions: list[Action]) -> list[int]:
    return [e["seq"] for f in sent(actions, codec.EVT) for e in f.events()]


def welcome(**header: Any) -> Frame:
    return Frame(codec.WELCOME, {"heartbeat_s": 5.0, "credit": 100, **header})


def ready(p: AgentProtocol, now: float = 0.0, **header: Any) -> list[Action]:
    p.start(now)
    return p.receive(welcome(**header), now, 1000.0)


def test_codec_round_trip_unknown_fields_and_version() -> None:
    frame = Frame(codec.HB, {"cpu": 1.5, "future_field": [1, 2]})
    assert codec.decode(codec.encode(frame)) == frame
    evt = codec.events_frame([{"seq": 1, "kind": "x", "ts": 0.0, "data": {"a": b"\x00"}}])
    assert codec.decode(codec.encode(evt)).events()[0]["data"] == {"a": b"\x00"}
    assert codec.decode([b"BVA1", b"NEWKIND", codec.pack({}), b""]).kind == "NEWKIND"
    with pytest.raises(codec.VersionMismatch):
        codec.decode([b"BVA2", b"HB", codec.pack({}), b""])
    with pytest.raises(codec.CodecError):
        codec.decode([b"BVA1", b"HB", b"\xc1garbage", b""])
    with pytest.raises(codec.CodecError):
        codec.decode([b"BVA1", b"HB", codec.pack([1, 2]), b""])


def test_start_says_hello_and_events_wait_for_welcome() -> None:
    p = proto()
    out = p.start(0.0)
    assert isinstance(out[0], Connect)
    (hello,) = sent(out, codec.HELLO)
    assert hello.header["agent_id"] == "agent-1" and hello.header["sid"] == "sid-1"
    assert hello.header["buffer"] == [1, 0]
    assert p.emit("process.exit", {"pid": 1}, 0.1, 1.0) == []  # not welcomed: buffered only
    assert p.receive(Frame(codec.ACK, {"ack_through": 5}), 0.2, 1.0) == []  # nothing counts before WELCOME
    out = p.receive(welcome(), 0.3, 1.0)
    assert p.state == READY
    assert [f.kind for f in sent(out)] == [codec.HB, codec.EVT]
    assert seqs(out) == [1]
    assert p.emit("process.exit", {"pid": 2}, 0.4, 1.0) == [] and p.next_seq == 3  # 1 is in flight


def test_ack_trims_and_reconnect_resends_from_ack_through_plus_one() -> None:
    p = proto()
    ready(p)
    for i in range(5):
        p.emit("process.exit", {"i": i}, 0.1, 1.0)
    # Only 1 went (Nagle); its ACK sends the 4 that gathered meanwhile in one frame.
    out = p.receive(Frame(codec.ACK, {"ack_through": 1}), 0.15, 1.0)
    assert [len(f.events()) for f in sent(out, codec.EVT)] == [4]
    p.receive(Frame(codec.ACK, {"ack_through": 2}), 0.2, 1.0)
    assert p.buffered == 3
    # The link dies: no frame for 3 intervals → recycle, backoff, reconnect.
    out = p.tick(15.3)
    assert isinstance(out[0], Recycle) and p.state == BACKOFF
    assert p.tick(p.reconnect_at - 0.001) == []
    out = p.tick(p.reconnect_at)
    assert isinstance(out[0], Connect)
    assert sent(out, codec.HELLO)[0].header["buffer"] == [3, 5]
    # The CP had stored up to 3 although its ACK was lost: resend from 4.
    out = p.receive(welcome(ack_through=3), 20.0, 1.0)
    assert seqs(out) == [4, 5]
    # A CP that lost its store (ack_through None) gets everything still buffered.
    p2 = proto()
    ready(p2)
    p2.emit("a", 1, 0.1, 1.0)
    p2.tick(16.0)
    p2.tick(p2.reconnect_at)
    assert seqs(p2.receive(welcome(ack_through=None), 40.0, 1.0)) == [1]


def test_ack_beyond_what_was_sent_is_capped() -> None:
    p = proto()
    p.start(0.0)
    p.receive(welcome(credit=1), 0.0, 1.0)
    p.emit("a", 1, 0.1, 1.0)
    p.emit("a", 2, 0.1, 1.0)
    p.receive(Frame(codec.ACK, {"ack_through": 99, "credit": 0}), 0.2, 1.0)
    assert p.ack_through == 1 and p.buffered == 1


def test_credit_bounds_in_flight() -> None:
    p = proto()
    ready(p, credit=2)
    out: list[Action] = []
    for i in range(5):
        out += p.emit("process.exit", {"i": i}, 0.1, 1.0)
    assert seqs(out) == [1]  # the rest gathers while 1 is in flight
    out = p.receive(Frame(codec.ACK, {"ack_through": 1, "credit": 2}), 0.2, 1.0)
    assert seqs(out) == [2, 3]  # credit 2 bounds what is in flight
    out = p.receive(Frame(codec.ACK, {"ack_through": 3, "credit": 10}), 0.3, 1.0)
    assert seqs(out) == [4, 5]


def test_overflow_drops_low_priority_first_never_results_and_sends_a_gap_first() -> None:
    p = proto(max_events=4)
    p.start(0.0)  # not welcomed yet: everything stays buffered
    p.emit("telemetry.console", {"n": 1}, 0.0, 1.0)  # 1 low
    p.emit("process.exit", {"n": 2}, 0.0, 1.0)  # 2 normal
    p.command_done("c1", {"ok": True, "result": None}, 0.0, 1.0)  # 3 result
    p.emit("telemetry.network", {"n": 4}, 0.0, 1.0)  # 4 low
    p.emit("process.exit", {"n": 5}, 0.0, 1.0)  # 5: drops 1 (oldest low)
    p.emit("process.exit", {"n": 6}, 0.0, 1.0)  # 6: drops 4 (the other low)
    p.emit("process.exit", {"n": 7}, 0.0, 1.0)  # 7: no low left: drops 2 (oldest normal), never 3
    assert p.dropped == {"low": 2, "normal": 1, "oversized": 0}
    out = p.receive(welcome(), 1.0, 1.0)
    events = [e for f in sent(out, codec.EVT) for e in f.events()]
    assert events[0]["kind"] == "gap"
    assert events[0]["data"] == {"ranges": [[1, 2], [4, 4]], "count": 3}
    assert [e["seq"] for e in events[1:]] == [3, 5, 6, 7]
    assert events[1]["kind"] == "command.result"
    assert sent(out, codec.HB)[0].header["link"]["dropped"] == {"low": 2, "normal": 1, "oversized": 0}


def test_buffer_is_bounded_by_bytes_and_oversized_events_become_a_gap() -> None:
    p = proto(max_bytes=2000, max_event_bytes=1000)
    p.start(0.0)
    for _ in range(10):
        p.emit("process.exit", "x" * 500, 0.0, 1.0)
    assert p.buffered_bytes <= 2000 and p.buffered == 3
    p.emit("process.exit", "y" * 5000, 0.0, 1.0)
    assert p.dropped["oversized"] == 1
    events = [e for f in sent(p.receive(welcome(), 1.0, 1.0), codec.EVT) for e in f.events()]
    assert events[0]["kind"] == "gap" and events[0]["data"]["count"] == 8


def test_batches_stay_below_the_frame_cap() -> None:
    p = proto(max_frame_bytes=2000)
    p.start(0.0)
    for _ in range(10):
        p.emit("process.exit", "x" * 500, 0.0, 1.0)
    frames = sent(p.receive(welcome(), 1.0, 1.0), codec.EVT)
    assert len(frames) == 4 and all(len(f.body) <= 2000 for f in frames)
    assert [e["seq"] for f in frames for e in f.events()] == list(range(1, 11))


def test_heartbeats_and_liveness_with_full_jitter_backoff() -> None:
    p = proto()
    ready(p)
    assert sent(p.tick(4.9), codec.HB) == []
    (hb,) = sent(p.tick(5.0), codec.HB)
    assert hb.header["link"]["buffer_fill"] == 0
    p.receive(Frame(codec.HB, {}), 12.0, 1.0)  # the CP's heartbeat keeps it alive
    assert not any(isinstance(a, Recycle) for a in p.tick(26.9))
    delays = []
    now = 27.1
    for _ in range(8):
        out = p.tick(now)
        assert isinstance(out[0], Recycle)
        delays.append(p.reconnect_at - now)
        now = p.reconnect_at
        assert isinstance(p.tick(now)[0], Connect)  # HELLO, and no WELCOME comes
        now += 15.1
    caps = [1, 2, 4, 8, 16, 30, 30, 30]
    assert all(0 <= d <= c for d, c in zip(delays, caps, strict=True))
    assert max(delays[5:]) > 4  # grows towards the cap
    # A WELCOME resets the backoff.
    p.receive(welcome(), now - 15.0, 1.0)
    assert p.attempt == 0


def test_disconnect_with_retry_after_and_wrong_version() -> None:
    p = proto()
    ready(p)
    out = p.receive(Frame(codec.DISCONNECT, {"reason": "maintenance", "retry_after": 7}), 1.0, 1.0)
    assert isinstance(out[0], Recycle) and p.reconnect_at == 8.0
    p.tick(8.0)
    p.receive(welcome(), 8.0, 1.0)
    out = p.bad_frame(codec.VersionMismatch(b"BVA9"), 9.0)
    assert sent(out)[0].kind == codec.DISCONNECT and isinstance(out[1], Recycle)
    # Garbage and unknown kinds are ignored.
    p.tick(p.reconnect_at)
    p.receive(welcome(), 30.0, 1.0)
    assert p.bad_frame(codec.CodecError("x"), 30.0) == []
    assert p.receive(Frame("FUTURE", {"x": 1}), 30.0, 1.0) == []


def test_commands_run_once_duplicates_from_cache_and_deadlines() -> None:
    p = proto()
    ready(p)
    cmd = Frame(codec.CMD, {"cmd_id": "c1", "name": "getMousePosition", "args": {}, "deadline": 1030.0})
    (run,) = p.receive(cmd, 1.0, 1000.0)
    assert isinstance(run, Run) and run.command.name == "getMousePosition"
    assert run.command.deadline == pytest.approx(31.0)  # wall deadline → monotonic
    assert p.receive(cmd, 1.1, 1000.1) == []  # still running: the result will come
    out = p.command_done("c1", {"ok": True, "result": {"x": 1}}, 2.0, 1001.0)
    (result,) = [e for f in sent(out, codec.EVT) for e in f.events()]
    assert result["kind"] == "command.result" and result["data"]["result"] == {"x": 1}
    out = p.receive(cmd, 3.0, 1002.0)  # the CP retries: answered from the cache, not run again
    assert not any(isinstance(a, Run) for a in out)
    (again,) = [e for f in sent(out, codec.EVT) for e in f.events()]
    assert again["data"]["cmd_id"] == "c1" and again["data"]["cached"] is True
    late = Frame(codec.CMD, {"cmd_id": "c2", "name": "x", "args": {}, "deadline": 999.0})
    out = p.receive(late, 4.0, 1000.0)
    assert not any(isinstance(a, Run) for a in out)
    (refused,) = [e for f in sent(out, codec.EVT) for e in f.events()]
    assert refused["data"]["ok"] is False and refused["data"]["error"]["code"] == "deadline_exceeded"
    assert p.receive(late, 5.0, 1000.0) and not any(isinstance(a, Run) for a in p.receive(late, 5, 1000))


def test_cfg_is_state_applied_once_per_version() -> None:
    p = proto()
    out = ready(p, config={"version": 2, "config": {"enabled": True}})
    assert ApplyConfig(2, {"enabled": True}) in out
    assert p.receive(Frame(codec.CFG, {"version": 2, "config": {"enabled": False}}), 1.0, 1.0) == []
    assert p.receive(Frame(codec.CFG, {"version": 3, "config": {}}), 1.0, 1.0) == [ApplyConfig(3, {})]
    p.config_applied(3)
    assert sent(p.tick(5.0), codec.HB)[0].header["link"]["applied_config_version"] == 3


def test_drain_flushes_then_says_bye_and_refuses_commands() -> None:
    p = proto()
    ready(p)
    p.emit("process.exit", {}, 0.1, 1.0)
    assert p.drain(0.2) == []  # one event un-acked
    out = p.receive(Frame(codec.CMD, {"cmd_id": "c9", "name": "x", "args": {}}), 0.3, 1.0)
    assert [e["data"]["error"]["code"] for f in sent(out, codec.EVT) for e in f.events()] == ["draining"]
    out = p.receive(Frame(codec.ACK, {"ack_through": 2}), 0.4, 1.0)
    assert [f.kind for f in sent(out)] == [codec.BYE] and isinstance(out[-1], Stopped)
    assert p.emit("x", 1, 0.5, 1.0) == [] and p.tick(100.0) == []
    # Drain with the CP unreachable ends at the timeout.
    q = proto(drain_timeout_s=2.0)
    ready(q)
    q.emit("process.exit", {}, 0.1, 1.0)
    q.drain(0.2)
    q.receive(Frame(codec.HB, {}), 2.0, 1.0)
    assert isinstance(q.tick(2.3)[-1], Stopped)
