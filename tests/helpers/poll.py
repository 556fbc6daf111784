"""Waiting for what Chromium does a moment after an action returns (a paste, a copy, typed text)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def settles_to(read: Callable[[], Awaitable[T]], expected: T, timeout: float = 5.0) -> T:
    """`read()` again every 20 ms until it gives `expected` or `timeout` passes; returns the last value
    (the caller asserts on it, so a failure shows what was there instead)."""
    deadline = asyncio.get_running_loop().time() + timeout
    value = await read()
    while value != expected and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.02)
        value = await read()
    return value
