"""The CDP monitor: auto-attached (flattened) to every page, iframe and worker on the shared connection.

It runs only while a CDP category (console, network, page, interaction) is on; with none on it holds no
subscription and enables no domain. Running, it calls `Target.setAutoAttach` (flatten,
waitForDebuggerOnStart) on the browser, which attaches it to the targets that exist and to each one Chromium
opens later, and again on each attached target (OOPIF iframes, workers). Every new session gets the domains
its categories need, then `Runtime.runIfWaitingForDebugger`. The agent's own hidden targets (/curl's) are
resumed and detached at once.

CDP events reach it through a synchronous callback that only puts them into a bounded queue: when the
collector falls behind (a console.log flood) the newest events are dropped and counted, never queued without
bound. One consumer task turns them into telemetry events. On a Chromium restart it emits
monitor_disconnected, then sets itself up again and emits monitor_reconnected (or monitor_reconnect_failed
when Chromium stays away longer than the configured time, and monitor_init_failed when a set-up step fails).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from ..cdp.connection import ALL_SESSIONS, CDPConnection, CDPError, Subscription
from ..services import Services
from ..tasks import TaskGroup
from .interaction import BINDING, SCRIPT
from .service import TelemetryService

log = logging.getLogger(__name__)

# BrowserTargetType has no iframe or worker: those count as "other".
_TARGET_TYPES = {"page": "page", "background_page": "background_page", "service_worker": "service_worker"}
_TARGET_TYPES["shared_worker"] = "shared_worker"
_MONITORED = frozenset({"page", "iframe", "worker", "shared_worker", "service_worker", "background_page"})
STRUCTURED_BODY_BYTES = 8 * 1024
TEXT_BODY_BYTES = 4 * 1024
NETWORK_IDLE_S = 0.5
LAYOUT_SETTLED_S = 1.0
SCREENSHOT_MIN_GAP_S = 2.0
MAX_INFLIGHT = 4096


def target_type(cdp_type: str) -> str:
    return _TARGET_TYPES.get(cdp_type, "other")


def is_structured(mime: str) -> bool:
    return "json" in mime or "xml" in mime or mime == "application/x-www-form-urlencoded"


def is_text(mime: str) -> bool:
    return (
        mime.startswith("text/")
        or is_structured(mime)
        or "javascript" in mime
        or mime in ("application/ecmascript", "image/svg+xml", "application/graphql")
    )


def cut_utf8(data: bytes, limit: int) -> tuple[str, bool]:
    """`data` as text, cut to at most `limit` bytes without splitting a character."""
    if len(data) <= limit:
        return data.decode("utf-8", errors="replace"), False
    return data[:limit].decode("utf-8", errors="ignore"), True


def remote_to_str(arg: Mapping[str, Any]) -> str:
    """A console argument (CDP RemoteObject) as the console would print it."""
    if "value" in arg:
        value = arg["value"]
        if isinstance(value, str):
            return value
        if isinstance(value, bool):
            return "true" if value else "false"
        if value is None:
            return "null"
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return json.dumps(value) if isinstance(value, dict | list) else str(value)
    if "unserializableValue" in arg:
        return str(arg["unserializableValue"])
    if "description" in arg:
        return str(arg["description"])
    return str(arg.get("type", "undefined"))


@dataclasses.dataclass
class _Request:
    method: str
    url: str
    resource_type: str | None
    frame_id: str | None
    loader_id: str | None
    status: int | None = None
    status_text: str | None = None
    headers: dict[str, Any] | None = None
    mime_type: str | None = None


@dataclasses.dataclass
class _Target:
    session_id: str
    target_id: str
    type: str
    url: str
    frame_id: str | None = None  # the main frame
    loader_id: str | None = None
    nav_seq: int = 0
    dcl_nav: int = -1  # nav_seq of the last DOMContentLoaded
    loaded: bool = False
    settled_nav: int = -1
    settle_timer: asyncio.TimerHandle | None = None
    idle_timer: asyncio.TimerHandle | None = None
    inflight: dict[str, _Request] = dataclasses.field(default_factory=dict)

    def context(self, **extra: Any) -> dict[str, Any]:
        out: dict[str, Any] = {
            "session_id": self.session_id,
            "target_id": self.target_id,
            "target_type": target_type(self.type),
        }
        if self.frame_id:
            out["frame_id"] = self.frame_id
        if self.loader_id:
            out["loader_id"] = self.loader_id
        if self.url:
            out["url"] = self.url
        out["nav_seq"] = self.nav_seq
        out.update({k: v for k, v in extra.items() if v is not None})
        return out

    def cancel_timers(self) -> None:
        for timer in (self.settle_timer, self.idle_timer):
            if timer is not None:
                timer.cancel()


class Monitor:
    def __init__(
        self,
        telemetry: TelemetryService,
        cdp: CDPConnection,
        services: Services,
        *,
        queue_events: int = 10_000,
        reconnect_timeout_s: float = 30.0,
        screenshot_interval_s: float = 0.0,
    ) -> None:
        self.telemetry = telemetry
        self.cdp = cdp
        self.services = services
        self.queue_events = queue_events
        self.reconnect_timeout_s = reconnect_timeout_s
        self.screenshot_interval_s = screenshot_interval_s
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=max(1, queue_events))
        self.dropped = 0  # CDP events the collector had no room for
        self._tasks = TaskGroup("telemetry-monitor")
        self._subscription: Subscription | None = None
        self._remove_state: Any = None
        self._remove_config = telemetry.on_config(self._on_config)
        self._targets: dict[str, _Target] = {}  # by session id
        self._categories: frozenset[str] = frozenset()
        self._generation = 0  # the connection generation the monitor is set up on
        self._disconnected_at: float | None = None
        self._reconnect_timer: asyncio.TimerHandle | None = None
        self._last_screenshot = 0.0
        self._screenshot_pending = False
        self._running = False
        self._setup_task: asyncio.Task[None] | None = None
        self._winding: asyncio.Task[None] | None = None  # the last _stop()'s clean-up on the browser

    # --- starting and stopping ----------------------------------------------------------------------------

    def start(self) -> None:
        self._on_config(self.telemetry.enabled)

    def status(self) -> dict[str, Any]:
        return {
            "running": self._running,
            "targets": len(self._targets),
            "queued_cdp_events": self._queue.qsize(),
            "dropped_cdp_events": self.dropped,
        }

    def _on_config(self, enabled: frozenset[str]) -> None:
        wanted = self.telemetry.cdp_enabled
        if wanted == self._categories and self._running == bool(wanted):
            return
        self._categories = wanted
        if self._running:
            self._stop()
        if wanted:
            self._run()

    def _run(self) -> None:
        self._running = True
        self._subscription = self.cdp.subscribe(self._enqueue, session_id=ALL_SESSIONS)
        self._remove_state = self.cdp.on_state(self._on_state)
        self._tasks.spawn(self._consume(), name="consume")
        if self.screenshot_interval_s > 0:
            self._tasks.spawn(self._periodic_screenshots(), name="screenshots")
        if self.cdp.connected:
            self._begin_setup(self.cdp.generation)

    def _stop(self) -> None:
        self._running = False
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None
        if self._remove_state is not None:
            self._remove_state()
            self._remove_state = None
        if self._reconnect_timer is not None:
            self._reconnect_timer.cancel()
        for target in self._targets.values():
            target.cancel_timers()
        sessions = list(self._targets)
        self._targets.clear()
        while not self._queue.empty():
            self._queue.get_nowait()
        old = self._tasks
        self._tasks = TaskGroup("telemetry-monitor")
        generation = self._generation

        async def wind_down() -> None:
            await old.close()
            # Leave the browser as it was: no auto-attach, no sessions of ours (waiting targets resumed).
            if self.cdp.connected and self.cdp.generation == generation:
                with contextlib.suppress(CDPError, TimeoutError):
                    await self.cdp.send(
                        "Target.setAutoAttach",
                        {"autoAttach": False, "waitForDebuggerOnStart": False, "flatten": True},
                        timeout=5,
                    )
                for session_id in sessions:
                    with contextlib.suppress(CDPError, TimeoutError):
                        await self.cdp.send("Target.detachFromTarget", {"sessionId": session_id}, timeout=5)

        self._winding = asyncio.get_running_loop().create_task(wind_down(), name="telemetry-monitor:stop")

    async def close(self) -> None:
        self._remove_config()
        if self._running:
            self._stop()
        winding = self._winding
        if winding is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(winding, 10)
        await self._tasks.close()

    # --- the connection -------------------------------------------------------------------------------------

    def _on_state(self, connected: bool, generation: int) -> None:
        if not connected:
            if self._disconnected_at is None:
                self._disconnected_at = time.monotonic()
                for target in self._targets.values():
                    target.cancel_timers()
                self._targets.clear()
                self.telemetry.emit(
                    "monitor_disconnected", {"reason": "chrome_restarted"}, event="websocket_closed"
                )
                loop = asyncio.get_running_loop()
                self._reconnect_timer = loop.call_later(self.reconnect_timeout_s, self._reconnect_failed)
            return
        self._begin_setup(generation)

    def _reconnect_failed(self) -> None:
        self.telemetry.emit("monitor_reconnect_failed", {"reason": "reconnect_exhausted"}, event="reconnect")

    def _begin_setup(self, generation: int) -> None:
        self._tasks.spawn(self._setup(generation), name="setup")

    async def _setup(self, generation: int) -> None:
        winding = self._winding
        if winding is not None and not winding.done():
            # A configuration change stops and starts the monitor at once: the old run's clean-up
            # (auto-attach off, its sessions detached) must reach Chromium before this run's auto-attach,
            # or it undoes it and the monitor watches nothing from then on.
            await asyncio.wait({winding})
        self._generation = generation
        try:
            await self.cdp.send(
                "Target.setAutoAttach",
                {"autoAttach": True, "waitForDebuggerOnStart": True, "flatten": True},
            )
        except CDPError as exc:
            if self.cdp.connected and self.cdp.generation == generation:
                log.warning("telemetry monitor set-up failed: %s", exc)
                self.telemetry.emit("monitor_init_failed", {"step": "Target.setAutoAttach"}, event=exc.method)
            return
        if self._disconnected_at is not None:
            took = time.monotonic() - self._disconnected_at
            self._disconnected_at = None
            if self._reconnect_timer is not None:
                self._reconnect_timer.cancel()
            self.telemetry.emit(
                "monitor_reconnected",
                {"reconnect_duration_ms": int(took * 1000)},
                event="Target.setAutoAttach",
            )

    # --- the queue --------------------------------------------------------------------------------------

    def _enqueue(self, event: dict[str, Any]) -> None:
        # Much of what Chromium sends (ExtraInfo, dataReceived, priority changes, frame start/stop)
        # has no handler: drop it here, so it costs no queue round trip and takes no room in a flood.
        if event.get("method") not in _WANTED:
            return
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1

    async def _consume(self) -> None:
        while True:
            event = await self._queue.get()
            try:
                self._handle(event)
            except Exception:
                log.exception("telemetry: could not handle %s", event.get("method"))

    def _spawn(self, coro: Any, name: str) -> None:
        self._tasks.spawn(coro, name=name)

    # --- events -----------------------------------------------------------------------------------------

    def _handle(self, event: dict[str, Any]) -> None:
        method: str = event.get("method", "")
        params: dict[str, Any] = event.get("params", {})
        session_id = event.get("sessionId")
        if method == "Target.attachedToTarget":
            self._attached(session_id, params)
            return
        if method == "Target.detachedFromTarget":
            gone = self._targets.pop(params.get("sessionId", ""), None)
            if gone is not None:
                gone.cancel_timers()
            return
        if session_id is None:
            return
        target = self._targets.get(session_id)
        if target is None:
            return
        handler = _HANDLERS.get(method)
        if handler is not None:
            handler(self, target, method, params)

    def _attached(self, parent_session: str | None, params: dict[str, Any]) -> None:
        info = params.get("targetInfo", {})
        session_id: str = params.get("sessionId", "")
        target_id: str = info.get("targetId", "")
        kind: str = info.get("type", "other")
        if parent_session is not None and parent_session not in self._targets:
            # A child of a session that is not ours (a /curl target, another consumer's session).
            return
        if any(t.target_id == target_id for t in self._targets.values()):
            return  # another consumer's session on a target the monitor already watches
        if kind not in _MONITORED or target_id in self._hidden_targets():
            # Not ours to watch; resume it if auto-attach paused it, and leave the session be (it may be
            # the session its owner just attached: detaching it would break that owner).
            if params.get("waitingForDebugger"):
                self._spawn(self._release(session_id), name="release")
            return
        target = _Target(session_id, target_id, kind, info.get("url", ""))
        self._targets[session_id] = target
        if kind == "page" and parent_session is None:
            data = {"target_id": target_id, "target_type": "page", "url": info.get("url", "")}
            if info.get("title"):
                data["title"] = info["title"]
            if info.get("openerId"):
                data["opener_id"] = info["openerId"]
            self.telemetry.emit("page_tab_opened", data, event="Target.attachedToTarget")
        self._spawn(self._prepare(target, params.get("waitingForDebugger", False)), name="prepare")

    def _hidden_targets(self) -> set[str]:
        from ..curl import CURL_KEY  # lazily: curl may start after telemetry, or not at all

        if CURL_KEY in self.services:
            return self.services.get(CURL_KEY).target_ids
        return set()

    async def _release(self, session_id: str) -> None:
        with contextlib.suppress(CDPError, TimeoutError):
            await self.cdp.send("Runtime.runIfWaitingForDebugger", session_id=session_id, timeout=5)

    async def _prepare(self, target: _Target, waiting: bool) -> None:
        categories = self._categories
        sid = target.session_id
        page_like = target.type in ("page", "iframe")
        calls: list[tuple[str, dict[str, Any]]] = []
        if "console" in categories or "interaction" in categories:
            calls.append(("Runtime.enable", {}))
        if "network" in categories:
            calls.append(("Network.enable", {"maxPostDataSize": 64 * 1024}))
        if page_like:  # frameNavigated keeps every event's url, loader and nav_seq right
            calls.append(("Page.enable", {}))
        if page_like and "page" in categories:
            calls.append(("Inspector.enable", {}))
            calls.append(
                ("PerformanceTimeline.enable", {"eventTypes": ["layout-shift", "largest-contentful-paint"]})
            )
        if page_like and "interaction" in categories:
            calls.append(("Runtime.addBinding", {"name": BINDING}))
            calls.append(("Page.addScriptToEvaluateOnNewDocument", {"source": SCRIPT}))
        if target.type in ("page", "iframe"):
            calls.append(
                (
                    "Target.setAutoAttach",
                    {"autoAttach": True, "waitForDebuggerOnStart": True, "flatten": True},
                )
            )
        for method, params in calls:
            try:
                await self.cdp.send(method, params, session_id=sid, timeout=10)
            except CDPError as exc:
                if not self.cdp.connected or sid not in self._targets:
                    return
                log.info("telemetry: %s failed on %s: %s", method, target.type, exc.message)
        if page_like and "interaction" in categories:
            # Documents that were already there when the monitor attached get the script too.
            with contextlib.suppress(CDPError, TimeoutError):
                await self.cdp.send("Runtime.evaluate", {"expression": SCRIPT}, session_id=sid, timeout=10)
        if waiting:
            with contextlib.suppress(CDPError, TimeoutError):
                await self.cdp.send("Runtime.runIfWaitingForDebugger", session_id=sid, timeout=10)
        if page_like:
            with contextlib.suppress(CDPError, TimeoutError):
                await self._catch_up(target)

    async def _catch_up(self, target: _Target) -> None:
        """A document that was there before the monitor attached (an open tab; a new tab whose navigation
        the browser ran before the renderer could be paused): its navigation, DOMContentLoaded and load as
        they stand now, so that its events carry a url, loader and nav_seq and it can settle."""
        if target.nav_seq > 0:
            return
        tree = await self.cdp.send("Page.getFrameTree", session_id=target.session_id, timeout=10)
        frame = tree.get("frameTree", {}).get("frame", {})
        if target.nav_seq > 0 or not frame or target.session_id not in self._targets:
            return
        self._navigated(target, "Page.getFrameTree", {"frame": frame})
        state = await self.cdp.send(
            "Runtime.evaluate",
            {"expression": "document.readyState", "returnByValue": True},
            session_id=target.session_id,
            timeout=10,
        )
        ready = state.get("result", {}).get("value")
        if target.nav_seq != 1:
            return  # a real navigation came meanwhile
        if ready in ("interactive", "complete"):
            self._dom_content(target, "Runtime.evaluate", {})
        if ready == "complete":
            self._load(target, "Runtime.evaluate", {})

    # --- console ----------------------------------------------------------------------------------------

    def _console(self, target: _Target, method: str, params: dict[str, Any]) -> None:
        level = params.get("type", "log")
        args = [remote_to_str(arg) for arg in params.get("args", [])]
        data = target.context(level=level, text=args[0] if args else "", args=args)
        if params.get("stackTrace", {}).get("callFrames"):
            data["stack_trace"] = params["stackTrace"]
        self.telemetry.emit("console_error" if level == "error" else "console_log", data, event=method)

    def _exception(self, target: _Target, method: str, params: dict[str, Any]) -> None:
        details = params.get("exceptionDetails", {})
        exception = details.get("exception", {})
        text = exception.get("description") or details.get("text", "")
        frames = details.get("stackTrace", {}).get("callFrames") or [{}]
        data = target.context(
            text=text,
            line=details.get("lineNumber"),
            column=details.get("columnNumber"),
            source_url=details.get("url") or frames[0].get("url") or None,
        )
        if details.get("stackTrace", {}).get("callFrames"):
            data["stack_trace"] = details["stackTrace"]
        self.telemetry.emit("console_error", data, event=method)
        self._screenshot_soon()

    # --- network ----------------------------------------------------------------------------------------

    def _request(self, target: _Target, method: str, params: dict[str, Any]) -> None:
        request = params.get("request", {})
        request_id = params.get("requestId", "")
        redirect = params.get("redirectResponse")
        previous = target.inflight.get(request_id)
        if target.idle_timer is not None:
            target.idle_timer.cancel()
            target.idle_timer = None
        if len(target.inflight) >= MAX_INFLIGHT:
            target.inflight.pop(next(iter(target.inflight)))
        target.inflight[request_id] = _Request(
            request.get("method", "GET"),
            request.get("url", ""),
            params.get("type"),
            params.get("frameId"),
            params.get("loaderId"),
        )
        data = target.context(
            url=request.get("url"),
            frame_id=params.get("frameId"),
            loader_id=params.get("loaderId"),
            request_id=request_id,
            method=request.get("method"),
            document_url=params.get("documentURL"),
            headers=request.get("headers", {}),
            resource_type=params.get("type"),
            initiator_type=params.get("initiator", {}).get("type"),
            post_data=request.get("postData"),
        )
        if redirect is not None:
            data["is_redirect"] = True
            data["redirect_url"] = redirect.get("url") or (previous.url if previous else None)
        self.telemetry.emit("network_request", data, event=method)

    def _response(self, target: _Target, method: str, params: dict[str, Any]) -> None:
        request = target.inflight.get(params.get("requestId", ""))
        if request is None:
            return
        response = params.get("response", {})
        request.status = response.get("status")
        request.status_text = response.get("statusText")
        request.headers = response.get("headers", {})
        request.mime_type = response.get("mimeType")

    def _finished(self, target: _Target, method: str, params: dict[str, Any]) -> None:
        request_id = params.get("requestId", "")
        request = target.inflight.pop(request_id, None)
        self._maybe_idle(target)
        if request is None:
            return
        mime = (request.mime_type or "").lower()
        if is_text(mime) and request.status is not None:
            self._spawn(self._finished_with_body(target, request_id, request, method), name="body")
        else:
            self._emit_response(target, request_id, request, method, None, False)

    async def _finished_with_body(
        self, target: _Target, request_id: str, request: _Request, method: str
    ) -> None:
        body: str | None = None
        cut = False
        try:
            reply = await self.cdp.send(
                "Network.getResponseBody", {"requestId": request_id}, session_id=target.session_id, timeout=5
            )
            raw = reply.get("body", "")
            data = (
                base64.b64decode(raw) if reply.get("base64Encoded") else raw.encode("utf-8", "surrogatepass")
            )
            limit = (
                STRUCTURED_BODY_BYTES if is_structured((request.mime_type or "").lower()) else TEXT_BODY_BYTES
            )
            body, cut = cut_utf8(data, limit)
        except (CDPError, TimeoutError, ValueError):
            pass
        self._emit_response(target, request_id, request, method, body, cut)

    def _emit_response(
        self, target: _Target, request_id: str, request: _Request, method: str, body: str | None, cut: bool
    ) -> None:
        data = target.context(
            url=request.url,
            frame_id=request.frame_id,
            loader_id=request.loader_id,
            request_id=request_id,
            method=request.method,
            status=request.status,
            status_text=request.status_text,
            headers=request.headers,
            mime_type=request.mime_type,
            resource_type=request.resource_type,
            body=body,
        )
        self.telemetry.emit("network_response", data, event=method, truncated=cut)

    def _failed(self, target: _Target, method: str, params: dict[str, Any]) -> None:
        request_id = params.get("requestId", "")
        request = target.inflight.pop(request_id, None)
        extra: dict[str, Any] = {
            "request_id": request_id,
            "error_text": params.get("errorText"),
            "canceled": params.get("canceled", False),
        }
        if request is not None:
            extra.update(url=request.url, frame_id=request.frame_id, loader_id=request.loader_id)
            extra["resource_type"] = request.resource_type or params.get("type")
            data = target.context(**extra)
        else:
            # In flight before the monitor attached: the context is partial (no url, frame, loader).
            data = {k: v for k, v in target.context().items() if k not in ("url", "frame_id", "loader_id")}
            data.update({k: v for k, v in extra.items() if v is not None})
        self.telemetry.emit("network_loading_failed", data, event=method)
        self._maybe_idle(target)

    def _maybe_idle(self, target: _Target) -> None:
        if target.inflight or target.idle_timer is not None:
            return
        loop = asyncio.get_running_loop()

        def fire() -> None:
            target.idle_timer = None
            if not target.inflight and target.session_id in self._targets:
                self.telemetry.emit("network_idle", target.context(), event="Network.loadingFinished")

        target.idle_timer = loop.call_later(NETWORK_IDLE_S, fire)

    # --- page -------------------------------------------------------------------------------------------

    def _navigated(self, target: _Target, method: str, params: dict[str, Any]) -> None:
        frame = params.get("frame", {})
        parent = frame.get("parentId")
        data: dict[str, Any] = {
            "url": frame.get("url", "") + frame.get("urlFragment", ""),
            "frame_id": frame.get("id"),
            "loader_id": frame.get("loaderId"),
            "session_id": target.session_id,
            "target_id": target.target_id,
            "target_type": target_type(target.type),
        }
        if parent:
            data["parent_frame_id"] = parent
        else:
            target.nav_seq += 1
            target.frame_id = frame.get("id")
            target.loader_id = frame.get("loaderId")
            target.url = data["url"]
            target.loaded = False
            if target.settle_timer is not None:
                target.settle_timer.cancel()
                target.settle_timer = None
        self.telemetry.emit("page_navigation", {k: v for k, v in data.items() if v is not None}, event=method)

    def _dom_content(self, target: _Target, method: str, params: dict[str, Any]) -> None:
        target.dcl_nav = target.nav_seq
        self.telemetry.emit(
            "page_dom_content_loaded", target.context(cdp_timestamp=params.get("timestamp")), event=method
        )
        self._maybe_navigation_settled(target)

    def _load(self, target: _Target, method: str, params: dict[str, Any]) -> None:
        self.telemetry.emit("page_load", target.context(cdp_timestamp=params.get("timestamp")), event=method)
        target.loaded = True
        self._restart_settle(target)
        if target.type == "page":
            self._screenshot_soon()

    def _restart_settle(self, target: _Target) -> None:
        if target.settle_timer is not None:
            target.settle_timer.cancel()
        nav = target.nav_seq

        def fire() -> None:
            target.settle_timer = None
            if target.nav_seq != nav or target.session_id not in self._targets:
                return
            target.settled_nav = nav
            self.telemetry.emit("page_layout_settled", target.context(), event="PerformanceTimeline")
            self._maybe_navigation_settled(target)

        target.settle_timer = asyncio.get_running_loop().call_later(LAYOUT_SETTLED_S, fire)

    def _maybe_navigation_settled(self, target: _Target) -> None:
        if target.dcl_nav == target.nav_seq and target.settled_nav == target.nav_seq:
            target.settled_nav = -2  # once per navigation
            self.telemetry.emit("page_navigation_settled", target.context(), event="PerformanceTimeline")

    def _timeline(self, target: _Target, method: str, params: dict[str, Any]) -> None:
        entry = params.get("event", {})
        kind = entry.get("type")
        common: dict[str, Any] = {
            "source_frame_id": entry.get("frameId"),
            "time": entry.get("time", 0) * 1000,
        }
        if kind == "layout-shift":
            details = entry.get("layoutShiftDetails", {})
            data = target.context(
                **common,
                duration=entry.get("duration", 0) * 1000,
                layout_shift_details={
                    "value": details.get("value", 0),
                    "had_recent_input": bool(details.get("hadRecentInput", False)),
                },
            )
            self.telemetry.emit("page_layout_shift", data, event=method)
            if target.loaded:
                self._restart_settle(target)
        elif kind == "largest-contentful-paint":
            details = entry.get("lcpDetails", {})
            lcp: dict[str, Any] = {
                "render_time": details.get("renderTime", 0) * 1000,
                "load_time": details.get("loadTime", 0) * 1000,
                "size": details.get("size", 0),
            }
            if details.get("elementId"):
                lcp["element_id"] = details["elementId"]
            if details.get("url"):
                lcp["url"] = details["url"]
            if details.get("nodeId") is not None:
                lcp["node_id"] = details["nodeId"]
            self.telemetry.emit("page_lcp", target.context(**common, lcp_details=lcp), event=method)

    def _crashed(self, target: _Target, method: str, params: dict[str, Any]) -> None:
        data = {"target_id": target.target_id, "target_type": target.type, "url": target.url}
        metadata = {"session_id": target.session_id, "target_id": target.target_id}
        self.telemetry.emit("page_crashed", data, event=method, metadata=metadata)

    # --- interaction ------------------------------------------------------------------------------------

    def _binding(self, target: _Target, method: str, params: dict[str, Any]) -> None:
        if params.get("name") != BINDING:
            return
        try:
            payload = json.loads(params.get("payload", ""))
        except ValueError:
            return
        if not isinstance(payload, dict):
            return
        kind = payload.pop("kind", None)
        fields = _INTERACTION_FIELDS.get(kind) if isinstance(kind, str) else None
        if fields is None:
            return
        extra = {name: payload[name] for name in fields if name in payload}
        self.telemetry.emit(f"interaction_{kind}", target.context(**extra), event=method)

    # --- screenshots ------------------------------------------------------------------------------------

    def _screenshot_soon(self) -> None:
        if not self.telemetry.is_on("screenshot") or self._screenshot_pending:
            return
        self._screenshot_pending = True
        self._spawn(self._screenshot(), name="screenshot")

    async def _screenshot(self) -> None:
        from ..screenshot import SCREENSHOT_KEY  # lazily: absent in the headless variant

        try:
            wait = self._last_screenshot + SCREENSHOT_MIN_GAP_S - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if SCREENSHOT_KEY not in self.services or not self.telemetry.is_on("screenshot"):
                return
            self._last_screenshot = time.monotonic()
            image = await self.services.get(SCREENSHOT_KEY).capture()
        except Exception as exc:
            log.info("telemetry screenshot failed: %s", exc)
            return
        finally:
            self._screenshot_pending = False
        png = base64.b64encode(image.data).decode("ascii")
        self.telemetry.emit("monitor_screenshot", {"png": png}, kind="local_process", event="screenshot")

    async def _periodic_screenshots(self) -> None:
        while True:
            await asyncio.sleep(self.screenshot_interval_s)
            self._screenshot_soon()


_INTERACTION_FIELDS: dict[str, tuple[str, ...]] = {
    "click": ("x", "y", "selector", "tag", "text"),
    "key": ("key", "selector", "tag"),
    "scroll_settled": ("from_x", "from_y", "to_x", "to_y", "target_selector"),
}

_HANDLERS: dict[str, Any] = {
    "Runtime.consoleAPICalled": Monitor._console,
    "Runtime.exceptionThrown": Monitor._exception,
    "Runtime.bindingCalled": Monitor._binding,
    "Network.requestWillBeSent": Monitor._request,
    "Network.responseReceived": Monitor._response,
    "Network.loadingFinished": Monitor._finished,
    "Network.loadingFailed": Monitor._failed,
    "Page.frameNavigated": Monitor._navigated,
    "Page.domContentEventFired": Monitor._dom_content,
    "Page.loadEventFired": Monitor._load,
    "PerformanceTimeline.timelineEventAdded": Monitor._timeline,
    "Inspector.targetCrashed": Monitor._crashed,
}

_WANTED = frozenset({*_HANDLERS, "Target.attachedToTarget", "Target.detachedFromTarget"})
