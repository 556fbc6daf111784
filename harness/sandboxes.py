"""Private sandboxes (free ports, a display of their own, a temp state dir) for tests and benchmarks."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agent.config import Config
from agent.sandbox import Sandbox


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def free_display() -> str:
    # Start at a random number so that sandboxes started at the same moment rarely pick the same one.
    start = random.randrange(100, 900)
    for number in [*range(start, 1000), *range(90, start)]:
        if not os.path.exists(f"/tmp/.X{number}-lock") and not os.path.exists(f"/tmp/.X11-unix/X{number}"):
            return f":{number}"
    raise RuntimeError("no free X display number")


def private_config(prefix: str, **overrides: Any) -> Config:
    fields: dict[str, Any] = {
        "port": free_port(),
        "cdp_port": free_port(),
        "chromium_cdp_port": free_port(),
        "display": free_display(),
        "state_dir": Path(tempfile.mkdtemp(prefix=prefix)),
        **overrides,
    }
    return Config(**fields)


@contextlib.contextmanager
def private_sandbox(prefix: str, **overrides: Any) -> Iterator[Sandbox]:
    """A running sandbox of its own, ready (X, Chromium, agent, CDP answering), stopped and its state dir
    deleted afterwards."""
    box = Sandbox(private_config(prefix, **overrides))
    try:
        box.start()
        try:
            box.wait_ready(timeout=90)
            yield box
        finally:
            box.stop()
    finally:
        # Every program is gone once stop() returns (supervisord stops whole groups, or is killed with its
        # group): nothing writes there any more.
        shutil.rmtree(box.state_dir, ignore_errors=True)
