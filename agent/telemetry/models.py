"""Typed requests of the telemetry operations, the categories, and the configuration model."""

from __future__ import annotations

import dataclasses
from typing import Any

# The categories as SDK 0.131 names them, and which event types belong to each.
CDP_CATEGORIES = ("console", "network", "page", "interaction")
CATEGORIES = (*CDP_CATEGORIES, "control", "connection", "system", "screenshot")
# `monitor` is not configurable: its events flow while any CDP category is on.
ALL_CATEGORIES = (*CATEGORIES, "monitor")

CATEGORY_OF: dict[str, str] = {
    "console_log": "console",
    "console_error": "console",
    "network_request": "network",
    "network_response": "network",
    "network_loading_failed": "network",
    "network_idle": "network",
    "page_navigation": "page",
    "page_dom_content_loaded": "page",
    "page_load": "page",
    "page_tab_opened": "page",
    "page_layout_shift": "page",
    "page_lcp": "page",
    "page_layout_settled": "page",
    "page_navigation_settled": "page",
    "page_crashed": "page",
    "interaction_click": "interaction",
    "interaction_key": "interaction",
    "interaction_scroll_settled": "interaction",
    "monitor_screenshot": "screenshot",
    "monitor_disconnected": "monitor",
    "monitor_reconnected": "monitor",
    "monitor_reconnect_failed": "monitor",
    "monitor_init_failed": "monitor",
    "api_call": "control",
    "cdp_connect": "connection",
    "cdp_disconnect": "connection",
    "service_crashed": "system",
}


def parse_categories(text: str) -> frozenset[str]:
    """Config's `telemetry_categories`: comma-separated names, `all` or `none`/empty."""
    names = {part.strip() for part in text.split(",") if part.strip()}
    if names <= {"none"}:
        return frozenset()
    if "all" in names:
        return frozenset(CATEGORIES)
    unknown = sorted(names - set(CATEGORIES))
    if unknown:
        raise ValueError(
            f"unknown telemetry categories: {', '.join(unknown)} (known: {', '.join(CATEGORIES)})"
        )
    return frozenset(names)


# --- the configuration (BrowserTelemetryConfig) ---------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CategoryConfig:
    enabled: bool | None = None


@dataclasses.dataclass(frozen=True)
class CategoriesConfig:
    console: CategoryConfig | None = None
    network: CategoryConfig | None = None
    page: CategoryConfig | None = None
    interaction: CategoryConfig | None = None
    control: CategoryConfig | None = None
    connection: CategoryConfig | None = None
    system: CategoryConfig | None = None
    screenshot: CategoryConfig | None = None

    def named(self) -> dict[str, bool | None]:
        """{category: enabled} for the categories the request names (enabled omitted means true)."""
        out: dict[str, bool | None] = {}
        for name in CATEGORIES:
            item: CategoryConfig | None = getattr(self, name)
            if item is not None:
                out[name] = True if item.enabled is None else item.enabled
        return out


@dataclasses.dataclass(frozen=True)
class TelemetryConfigRequest:
    """PUT and PATCH /telemetry (a BrowserTelemetryConfig)."""

    browser: CategoriesConfig | None = None


@dataclasses.dataclass(frozen=True)
class TelemetryConfigView:
    enabled: frozenset[str]

    def to_json(self) -> dict[str, Any]:
        return {"browser": {name: {"enabled": name in self.enabled} for name in CATEGORIES}}


@dataclasses.dataclass(frozen=True)
class GetTelemetryConfigRequest:
    pass


# --- streams and pages -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class StreamBrowserTelemetryRequest:
    """GET /telemetry (the spec's: no query; Last-Event-ID is a header the SSE layer reads)."""


@dataclasses.dataclass(frozen=True)
class StreamTelemetryRequest:
    """GET /telemetry/stream (SDK 0.131)."""

    replay: str | None = None
    type: str | None = None


@dataclasses.dataclass(frozen=True)
class ListTelemetryEventsRequest:
    limit: int
    order: str
    since: str | None = None
    until: str | None = None
    category: str | None = None
    type: str | None = None
    offset: int | None = None


def split_list(text: str | None) -> frozenset[str] | None:
    """A comma-separated query value (the SDK sends arrays comma-joined) as a set; None when absent."""
    if text is None:
        return None
    return frozenset(part.strip() for part in text.split(",") if part.strip())


@dataclasses.dataclass(frozen=True)
class EventsPage:
    items: list[dict[str, Any]]
    next_offset: int
    has_more: bool

    def to_json(self) -> list[dict[str, Any]]:
        return self.items
