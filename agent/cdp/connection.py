"""One DevTools connection to Chromium's browser endpoint, shared by every feature of the agent.

`CDPConnection.run()` (an owned task) keeps a websocket to the browser target open: it discovers the
endpoint through `/json/version`, connects with flattened sessions in mind (every message may carry a
`sessionId`), and when Chromium goes away (a crash, `supervisorctl restart chromium`) it fails what is in
flight with `CDPDisconnected`, tells its listeners, and connects again as soon as Chromium answers.

Consumers:
- `send(method, params, session_id=…)` → the result, or `CDPError` (protocol error), `CDPDisconnected`.
- `subscribe(callback, session_id=…)` → every event of one session (or of the browser, `None`, or of all
  sessions, `ALL_SESSIONS`); callbacks are synchronous and must not block (put into a queue).
- `on_state(callback)` → (connected, generation) whenever the connection comes or goes; the generation
  grows with every new connection, so a consumer can tell its sessions belong to a dead browser.
- `attach(target_id)` → a `Session` (flatten) with its own `send` and event queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Final

import aiohttp
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from .json_api import ChromiumJson

log = logging.getLogger(__name__)

Event = dict[str, Any]
EventCallback = Callable[[Event], None]
StateCallback = Callable[[bool, int], None]


class _AllSessions:
    def __repr__(self) -> str:
        return "ALL_SESSIONS"


ALL_SESSIONS: Final = _AllSessions()
SessionKey = str | None | _AllSessions


class CDPError(Exception):
    """Chromium answered a command with an error."""

    def __init__(self, method: str, message: str, code: int | None = None) -> None:
        super().__init__(f"{method}: {message}")
        self.method = method
        self.message = message
        self.code = code


class CDPDisconnected(CDPError):
    """There is no connection to Chromium (not up yet, restarting), or it went away mid-call."""

    def __init__(self, method: str, message: str = "not connected to Chromium") -> None:
        super().__init__(method, message)


@dataclasses.dataclass
class _Pending:
    method: str
    session_id: str | None
    future: asyncio.Future[dict[str, Any]]


class Subscription:
    """An event listener; `close()` (or leaving the `with` block) removes it."""

    def __init__(self, owner: CDPConnection, key: SessionKey, callback: EventCallback) -> None:
        self._owner, self.key, self.callback = owner, key, callback

    def close(self) -> None:
        self._owner._unsubscribe(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Session:
    """A flattened session to one target: `send()` and a queue of its events."""

    def __init__(self, connection: CDPConnection, session_id: str, target_id: str) -> None:
        self.connection = connection
        self.session_id = session_id
        self.target_id = target_id
        self.generation = connection.generation
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self._subscription = connection.subscribe(self.events.put_nowait, session_id=session_id)

    async def send(
        self, method: str, params: Mapping[str, Any] | None = None, *, timeout: float = 30.0
    ) -> dict[str, Any]:
        return await self.connection.send(method, params, session_id=self.session_id, timeout=timeout)

    def drain(self) -> None:
        """Forget queued events (e.g. those of an earlier use of this session)."""
        while not self.events.empty():
            self.events.get_nowait()

    @property
    def alive(self) -> bool:
        return self.connection.connected and self.connection.generation == self.generation

    def close(self) -> None:
        self._subscription.close()

    async def detach(self) -> None:
        self.close()
        if self.alive:
            with contextlib.suppress(CDPError, TimeoutError):
                await self.connection.send(
                    "Target.detachFromTarget", {"sessionId": self.session_id}, timeout=5
                )


class CDPConnection:
    def __init__(
        self,
        http_url: str,
        *,
        max_message_bytes: int = 256 * 1024 * 1024,
        retry_max_s: float = 1.0,
    ) -> None:
        self.http_url = http_url.rstrip("/")
        self.max_message_bytes = max_message_bytes
        self.retry_max_s = retry_max_s
        self.generation = 0
        self.connects = 0
        self.browser: dict[str, Any] = {}  # the last /json/version answer
        self.last_error = "not connected yet"
        self._since: float | None = None  # monotonic time of the current connection
        self._ws: ClientConnection | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._listeners: dict[SessionKey, list[Subscription]] = {}
        self._state_callbacks: list[StateCallback] = []
        self._connected = asyncio.Event()
        self._closing = False
        self._http: aiohttp.ClientSession | None = None

    # --- state -----------------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._ws is not None

    @property
    def browser_ws_url(self) -> str | None:
        url = self.browser.get("webSocketDebuggerUrl")
        return url if isinstance(url, str) else None

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "connected": self.connected,
            "generation": self.generation,
            "connects": self.connects,
            "pending_calls": len(self._pending),
            "subscriptions": sum(len(v) for v in self._listeners.values()),
        }
        if self.connected and self._since is not None:
            out["connected_for_s"] = round(time.monotonic() - self._since, 3)
            out["browser"] = self.browser.get("Browser")
        else:
            out["detail"] = self.last_error
        return out

    async def wait_connected(self, timeout: float) -> None:
        """Wait until a connection is up; CDPDisconnected after `timeout` seconds."""
        if self.connected:
            return
        try:
            await asyncio.wait_for(self._connected.wait(), timeout)
        except TimeoutError:
            raise CDPDisconnected("connect", f"Chromium not reachable ({self.last_error})") from None

    def on_state(self, callback: StateCallback) -> Callable[[], None]:
        """Call `callback(connected, generation)` on every connect and disconnect; returns a remover."""
        self._state_callbacks.append(callback)
        return lambda: self._state_callbacks.remove(callback) if callback in self._state_callbacks else None

    # --- commands ----------------------------------------------------------------------------------------

    async def send(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        session_id: str | None = None,
        timeout: float = 30.0,
    ) -> dict[str, Any]:
        ws = self._ws
        if ws is None:
            raise CDPDisconnected(method)
        message_id = next(self._ids)
        message: dict[str, Any] = {"id": message_id, "method": method, "params": dict(params or {})}
        if session_id is not None:
            message["sessionId"] = session_id
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[message_id] = _Pending(method, session_id, future)
        try:
            await ws.send(json.dumps(message))
            reply = await asyncio.wait_for(future, timeout)
        except ConnectionClosed:
            raise CDPDisconnected(method, "the connection to Chromium closed") from None
        finally:
            self._pending.pop(message_id, None)
        error = reply.get("error")
        if error is not None:
            raise CDPError(method, str(error.get("message", error)), error.get("code"))
        result: dict[str, Any] = reply.get("result", {})
        return result

    async def targets_by_activity(self) -> list[dict[str, Any]]:
        """Chromium's `/json/list`: the targets, most recently active first (CDP itself has no such order)."""
        if self._http is None or self._http.closed:
            raise CDPDisconnected("/json/list")
        try:
            return await ChromiumJson(self.http_url, self._http).targets()
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise CDPDisconnected("/json/list", f"Chromium's /json/list failed: {exc}") from None

    async def attach(self, target_id: str) -> Session:
        reply = await self.send("Target.attachToTarget", {"targetId": target_id, "flatten": True})
        return Session(self, reply["sessionId"], target_id)

    # --- events ------------------------------------------------------------------------------------------

    def subscribe(self, callback: EventCallback, *, session_id: SessionKey = None) -> Subscription:
        subscription = Subscription(self, session_id, callback)
        self._listeners.setdefault(session_id, []).append(subscription)
        return subscription

    def _unsubscribe(self, subscription: Subscription) -> None:
        listeners = self._listeners.get(subscription.key)
        if listeners and subscription in listeners:
            listeners.remove(subscription)
            if not listeners:
                del self._listeners[subscription.key]

    @contextlib.asynccontextmanager
    async def events(self, session_id: SessionKey = None) -> AsyncIterator[asyncio.Queue[Event]]:
        queue: asyncio.Queue[Event] = asyncio.Queue()
        with self.subscribe(queue.put_nowait, session_id=session_id):
            yield queue

    def _dispatch(self, event: Event) -> None:
        session_id = event.get("sessionId")
        if event.get("method") == "Target.detachedFromTarget":
            self._fail_session(event.get("params", {}).get("sessionId"))
        for key in (session_id, ALL_SESSIONS):
            for subscription in list(self._listeners.get(key, ())):
                try:
                    subscription.callback(event)
                except Exception:
                    log.exception("CDP event listener failed on %s", event.get("method"))

    def _fail_session(self, session_id: str | None) -> None:
        # Chromium never answers commands of a session whose target went away.
        if session_id is None:
            return
        for pending in list(self._pending.values()):
            if pending.session_id == session_id and not pending.future.done():
                pending.future.set_exception(
                    CDPError(pending.method, "the target went away (session detached)")
                )

    # --- the connection loop -------------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, read until the connection drops, reconnect; until close() (or cancel)."""
        delay = 0.05
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2.0)) as http:
            self._http = http
            while not self._closing:
                try:
                    self.browser = await ChromiumJson(self.http_url, http).version()
                    ws_url = self.browser_ws_url
                    if ws_url is None:
                        raise OSError("/json/version has no webSocketDebuggerUrl")
                    ws = await connect(
                        ws_url,
                        max_size=self.max_message_bytes,
                        compression=None,
                        ping_interval=None,  # Chromium's death closes the socket; no keepalive needed
                        open_timeout=5,
                        close_timeout=1,
                    )
                except (OSError, aiohttp.ClientError, TimeoutError, WebSocketException, ValueError) as exc:
                    self.last_error = f"{self.http_url}: {exc or type(exc).__name__}"
                    await asyncio.sleep(delay)
                    delay = min(self.retry_max_s, delay * 2)
                    continue
                delay = 0.05
                if self._closing:
                    await ws.close()
                    return
                await self._serve(ws)

    async def _serve(self, ws: ClientConnection) -> None:
        self._ws = ws
        self.generation += 1
        self.connects += 1
        self._since = time.monotonic()
        self._connected.set()
        log.info("connected to Chromium %s (generation %d)", self.browser.get("Browser"), self.generation)
        self._notify(True)
        try:
            async for raw in ws:
                message = json.loads(raw)
                message_id = message.get("id")
                if message_id is None:
                    self._dispatch(message)
                    continue
                pending = self._pending.get(message_id)
                if pending is not None and not pending.future.done():
                    pending.future.set_result(message)
        except ConnectionClosed as exc:
            self.last_error = f"connection closed: {exc}"
        except (OSError, ValueError) as exc:
            self.last_error = f"connection failed: {exc}"
        else:
            self.last_error = "connection closed by Chromium"
        finally:
            self._ws = None
            self._since = None
            self._connected.clear()
            for pending in list(self._pending.values()):
                if not pending.future.done():
                    pending.future.set_exception(CDPDisconnected(pending.method, "Chromium went away"))
            self._pending.clear()
            with contextlib.suppress(Exception):
                await ws.close()
            if not self._closing:
                log.warning("lost the connection to Chromium: %s; reconnecting", self.last_error)
            self._notify(False)

    def _notify(self, connected: bool) -> None:
        for callback in list(self._state_callbacks):
            try:
                callback(connected, self.generation)
            except Exception:
                log.exception("CDP state listener failed")

    async def close(self) -> None:
        self._closing = True
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()
