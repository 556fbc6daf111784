"""Ending a process group for good: SIGTERM, a grace period, SIGKILL, strays in other groups included.

A child started in its own session has a process group whose id is its pid, so a signal to the group
reaches everything it started, unless a descendant made a session or job-control group of its own (a
shell's `setsid`, an interactive shell's jobs): `descendants` finds those, and they are signalled one by one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable

import psutil

log = logging.getLogger(__name__)


def signal_group(pgid: int, sig: int) -> bool:
    """Signal a whole process group; False when the group is gone."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        log.warning("not allowed to signal process group %d", pgid)
    return True


def descendants(pid: int) -> list[psutil.Process]:
    """Every live descendant of `pid` (blocking: reads /proc)."""
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def signal_tree(pgid: int, sig: int, others: list[psutil.Process]) -> None:
    """Signal the group, and those descendants that left it (their own session or job-control group)."""
    signal_group(pgid, sig)
    for proc in others:
        with contextlib.suppress(psutil.Error, OSError):
            if os.getpgid(proc.pid) != pgid:
                proc.send_signal(sig)  # psutil checks it is still the same process first


def alive(proc: psutil.Process) -> bool:
    """Running and not a zombie (an orphan's zombie waits for init, which may take a while)."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


async def terminate(pgid: int, exited: Callable[[], bool], grace: float) -> None:
    """SIGTERM to the group (whose leader's pid is `pgid`) and its strays; SIGKILL to whatever is left once
    the leader has `exited()` and the strays died, or after `grace` seconds.

    The closing SIGKILL goes to the group whatever happened, so anything forked after the snapshot of
    strays is caught too.
    """
    strays = await asyncio.to_thread(descendants, pgid)
    signal_tree(pgid, signal.SIGTERM, strays)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    while loop.time() < deadline:
        if exited() and not any(alive(p) for p in strays):
            break
        await asyncio.sleep(0.01)
    signal_tree(pgid, signal.SIGKILL, [p for p in strays if alive(p)])
