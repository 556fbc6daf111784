"""supervisord event listener: one JSON line per unexpected exit of a program, for service_crashed.

supervisord runs it as `[eventlistener:service-events]` (supervisor/supervisord.conf) by path, so it imports
only the standard library. It records PROCESS_STATE_EXITED (a running program ended: supervisord did not
stop it), BACKOFF (it died while starting) and FATAL (supervisord gave up), each as one `write()` of one
line appended to FILE, and answers OK whatever happens: a listener that fails would stall supervisord's
event queue. The agent (`supervised.py`) reads the file from its own cursor, so an exit of the agent itself
is reported once the agent is back. At MAX_BYTES the file moves to FILE.1 (one old file kept).

Usage: listener.py FILE
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, BinaryIO

MAX_BYTES = 1024 * 1024
PHASES = {
    "PROCESS_STATE_EXITED": "running",  # a running program ended (supervisord's own stops are STOPPED)
    "PROCESS_STATE_BACKOFF": "startup",  # it died before startsecs
    "PROCESS_STATE_FATAL": "gave_up",  # supervisord stopped retrying
}


def tokens(line: str) -> dict[str, str]:
    return dict(token.split(":", 1) for token in line.split() if ":" in token)


def record_of(headers: dict[str, str], payload: str, own_name: str | None) -> dict[str, Any] | None:
    """The line to write for one event, or None when it is not a crash."""
    event = headers.get("eventname", "")
    phase = PHASES.get(event)
    fields = tokens(payload.partition("\n")[0])
    name = fields.get("processname")
    if phase is None or not name or name == own_name:
        return None
    record: dict[str, Any] = {
        "ts": time.time_ns() // 1000,
        "event": event,
        "service_name": name,
        "phase": phase,
        "from_state": fields.get("from_state", ""),
    }
    if event == "PROCESS_STATE_EXITED":
        record["pid"] = int(fields.get("pid", "0")) or None
        record["expected"] = fields.get("expected", "")
    return record


def append(path: str, record: dict[str, Any]) -> None:
    try:
        if os.stat(path).st_size >= MAX_BYTES:
            os.replace(path, path + ".1")
    except FileNotFoundError:
        pass
    line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)  # one small O_APPEND write: a reader never sees half a line for long
    finally:
        os.close(fd)


def serve(path: str, stdin: BinaryIO, stdout: BinaryIO) -> None:
    own_name = os.environ.get("SUPERVISOR_PROCESS_NAME")
    while True:
        stdout.write(b"READY\n")
        stdout.flush()
        header = stdin.readline()
        if not header:
            return  # supervisord went away
        headers = tokens(header.decode("utf-8", "replace"))
        payload = stdin.read(int(headers.get("len", "0"))).decode("utf-8", "replace")
        try:
            record = record_of(headers, payload, own_name)
            if record is not None:
                append(path, record)
        except Exception as exc:  # never stall supervisord's queue
            print(f"service-events: {exc!r}", file=sys.stderr, flush=True)
        stdout.write(b"RESULT 2\nOK")
        stdout.flush()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: listener.py FILE")
    serve(sys.argv[1], sys.stdin.buffer, sys.stdout.buffer)
