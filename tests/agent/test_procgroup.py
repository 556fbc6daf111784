"""Ending a process group: SIGTERM, grace, SIGKILL, and strays that left the group."""

from __future__ import annotations

import asyncio
import time

import psutil

from agent import procgroup


async def _wait_for_children(proc: psutil.Process, count: int) -> list[psutil.Process]:
    for _ in range(500):
        children = proc.children(recursive=True)
        if len(children) >= count:
            return children
        await asyncio.sleep(0.01)
    raise AssertionError(f"{proc.pid} never had {count} descendants")


async def test_terminate_ends_the_group_those_ignoring_term_and_strays_in_other_sessions() -> None:
    # The shell ignores TERM; one sleep stays in its group, one leaves it with setsid.
    script = "trap '' TERM; sleep 1201 & setsid sleep 1202 & wait"
    process = await asyncio.create_subprocess_exec("sh", "-c", script, start_new_session=True)
    children = await _wait_for_children(psutil.Process(process.pid), 2)
    started = time.monotonic()
    await procgroup.terminate(process.pid, lambda: process.returncode is not None, grace=0.5)
    await asyncio.wait_for(process.wait(), 5)
    assert time.monotonic() - started < 5  # the grace, then SIGKILL; generous slack
    for _ in range(500):
        if not any(procgroup.alive(child) for child in children):
            break
        await asyncio.sleep(0.01)
    assert not any(procgroup.alive(child) for child in children)


async def test_terminate_does_not_wait_out_the_grace_when_everything_ends_on_term() -> None:
    process = await asyncio.create_subprocess_exec("sleep", "1203", start_new_session=True)
    started = time.monotonic()
    await procgroup.terminate(process.pid, lambda: process.returncode is not None, grace=30.0)
    assert time.monotonic() - started < 10  # far below the 30 s grace
    assert await process.wait() == -15


def test_signalling_a_gone_group_says_so() -> None:
    assert procgroup.signal_group(2**22 + 12345, 0) is False
    assert procgroup.descendants(2**22 + 12345) == []
