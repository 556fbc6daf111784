"""The agent's side of the control link as a pure state machine (no sockets, no clock, no tasks).

Inputs: frames from the CP (`receive`), timer ticks with a monotonic `now` (`tick`), local events (`emit`,
`command_done`, `config_applied`, `set_health`, `drain`). Outputs: a list of actions for the shell:
`Connect` (open a fresh socket), `Send(frame)`, `Recycle` (throw the socket away, LINGER 0), `Run(command)`,
`ApplyConfig`, `Welcomed`, `Stopped`.

Reliability (design/control-link.md): `seq` from 1 per `sid`; un-acked events stay in a buffer bounded by
count and bytes; after a reconnect they are resent from `ack_through + 1`; when some had to be dropped
(oldest low-priority first, then normal, never command results or gaps) a `gap` event naming the dropped
seqs goes out before the rest. Credit from the CP bounds the events in flight. Heartbeats every interval;
`liveness` intervals without a frame from the CP → recycle and reconnect after a full-jitter exponential
backoff. A repeated `cmd_id` is answered from a result cache, never run twice; a command past its deadline
is refused.
"""

from __future__ import annotations

import collections
import dataclasses
import random
from collections.abc import Mapping
from typing import Any

from . import codec
from .codec import Frame

PROTOCOL_VERSION = 1

# Event priorities: LOW goes first when the buffer is full, CRITICAL (command results, gaps) never.
LOW, NORMAL, CRITICAL = 0, 1, 2
LOW_KINDS = frozenset({"console", "network", "telemetry.console", "telemetry.network"})

RESULT_KIND = "command.result"
GAP_KIND = "gap"

# Lifecycle commands the agent itself knows (everything else is an operationId of the spec).
LIFECYCLE_COMMANDS = frozenset(
    {"agent.restart_chromium", "agent.configure_telemetry", "agent.drain", "agent.session"}
)


@dataclasses.dataclass(frozen=True)
class Settings:
    heartbeat_s: float = 5.0
    liveness: int = 3  # missed heartbeat intervals before the socket is recycled
    backoff_base_s: float = 1.0
    backoff_max_s: float = 30.0
    max_events: int = 10_000
    max_bytes: int = 16 * 1024 * 1024
    # One EVT frame stays well below the gateway's MAXMSGSIZE (1 MiB).
    max_frame_bytes: int = 512 * 1024
    max_batch: int = 512
    # An event larger than this is dropped at once (and reported in a gap): it could never be sent.
    max_event_bytes: int = 256 * 1024
    result_cache: int = 512
    # Until the CP says otherwise (WELCOME / ACK carry the credit).
    initial_credit: int = 1000
    drain_timeout_s: float = 10.0


@dataclasses.dataclass(frozen=True)
class Identity:
    agent_id: str
    sid: str
    version: str = "0.1.0"
    capabilities: tuple[str, ...] = ()
    base_url: str = ""
    cdp_url: str = ""


@dataclasses.dataclass(frozen=True)
class Command:
    cmd_id: str
    name: str
    args: dict[str, Any]
    # Monotonic time after which the result is useless (None = no deadline).
    deadline: float | None


@dataclasses.dataclass(frozen=True)
class Connect:
    pass


@dataclasses.dataclass(frozen=True)
class Send:
    frame: Frame


@dataclasses.dataclass(frozen=True)
class Recycle:
    reason: str


@dataclasses.dataclass(frozen=True)
class Run:
    command: Command


@dataclasses.dataclass(frozen=True)
class ApplyConfig:
    version: int
    config: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Welcomed:
    """The CP accepted this connection; its WELCOME header (e.g. the session-token key, the session id)."""

    header: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Stopped:
    reason: str


Action = Connect | Send | Recycle | Run | ApplyConfig | Welcomed | Stopped


@dataclasses.dataclass
class _Event:
    seq: int
    priority: int
    size: int
    wire: dict[str, Any]


