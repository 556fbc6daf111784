"""The control plane's embedded store: SQLite in WAL mode, one connection used from one worker thread.

Tables: agents (id ↔ CURVE public key), sessions, events (deduplicated on (agent, sid, seq)), streams (what
is settled per (agent, sid): the cumulative ack), commands and results. Every call runs on the store's own
thread (`call`), so the gateway's event loop never waits on disk.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import msgpack

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS agents (
    agent_id TEXT PRIMARY KEY, public_key TEXT UNIQUE NOT NULL, registered REAL NOT NULL,
    sid TEXT, base_url TEXT, cdp_url TEXT, hello TEXT, health TEXT, last_seen REAL
);
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY, agent_id TEXT NOT NULL, created REAL NOT NULL, deleted REAL,
    telemetry TEXT, cfg_version INTEGER NOT NULL DEFAULT 0, data TEXT
);
CREATE TABLE IF NOT EXISTS streams (
    agent_id TEXT NOT NULL, sid TEXT NOT NULL, ack_through INTEGER NOT NULL,
    settled TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (agent_id, sid)
);
CREATE TABLE IF NOT EXISTS events (
    agent_id TEXT NOT NULL, sid TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL, ts REAL,
    data BLOB, received REAL NOT NULL, PRIMARY KEY (agent_id, sid, seq)
);
CREATE TABLE IF NOT EXISTS commands (
    cmd_id TEXT PRIMARY KEY, agent_id TEXT NOT NULL, name TEXT NOT NULL, args BLOB, deadline REAL,
    created REAL NOT NULL, sends INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS results (
    cmd_id TEXT PRIMARY KEY, agent_id TEXT NOT NULL, ok INTEGER NOT NULL, data BLOB, received REAL NOT NULL,
    answers INTEGER NOT NULL DEFAULT 1
);
"""


# Seqs above the cumulative ack the store remembers per stream (an agent is untrusted: bounded work).
MAX_SETTLED = 100_000


