"""service_crashed: supervisord programs that exit unexpectedly, from the event listener's file.

`listener.py` (a supervisord event listener) appends one JSON line per unexpected exit; this watcher reads
the new lines twice a second and emits one service_crashed each, with the crash's own time as `ts`. Its
cursor (the file's inode and the offset read up to) is kept in a file, so an agent that crashed reports its
own exit (and whatever else happened while it was away) when it is back, and never reports a line twice.
Intentional stops (`supervisorctl stop/restart`, a Chromium restart for extensions) are STOPPED, not EXITED,
and are not reported. When the listener's file moved to FILE.1 the unread rest of that file is read first.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path
from typing import Any

from .service import TelemetryService

log = logging.getLogger(__name__)

POLL_S = 0.5
READ_MAX = 256 * 1024  # per poll: a huge file is caught up with over several polls, never read at once


def events_file(state_dir: Path) -> Path:
    """Where supervisord.conf's [eventlistener:service-events] writes."""
    return state_dir / "logs" / "service-events.jsonl"


class ServiceWatcher:
    def __init__(self, telemetry: TelemetryService, path: Path, cursor: Path) -> None:
        self.telemetry = telemetry
        self.path = path
        self.cursor_path = cursor
        self.reported = 0
        self._last: tuple[int, int] | None = None  # (inode, size) seen at the last poll

    async def run(self) -> None:
        while True:
            try:
                stat = os.stat(self.path)
                seen = (stat.st_ino, stat.st_size)
            except OSError:
                seen = None
            if seen is not None and seen != self._last:
                try:
                    records, more = await asyncio.to_thread(self._read_new)
                except OSError as exc:
                    log.warning("service events: cannot read %s: %s", self.path, exc)
                    records = []
                else:
                    self._last = None if more else seen
                for record in records:
                    self._emit(record)
            await asyncio.sleep(POLL_S)

    def _emit(self, record: dict[str, Any]) -> None:
        data: dict[str, Any] = {"phase": record.get("phase"), "service_name": record.get("service_name")}
        if isinstance(record.get("pid"), int):
            data["pid"] = record["pid"]
        if not isinstance(data["phase"], str) or not isinstance(data["service_name"], str):
            return
        metadata = {k: str(record[k]) for k in ("from_state", "expected") if record.get(k) not in (None, "")}
        ts = record.get("ts")
        self.telemetry.emit(
            "service_crashed",
            data,
            kind="local_process",
            event=str(record.get("event", "supervisord")),
            metadata=metadata or None,
            ts=ts if isinstance(ts, int) else None,
        )
        self.reported += 1

    # --- the file and the cursor (worker thread) -----------------------------------------------------

    def _load_cursor(self) -> tuple[int, int] | None:
        try:
            inode, offset = self.cursor_path.read_text().split()
            return int(inode), int(offset)
        except (OSError, ValueError):
            return None

    def _save_cursor(self, inode: int, offset: int) -> None:
        tmp = self.cursor_path.with_name(self.cursor_path.name + ".tmp")
        tmp.write_text(f"{inode} {offset}\n")
        os.replace(tmp, self.cursor_path)  # never a half-written cursor

    def _read_new(self) -> tuple[list[dict[str, Any]], bool]:
        """The records after the cursor (which moves past them), and whether more are left to read."""
        stat = os.stat(self.path)
        cursor = self._load_cursor()
        records: list[dict[str, Any]] = []
        offset = 0
        if cursor is not None and cursor[0] == stat.st_ino:
            offset = cursor[1] if cursor[1] <= stat.st_size else 0
        elif cursor is not None:
            # The listener moved the file aside: the rest of the old one first.
            old = self.path.with_name(self.path.name + ".1")
            if old.exists():
                with open(old, "rb") as f:
                    if os.fstat(f.fileno()).st_ino == cursor[0]:
                        f.seek(cursor[1])
                        records += _parse(f.read(READ_MAX).rpartition(b"\n")[0])
        with open(self.path, "rb") as f:
            f.seek(offset)
            chunk = f.read(READ_MAX)
        complete = chunk.rpartition(b"\n")[0]  # a line still being written waits for the next poll
        records += _parse(complete)
        end = offset + len(complete) + (1 if complete else 0)
        if cursor != (stat.st_ino, end):
            self._save_cursor(stat.st_ino, end)
        return records, end < stat.st_size


def _parse(data: bytes) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for line in data.split(b"\n"):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out
