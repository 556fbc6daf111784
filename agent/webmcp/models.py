"""Typed requests of the WebMCP operations (spec defaults are filled in by validation, not restated here)."""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class ListToolsRequest:
    exclude_custom: bool


@dataclasses.dataclass(frozen=True)
class InvokeToolRequest:
    tool_ref: str
    input: dict[str, Any]
    timeout_sec: int


@dataclasses.dataclass(frozen=True)
class ListCustomToolsRequest:
    pass


@dataclasses.dataclass(frozen=True)
class AddCustomToolsRequest:
    namespace: str
    source: str
    force_overwrite_namespace: bool


@dataclasses.dataclass(frozen=True)
class DeleteCustomToolRequest:
    id: str
