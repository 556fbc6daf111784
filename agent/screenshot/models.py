"""The typed request of takeScreenshot."""

from __future__ import annotations

import dataclasses

from .service import Region


@dataclasses.dataclass(frozen=True)
class ScreenshotRequest:
    region: Region | None = None
