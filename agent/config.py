"""One frozen Config: defaults < environment (AGENT_*) < command line."""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, get_type_hints


@dataclasses.dataclass(frozen=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 10001
    # The stable CDP address clients use; Chromium itself listens on chromium_cdp_port.
    cdp_port: int = 9222
    chromium_cdp_port: int = 9223
    display: str = ":99"
    screen: str = "1920x1080x24"
    state_dir: Path = Path(".sandbox")
    log_level: str = "info"
    # How long /health waits before calling X or Chromium "not ready" is not a timeout: readiness is polled
    # forever in the background; this is only the poll interval.
    ready_poll_s: float = 0.1
    # Upper bound for one request body (JSON routes); uploads stream and are not bound by it.
    max_json_body: int = 8 * 1024 * 1024

    # --- fs (agent/fs) ---
    # When set, every /fs route is confined to this directory (paths outside it are 403).
    fs_root: str = ""

    # --- process (agent/process) ---

    # --- cdp, curl, playwright (agent/cdp, agent/curl, agent/playwright) ---

    @property
    def screen_size(self) -> tuple[int, int]:
        width, height, *_ = self.screen.split("x")
        return int(width), int(height)

    @property
    def chromium_cdp_url(self) -> str:
        return f"http://127.0.0.1:{self.chromium_cdp_port}"


def _field_types() -> dict[str, Any]:
    return get_type_hints(Config)


def _convert(name: str, raw: str) -> Any:
    kind = _field_types()[name]
    if kind is bool:
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(f"{name}: not a boolean: {raw!r}")
    if kind is int:
        return int(raw)
    if kind is float:
        return float(raw)
    if kind is Path:
        return Path(raw)
    return raw


def from_env(env: Mapping[str, str]) -> dict[str, Any]:
    """Fields set by AGENT_<NAME> variables (DISPLAY is honoured as the X display too)."""
    values: dict[str, Any] = {}
    if env.get("DISPLAY"):
        values["display"] = env["DISPLAY"]
    for field in dataclasses.fields(Config):
        key = "AGENT_" + field.name.upper()
        if key in env:
            values[field.name] = _convert(field.name, env[key])
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One --option per Config field; unset options leave lower layers alone."""
    for field in dataclasses.fields(Config):
        parser.add_argument("--" + field.name.replace("_", "-"), dest=field.name, default=None)


def load(args: argparse.Namespace | None = None, env: Mapping[str, str] | None = None) -> Config:
    values = from_env(os.environ if env is None else env)
    if args is not None:
        for field in dataclasses.fields(Config):
            raw = getattr(args, field.name, None)
            if raw is not None:
                values[field.name] = _convert(field.name, raw)
    return Config(**values)


def env_for(config: Config, names: Sequence[str] | None = None) -> dict[str, str]:
    """The AGENT_* environment that reproduces `config` in a child process."""
    out: dict[str, str] = {}
    for field in dataclasses.fields(Config):
        if names is None or field.name in names:
            out["AGENT_" + field.name.upper()] = str(getattr(config, field.name))
    return out
