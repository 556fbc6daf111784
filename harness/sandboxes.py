"""Private sandboxes (free ports, a display of their own, a temp state dir) for tests and benchmarks."""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
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


def chromium_user() -> str:
    """The unprivileged user the sandboxes' Chromium runs as (when they run as root): the image's `browser`
    user where images/install.sh created it, else a uid:gid that no account uses, so that tests need no
    account on the machine (Chromium needs none: its HOME is in the state dir)."""
    try:
        pwd.getpwnam("browser")
        return "browser"
    except KeyError:
        pass
    used_uids = {entry.pw_uid for entry in pwd.getpwall()}
    used_gids = {entry.gr_gid for entry in grp.getgrall()}
    for uid in range(64000, 65000):
        if uid not in used_uids and uid not in used_gids:
            return f"{uid}:{uid}"
    raise RuntimeError("no free uid for Chromium")


def private_config(prefix: str, **overrides: Any) -> Config:
    fields: dict[str, Any] = {
        "port": free_port(),
        "cdp_port": free_port(),
        "chromium_cdp_port": free_port(),
        "display": free_display(),
        "state_dir": Path(tempfile.mkdtemp(prefix=prefix)),
        "chromium_user": chromium_user(),
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
