"""Readiness of what the agent stands on (the X display, Chromium's DevTools connection) and /health.

X is a socket check, polled. Chromium, once `follow()` ties it to the shared DevTools connection (app.py
does at start), is ready exactly while that websocket is open: a busy browser that answers `/json/version`
slowly (an input flood keeps its IO thread busy for seconds) is not a browser that is down, and the moment
the websocket closes (a crash, a restart) it is not ready. Without a connection to follow (a Readiness on its
own), `/json/version` is polled instead.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import platform
import socket
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from .. import __version__
from ..cdp.connection import CDPConnection
from ..cdp.json_api import ChromiumJson
from ..config import Config

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Dependency:
    ready: bool = False
    since: float | None = None  # monotonic time it last became ready
    detail: str = "not checked yet"
    info: dict[str, Any] = dataclasses.field(default_factory=dict)

    def set(self, ready: bool, detail: str, info: dict[str, Any] | None = None) -> None:
        if ready and not self.ready:
            self.since = time.monotonic()
        self.ready = ready
        self.detail = detail
        if info is not None:
            self.info = info


def x_socket_path(display: str) -> str:
    number = display.split(":")[-1].split(".")[0]
    return f"/tmp/.X11-unix/X{number}"


class Readiness:
    """Polls X and Chromium in the background (fast until ready, then slowly to notice restarts)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.started = time.monotonic()
        self.x = Dependency()
        self.chromium = Dependency()
        self._following: CDPConnection | None = None

    def follow(self, connection: CDPConnection) -> Callable[[], None]:
        """From now on Chromium's readiness is `connection`'s state (no more polling); returns an undo."""

        def on_state(connected: bool, generation: int) -> None:
            if connected:
                browser = connection.browser
                info = {
                    "browser": browser.get("Browser"),
                    "protocol": browser.get("Protocol-Version"),
                    "user_agent": browser.get("User-Agent"),
                }
                self.chromium.set(True, "ok", info)
            else:
                self.chromium.set(False, f"no DevTools connection to Chromium ({connection.last_error})")

        self._following = connection
        remove = connection.on_state(on_state)
        on_state(connection.connected, connection.generation)

        def unfollow() -> None:
            remove()
            self._following = None

        return unfollow

    @property
    def ready(self) -> bool:
        return self.x.ready and self.chromium.ready

    def _check_x(self) -> None:
        path = x_socket_path(self.config.display)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            try:
                sock.connect(path)
            except OSError as exc:
                self.x.set(False, f"X display {self.config.display} not answering: {exc.strerror or exc}")
                return
        self.x.set(True, "ok", {"display": self.config.display, "screen": self.config.screen})

    async def _check_chromium(self, session: aiohttp.ClientSession) -> None:
        url = self.config.chromium_cdp_url + "/json/version"
        try:
            data = await ChromiumJson(self.config.chromium_cdp_url, session).version(timeout=1.0)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            self.chromium.set(False, f"Chromium DevTools at {url} not answering: {exc or type(exc).__name__}")
            return
        self.chromium.set(
            True,
            "ok",
            {
                "browser": data.get("Browser"),
                "protocol": data.get("Protocol-Version"),
                "user_agent": data.get("User-Agent"),
            },
        )

    async def run(self) -> None:
        async with aiohttp.ClientSession() as session:
            while True:
                before = (self.x.ready, self.chromium.ready)
                await asyncio.get_running_loop().run_in_executor(None, self._check_x)
                if self._following is None:
                    await self._check_chromium(session)
                after = (self.x.ready, self.chromium.ready)
                if after != before:
                    log.info("readiness: x=%s chromium=%s", *after)
                await asyncio.sleep(self.config.ready_poll_s if not self.ready else 1.0)

    def report(self) -> dict[str, Any]:
        def dep(d: Dependency) -> dict[str, Any]:
            out: dict[str, Any] = {"ready": d.ready, "detail": d.detail, **d.info}
            if d.since is not None:
                out["ready_for_s"] = round(time.monotonic() - d.since, 3)
            return out

        return {
            "status": "ok" if self.ready else "starting",
            "uptime_s": round(time.monotonic() - self.started, 3),
            "version": __version__,
            "python": platform.python_version(),
            "x": dep(self.x),
            "chromium": {**dep(self.chromium), "cdp_url": f"http://127.0.0.1:{self.config.cdp_port}"},
        }