def settle(
    ack_through: int, settled: set[int], seqs: Iterable[int], ranges: Iterable[Sequence[int]] = ()
) -> int:
    """Advance a cumulative ack over `seqs` (events stored) and `ranges` (seqs a gap event says are gone);
    `settled` keeps what lies beyond the first hole."""
    for seq in seqs:
        if seq > ack_through and len(settled) < MAX_SETTLED:
            settled.add(seq)
    spans = sorted((int(lo), int(hi)) for lo, hi in ranges if int(lo) <= int(hi))
    while True:
        while ack_through + 1 in settled:
            ack_through += 1
            settled.discard(ack_through)
        moved = False
        for lo, hi in spans:
            if lo <= ack_through + 1 < hi + 1:
                ack_through = hi
                moved = True
        if not moved:
            break
        settled.difference_update([q for q in settled if q <= ack_through])
    for lo, hi in spans:
        if lo > ack_through + 1 and hi - lo < MAX_SETTLED - len(settled):
            settled.update(range(lo, hi + 1))
    return ack_through


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="cp-store")
        self._db: sqlite3.Connection | None = None
        self._pool.submit(self._open).result()

    def _open(self) -> None:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(SCHEMA)
        self._db = db

    @property
    def db(self) -> sqlite3.Connection:
        assert self._db is not None
        return self._db

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def close(self) -> None:
        def shut() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        self._pool.submit(shut).result()
        self._pool.shutdown(wait=True)

    # ---- agents ---------------------------------------------------------------------------------------

    def register(self, agent_id: str, public_key: str) -> None:
        self.db.execute(
            "INSERT INTO agents (agent_id, public_key, registered) VALUES (?, ?, ?) "
            "ON CONFLICT(agent_id) DO UPDATE SET public_key = excluded.public_key",
            (agent_id, public_key, time.time()),
        )

    def keys(self) -> dict[str, str]:
        """public key (Z85) → agent id."""
        return {k: a for a, k in self.db.execute("SELECT agent_id, public_key FROM agents")}

    def hello(self, agent_id: str, sid: str, header: dict[str, Any]) -> int | None:
        """Record a HELLO; the ack_through of this (agent, sid), None if the store knows nothing of it."""
        self.db.execute(
            "UPDATE agents SET sid = ?, base_url = ?, cdp_url = ?, hello = ?, last_seen = ? "
            "WHERE agent_id = ?",
            (
                sid,
                str(header.get("base_url", "")),
                str(header.get("cdp_url", "")),
                json.dumps(header, default=str),
                time.time(),
                agent_id,
            ),
        )
        row = self.db.execute(
            "SELECT ack_through FROM streams WHERE agent_id = ? AND sid = ?", (agent_id, sid)
        ).fetchone()
        return None if row is None else int(row[0])

    def health(self, agent_id: str, health: dict[str, Any]) -> None:
        self.db.execute(
            "UPDATE agents SET health = ?, last_seen = ? WHERE agent_id = ?",
            (json.dumps(health, default=str), time.time(), agent_id),
        )

    def agent(self, agent_id: str) -> dict[str, Any] | None:
        row = self.db.execute(
            "SELECT agent_id, sid, base_url, cdp_url, health, last_seen FROM agents WHERE agent_id = ?",
            (agent_id,),
        ).fetchone()
        if row is None:
            return None
        return {
            "agent_id": row[0],
            "sid": row[1],
            "base_url": row[2],
            "cdp_url": row[3],
            "health": json.loads(row[4]) if row[4] else {},
            "last_seen": row[5],
        }

    # ---- events -----------------------------------------------------------------------------------------

    def store_events(self, agent_id: str, sid: str, events: Sequence[dict[str, Any]]) -> tuple[int, int]:
        """Insert a batch (duplicates ignored), advance the stream's ack; (ack_through, newly stored)."""
        db = self.db
        row = db.execute(
            "SELECT ack_through, settled FROM streams WHERE agent_id = ? AND sid = ?", (agent_id, sid)
        ).fetchone()
        ack, settled = (0, set()) if row is None else (int(row[0]), set(json.loads(row[1])))
        now = time.time()
        seqs: list[int] = []
        gaps: list[Sequence[int]] = []
        stored = 0
        db.execute("BEGIN")
        try:
            for e in events:
                seq = int(e["seq"])
                seqs.append(seq)
                kind = str(e.get("kind", ""))
                data = e.get("data")
                blob = msgpack.packb(data, use_bin_type=True)
                cur = db.execute(
                    "INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (agent_id, sid, seq, kind, e.get("ts"), blob, now),
                )
                if cur.rowcount != 1:
                    continue  # a resent event the store already has
                stored += 1
                if kind == "gap" and isinstance(data, dict) and isinstance(data.get("ranges"), list):
                    gaps.extend(r for r in data["ranges"] if isinstance(r, list) and len(r) == 2)
                if (
                    kind == "command.result"
                    and isinstance(data, dict)
                    and isinstance(data.get("cmd_id"), str)
                ):
                    # A result is stored once; a second answer (from the agent's cache) is only counted.
                    db.execute(
                        "INSERT INTO results (cmd_id, agent_id, ok, data, received) VALUES (?, ?, ?, ?, ?) "
                        "ON CONFLICT(cmd_id) DO UPDATE SET answers = answers + 1",
                        (data["cmd_id"], agent_id, 1 if data.get("ok") else 0, blob, now),
                    )
            ack = settle(ack, settled, seqs, gaps)
            db.execute(
                "INSERT INTO streams (agent_id, sid, ack_through, settled) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(agent_id, sid) DO UPDATE SET ack_through = excluded.ack_through, "
                "settled = excluded.settled",
                (agent_id, sid, ack, json.dumps(sorted(settled))),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return ack, stored

    def events(
        self,
        agent_id: str,
        *,
        sid: str | None = None,
        kind: str | None = None,
        after: int = 0,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        q = "SELECT sid, seq, kind, ts, data FROM events WHERE agent_id = ? AND seq > ?"
        args: list[Any] = [agent_id, after]
        if sid is not None:
            q += " AND sid = ?"
            args.append(sid)
        if kind is not None:
            q += " AND kind = ?"
            args.append(kind)
        q += " ORDER BY received, sid, seq LIMIT ?"
        args.append(limit)
        return [
            {"sid": r[0], "seq": r[1], "kind": r[2], "ts": r[3], "data": msgpack.unpackb(r[4], raw=False)}
            for r in self.db.execute(q, args)
        ]

    def telemetry_page(self, agent_id: str, after: int, limit: int) -> list[dict[str, Any]]:
        """Stored telemetry events in arrival order; `cursor` (the row id) pages on."""
        rows = self.db.execute(
            "SELECT rowid, seq, data FROM events WHERE agent_id = ? AND kind LIKE 'telemetry%' AND rowid > ? "
            "ORDER BY rowid LIMIT ?",
            (agent_id, after, limit),
        )
        return [{"cursor": r[0], "seq": r[1], "data": msgpack.unpackb(r[2], raw=False)} for r in rows]

    def count_events(self, agent_id: str) -> int:
        return int(
            self.db.execute("SELECT count(*) FROM events WHERE agent_id = ?", (agent_id,)).fetchone()[0]
        )

    # ---- commands ---------------------------------------------------------------------------------------

    def add_command(
        self, cmd_id: str, agent_id: str, name: str, args: dict[str, Any], deadline: float
    ) -> None:
        self.db.execute(
            "INSERT OR IGNORE INTO commands (cmd_id, agent_id, name, args, deadline, created) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (cmd_id, agent_id, name, msgpack.packb(args, use_bin_type=True), deadline, time.time()),
        )

    def command_sent(self, cmd_id: str) -> None:
        self.db.execute("UPDATE commands SET sends = sends + 1 WHERE cmd_id = ?", (cmd_id,))

    def result(self, cmd_id: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT data FROM results WHERE cmd_id = ?", (cmd_id,)).fetchone()
        return None if row is None else dict(msgpack.unpackb(row[0], raw=False))

    def answers(self, cmd_id: str) -> int:
        """How many result events named this command (answers from the agent's cache included)."""
        row = self.db.execute("SELECT answers FROM results WHERE cmd_id = ?", (cmd_id,)).fetchone()
        return 0 if row is None else int(row[0])

    # ---- sessions ---------------------------------------------------------------------------------------

    def create_session(self, session_id: str, agent_id: str, data: dict[str, Any]) -> None:
        self.db.execute(
            "INSERT INTO sessions (id, agent_id, created, data) VALUES (?, ?, ?, ?)",
            (session_id, agent_id, time.time(), json.dumps(data)),
        )

    def busy_agents(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT agent_id FROM sessions WHERE deleted IS NULL")}

    def sessions(self, include_deleted: bool = False) -> list[dict[str, Any]]:
        q = "SELECT id, agent_id, created, deleted, telemetry, cfg_version, data FROM sessions"
        if not include_deleted:
            q += " WHERE deleted IS NULL"
        return [
            {
                "id": r[0],
                "agent_id": r[1],
                "created": r[2],
                "deleted": r[3],
                "telemetry": json.loads(r[4]) if r[4] else None,
                "cfg_version": r[5],
                "data": json.loads(r[6]) if r[6] else {},
            }
            for r in self.db.execute(q + " ORDER BY created")
        ]

    def session(self, session_id: str) -> dict[str, Any] | None:
        for s in self.sessions(include_deleted=True):
            if s["id"] == session_id:
                return s
        return None

    def set_telemetry(self, session_id: str, telemetry: dict[str, Any]) -> int:
        self.db.execute(
            "UPDATE sessions SET telemetry = ?, cfg_version = cfg_version + 1 WHERE id = ?",
            (json.dumps(telemetry), session_id),
        )
        row = self.db.execute("SELECT cfg_version FROM sessions WHERE id = ?", (session_id,)).fetchone()
        return int(row[0])

    def delete_session(self, session_id: str) -> None:
        self.db.execute(
            "UPDATE sessions SET deleted = ? WHERE id = ? AND deleted IS NULL", (time.time(), session_id)
        )
