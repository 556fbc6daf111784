"""Typed requests of the Playwright operations: the spec's fields, validated and defaulted by the middleware.

Fields with a spec `default` (timeout_sec 60, close_tab true) have no default here: validation always fills
them in.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class ExecutePlaywrightRequest:
    code: str
    timeout_sec: int
    executor: str | None = None


@dataclasses.dataclass(frozen=True)
class ListPlaywrightExecutorsRequest:
    pass


@dataclasses.dataclass(frozen=True)
class DeletePlaywrightExecutorRequest:
    name: str
    close_tab: bool


@dataclasses.dataclass(frozen=True)
class ReplRequest:
    code: str
    reset: bool
    timeout_sec: int