# States
IDLE, BACKOFF, HELLO_SENT, READY, STOPPED = "idle", "backoff", "hello_sent", "ready", "stopped"


def priority_of(kind: str) -> int:
    if kind in (RESULT_KIND, GAP_KIND):
        return CRITICAL
    return LOW if kind in LOW_KINDS or kind.split(".")[-1] in LOW_KINDS else NORMAL


def _ranges(seqs: list[int]) -> list[list[int]]:
    out: list[list[int]] = []
    for seq in sorted(seqs):
        if out and out[-1][1] + 1 == seq:
            out[-1][1] = seq
        else:
            out.append([seq, seq])
    return out


class AgentProtocol:
    def __init__(
        self, identity: Identity, settings: Settings | None = None, rng: random.Random | None = None
    ) -> None:
        self.identity = identity
        self.settings = settings or Settings()
        self.rng = rng or random.Random()
        self.state = IDLE
        self.heartbeat_s = self.settings.heartbeat_s
        self.liveness = self.settings.liveness
        self.credit = self.settings.initial_credit
        self.next_seq = 1
        self.ack_through = 0
        self.sent_through = 0
        self._buffer: dict[int, _Event] = {}
        self._bytes = 0
        self._by_priority: dict[int, collections.deque[int]] = {p: collections.deque() for p in (LOW, NORMAL)}
        self._unsent: collections.deque[int] = collections.deque()
        self._inflight = 0
        self._dropped_pending: list[int] = []
        self.dropped = {"low": 0, "normal": 0, "oversized": 0}
        self._results: collections.OrderedDict[str, dict[str, Any]] = collections.OrderedDict()
        self._running: set[str] = set()
        self.attempt = 0
        self.reconnect_at = 0.0
        self.last_rx = 0.0
        self.last_hb = 0.0
        self.connected_at = 0.0
        self.config_version = 0
        self.applied_config_version = 0
        self.health: dict[str, Any] = {}
        self.draining = False
        self.drain_deadline = 0.0
        self.connects = 0

    # ---- inputs -------------------------------------------------------------------------------------

    def start(self, now: float) -> list[Action]:
        return self._connect(now)

    def receive(self, frame: Frame, now: float, wall: float) -> list[Action]:
        """A frame from the CP. `wall` (time.time()) is only compared with CMD deadlines, which are data."""
        if self.state in (STOPPED, IDLE, BACKOFF):
            return []
        self.last_rx = now
        kind, h = frame.kind, frame.header
        if kind == codec.WELCOME:
            return self._welcome(h, now)
        if self.state != READY:
            if kind == codec.DISCONNECT:
                return self._disconnected(h, now)
            return []  # nothing counts before WELCOME
        if kind == codec.ACK:
            self._ack(h)
            return self._flush(now)
        if kind == codec.CMD:
            return self._command(h, now, wall)
        if kind == codec.CFG:
            return self._cfg(h)
        if kind == codec.DISCONNECT:
            return self._disconnected(h, now)
        return []  # HB only proves liveness; unknown kinds are ignored

    def bad_frame(self, error: codec.CodecError, now: float) -> list[Action]:
        """A message from the CP that does not decode: a wrong version is answered DISCONNECT, then a new
        connection is tried; garbage is ignored."""
        if isinstance(error, codec.VersionMismatch) and self.state not in (STOPPED, IDLE, BACKOFF):
            bye = Send(Frame(codec.DISCONNECT, {"reason": "version", "version": codec.VERSION.decode()}))
            return [bye, *self._recycle(now, "peer speaks another protocol version")]
        return []

    def congested(self, now: float) -> list[Action]:
        """The shell could not hand frames to the socket for a while: start over on a new one."""
        if self.state in (STOPPED, IDLE, BACKOFF):
            return []
        return self._recycle(now, "the socket stayed congested")

    def tick(self, now: float) -> list[Action]:
        s = self.state
        if s in (STOPPED, IDLE):
            return []
        if s == BACKOFF:
            return self._connect(now) if now >= self.reconnect_at else []
        if now - self.last_rx > self.liveness * self.heartbeat_s:
            return self._recycle(now, "no frame from the control plane within the liveness window")
        out: list[Action] = []
        if s == READY and now - self.last_hb >= self.heartbeat_s:
            out.append(self._heartbeat(now))
        if self.draining and now >= self.drain_deadline:
            out.extend(self._bye("drain timeout"))
        return out

    def emit(self, kind: str, data: Any, now: float, ts: float) -> list[Action]:
        """A local event to forward (ts is wall time, data only)."""
        if self.state == STOPPED:
            return []
        self._append(kind, data, ts)
        # Nagle-like: while a window is in flight, events gather and go in full batches on its ACK (one
        # frame per event would cost the CP one transaction each); command results go at once.
        if self._inflight and priority_of(kind) != CRITICAL:
            return []
        return self._flush(now)

    def command_done(self, cmd_id: str, result: dict[str, Any], now: float, ts: float) -> list[Action]:
        """A command finished: `result` is {"ok": True, "result": …} or {"ok": False, "error": {…}}."""
        self._running.discard(cmd_id)
        self._remember(cmd_id, result)
        return self.emit(RESULT_KIND, {"cmd_id": cmd_id, **result}, now, ts)

    def config_applied(self, version: int) -> None:
        self.applied_config_version = version

    def set_health(self, health: Mapping[str, Any]) -> None:
        self.health = dict(health)

    def drain(self, now: float) -> list[Action]:
        """Graceful shutdown: refuse new commands, flush what is buffered, then BYE (or at the timeout)."""
        if self.state == STOPPED:
            return []
        self.draining = True
        self.drain_deadline = now + self.settings.drain_timeout_s
        if self.state != READY or not self._buffer:
            return self._bye("drained" if not self._buffer else "not connected")
        return self._flush(now)

    # ---- state ----------------------------------------------------------------------------------------

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    @property
    def buffered_bytes(self) -> int:
        return self._bytes

    def stats(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "buffer_events": len(self._buffer),
            "buffer_bytes": self._bytes,
            "buffer_fill": round(
                max(len(self._buffer) / self.settings.max_events, self._bytes / self.settings.max_bytes), 4
            ),
            "dropped": dict(self.dropped),
            "next_seq": self.next_seq,
            "ack_through": self.ack_through,
            "applied_config_version": self.applied_config_version,
            "connects": self.connects,
        }

    # ---- internals --------------------------------------------------------------------------------------

    def _connect(self, now: float) -> list[Action]:
        self.state = HELLO_SENT
        self.last_rx = now
        self.connected_at = now
        self.connects += 1
        ident = self.identity
        oldest = next(iter(self._buffer), self.next_seq)
        hello = Frame(
            codec.HELLO,
            {
                "agent_id": ident.agent_id,
                "sid": ident.sid,
                "version": ident.version,
                "protocol": PROTOCOL_VERSION,
                "capabilities": list(ident.capabilities),
                "base_url": ident.base_url,
                "cdp_url": ident.cdp_url,
                "buffer": [oldest, self.next_seq - 1],
                "config_version": self.applied_config_version,
            },
        )
        return [Connect(), Send(hello)]

    def _recycle(self, now: float, reason: str, delay: float | None = None) -> list[Action]:
        if delay is None:
            cap = min(self.settings.backoff_max_s, self.settings.backoff_base_s * 2**self.attempt)
            delay = self.rng.uniform(0, cap)  # full jitter
            self.attempt = min(self.attempt + 1, 16)
        self.state = BACKOFF
        self.reconnect_at = now + delay
        return [Recycle(reason)]

    def _disconnected(self, h: Mapping[str, Any], now: float) -> list[Action]:
        retry = h.get("retry_after")
        delay = float(retry) if isinstance(retry, int | float) and 0 <= retry <= 3600 else None
        return self._recycle(now, f"disconnected by the control plane: {h.get('reason', '')}", delay)

    def _welcome(self, h: Mapping[str, Any], now: float) -> list[Action]:
        if self.state != HELLO_SENT:
            return []
        self.state = READY
        self.attempt = 0
        hb = h.get("heartbeat_s")
        if isinstance(hb, int | float) and 0.05 <= hb <= 300:
            self.heartbeat_s = float(hb)
        live = h.get("liveness")
        if isinstance(live, int) and 1 <= live <= 100:
            self.liveness = live
        self._set_credit(h.get("credit"))
        ack = h.get("ack_through")
        # None: the CP knows nothing of this sid: everything buffered goes again.
        self.ack_through = max(self.ack_through, ack if isinstance(ack, int) else 0)
        self._trim()
        # Resend from ack_through + 1 (or the oldest still buffered).
        self.sent_through = self.ack_through
        self._inflight = 0
        self._unsent = collections.deque(s for s in self._buffer if s > self.sent_through)
        self.last_hb = now - self.heartbeat_s  # a heartbeat right away carries health
        out: list[Action] = [Welcomed(dict(h))]
        cfg = h.get("config")
        if isinstance(cfg, dict):
            out.extend(self._cfg(cfg))
        out.append(self._heartbeat(now))
        out.extend(self._flush(now))
        return out

    def _set_credit(self, credit: Any) -> None:
        if isinstance(credit, int) and credit >= 0:
            self.credit = credit

    def _ack(self, h: Mapping[str, Any]) -> None:
        self._set_credit(h.get("credit"))
        ack = h.get("ack_through")
        if isinstance(ack, int) and ack > self.ack_through:
            # Never beyond what was sent: a confused CP cannot make us forget unsent events.
            self.ack_through = min(ack, self.sent_through)
            self._trim()

    def _trim(self) -> None:
        for seq in list(self._buffer):
            if seq > self.ack_through:
                break
            ev = self._buffer.pop(seq)
            self._bytes -= ev.size
            if seq <= self.sent_through:
                self._inflight -= 1
        for dq in self._by_priority.values():
            while dq and dq[0] <= self.ack_through:
                dq.popleft()
        self._inflight = max(self._inflight, 0)

    def _append(self, kind: str, data: Any, ts: float, *, enforce: bool = True) -> None:
        seq = self.next_seq
        self.next_seq += 1
        wire = {"seq": seq, "kind": kind, "ts": ts, "data": data}
        size = len(codec.pack(wire))
        priority = priority_of(kind)
        if size > self.settings.max_event_bytes and priority != CRITICAL:
            self.dropped["oversized"] += 1
            self._dropped_pending.append(seq)
            return
        self._buffer[seq] = _Event(seq, priority, size, wire)
        self._bytes += size
        self._unsent.append(seq)
        if priority != CRITICAL:
            self._by_priority[priority].append(seq)
        if enforce:
            self._enforce_caps()

    def _enforce_caps(self) -> None:
        s = self.settings
        while len(self._buffer) > s.max_events or self._bytes > s.max_bytes:
            victim = None
            for priority, name in ((LOW, "low"), (NORMAL, "normal")):
                dq = self._by_priority[priority]
                while dq and dq[0] not in self._buffer:
                    dq.popleft()
                if dq:
                    victim = dq.popleft()
                    self.dropped[name] += 1
                    break
            if victim is None:
                return  # only command results and gaps left: those are never dropped
            ev = self._buffer.pop(victim)
            self._bytes -= ev.size
            if victim <= self.sent_through:
                self._inflight -= 1
            self._dropped_pending.append(victim)
        # Dropped seqs leave stale entries in _unsent: rebuild when they dominate (amortised O(1)).
        if len(self._unsent) > 2 * len(self._buffer) + 64:
            self._unsent = collections.deque(q for q in self._unsent if q in self._buffer)

    def _flush(self, now: float) -> list[Action]:
        if self.state != READY:
            return []
        if self._dropped_pending:
            dropped, self._dropped_pending = self._dropped_pending, []
            # The gap goes out before the newer events; the CP counts the named seqs as settled.
            # It may exceed the caps by one event: dropping for it would need another gap.
            gap_data = {"ranges": _ranges(dropped), "count": len(dropped)}
            self._append(GAP_KIND, gap_data, 0.0, enforce=False)
            gap = self._unsent.pop()
            self._unsent.appendleft(gap)
        out: list[Action] = []
        s = self.settings
        while self._unsent and self._inflight < self.credit:
            batch: list[dict[str, Any]] = []
            size = 0
            while self._unsent and self._inflight < self.credit and len(batch) < s.max_batch:
                seq = self._unsent[0]
                ev = self._buffer.get(seq)
                if ev is None:
                    self._unsent.popleft()
                    continue
                if batch and size + ev.size > s.max_frame_bytes:
                    break
                self._unsent.popleft()
                batch.append(ev.wire)
                size += ev.size
                self._inflight += 1
                self.sent_through = max(self.sent_through, seq)
            if not batch:
                break
            out.append(Send(codec.events_frame(batch)))
        if self.draining and not self._buffer:
            out.extend(self._bye("drained"))
        return out

    def _heartbeat(self, now: float) -> Send:
        self.last_hb = now
        return Send(Frame(codec.HB, {**self.health, "link": self.stats()}))

    def _remember(self, cmd_id: str, result: dict[str, Any]) -> None:
        self._results[cmd_id] = result
        self._results.move_to_end(cmd_id)
        while len(self._results) > self.settings.result_cache:
            self._results.popitem(last=False)

    def _command(self, h: Mapping[str, Any], now: float, wall: float) -> list[Action]:
        cmd_id, name, args = h.get("cmd_id"), h.get("name"), h.get("args", {})
        if not isinstance(cmd_id, str) or not cmd_id:
            return []  # not answerable: no id to answer to
        if cmd_id in self._running:
            return []  # a retry of a command still running: its result will come
        cached = self._results.get(cmd_id)
        if cached is not None:
            return self.emit(RESULT_KIND, {"cmd_id": cmd_id, **cached, "cached": True}, now, wall)
        if not isinstance(name, str) or not isinstance(args, dict):
            return self._refuse(cmd_id, "bad_request", "a command needs a name and an args map", now, wall)
        deadline = h.get("deadline")
        mono_deadline: float | None = None
        if isinstance(deadline, int | float):
            left = float(deadline) - wall
            if left <= 0:
                return self._refuse(
                    cmd_id, "deadline_exceeded", f"the command's deadline passed {-left:.3f} s ago", now, wall
                )
            mono_deadline = now + left
        if self.draining:
            return self._refuse(cmd_id, "draining", "the agent is shutting down", now, wall)
        self._running.add(cmd_id)
        return [Run(Command(cmd_id, name, args, mono_deadline))]

    def _refuse(self, cmd_id: str, code: str, message: str, now: float, wall: float) -> list[Action]:
        error = {"code": code, "message": message}
        return self.command_done(cmd_id, {"ok": False, "error": error}, now, wall)

    def _cfg(self, h: Mapping[str, Any]) -> list[Action]:
        version, config = h.get("version"), h.get("config")
        if not isinstance(version, int) or not isinstance(config, dict) or version <= self.config_version:
            return []  # state, not a command: an older or repeated version changes nothing
        self.config_version = version
        return [ApplyConfig(version, config)]

    def _bye(self, reason: str) -> list[Action]:
        was = self.state
        self.state = STOPPED
        out: list[Action] = []
        if was == READY:
            out.append(Send(Frame(codec.BYE, {"reason": reason, "buffered": len(self._buffer)})))
        out.append(Stopped(reason))
        return out
