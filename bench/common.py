"""Shared benchmark plumbing: a private sandbox, timing, and the report table."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from agent.sandbox import Sandbox
from harness.sandboxes import private_sandbox


def sandbox(**overrides: Any) -> contextlib.AbstractContextManager[Sandbox]:
    """A sandbox of its own (free ports and display), so a running `make run` is not disturbed."""
    return private_sandbox("agent-bench-", **overrides)


@dataclass
class Timing:
    name: str
    samples_ms: list[float]

    @property
    def p50(self) -> float:
        return statistics.median(self.samples_ms)

    @property
    def p90(self) -> float:
        ordered = sorted(self.samples_ms)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]


async def measure(
    name: str, runs: int, action: Callable[[], Awaitable[object]], warmup: int = 3, pause_s: float = 0.0
) -> Timing:
    """`runs` timed calls of `action` after `warmup` untimed ones; `pause_s`: an untimed wait before each."""
    for _ in range(warmup):
        await action()
    samples = []
    for _ in range(runs):
        if pause_s:
            await asyncio.sleep(pause_s)
        start = time.perf_counter()
        await action()
        samples.append((time.perf_counter() - start) * 1000)
    return Timing(name, samples)


def report(title: str, ours: Timing, peers: list[Timing], target: str = "") -> None:
    print(f"\n## {title}")
    print(f"{'way':58} {'p50 ms':>9} {'p90 ms':>9} {'ratio':>8}")
    for timing in [ours, *peers]:
        ratio = timing.p50 / ours.p50 if ours.p50 else float("inf")
        label = "1.0 (ours)" if timing is ours else f"{ratio:.1f}x"
        print(f"{timing.name:58} {timing.p50:9.2f} {timing.p90:9.2f} {label:>8}")
    if target:
        print(f"target: {target}")
