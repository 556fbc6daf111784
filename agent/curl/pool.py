"""The pool of hidden targets browser curl requests run in, each holding an empty document of one origin.

A hidden target (`Target.createTarget hidden`: not in the tab strip, never shown, not a Playwright page)
holds an empty document *of the URL's origin*: it navigates to `<origin>/__agent_curl__` once and the `Fetch`
domain answers that navigation itself (`Fetch.fulfillRequest`), so nothing goes to the server and nothing of
the site runs. `idle_targets` stay warm; the least recently used is re-pointed at a new origin; a target that
saw a failure or a timeout is closed instead of reused; targets of a dead browser are forgotten with it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import time
from typing import Any

from ..cdp.connection import CDPConnection, CDPDisconnected, CDPError, Session
from ..errors import Unavailable
from ..tasks import TaskGroup
from .errors import CurlTransportError, Dirty
from .net_errors import net_error_name

IDLE_MAX_S = 300.0  # an idle hidden target older than this is closed instead of reused
BLANK_PATH = "/__agent_curl__"  # the hidden document's path (answered by the agent, never requested)
_BLANK_PAGE = base64.b64encode(b"<!doctype html><title>agent curl</title>").decode()
_IS_BLANK = f"location.pathname === {json.dumps(BLANK_PATH)} && location.origin !== 'null'"
_NAVIGATED = "agent.navigated"  # the pseudo-event queued when Page.navigate returns


def _blank_document(request_id: str) -> dict[str, Any]:
    return {
        "requestId": request_id,
        "responseCode": 200,
        "responseHeaders": [{"name": "Content-Type", "value": "text/html; charset=utf-8"}],
        "body": _BLANK_PAGE,
    }


@dataclasses.dataclass
class Target:
    session: Session
    request_stage: bool | None = None  # whether Fetch pauses at the Request stage too (None: not set up)
    origin: str | None = None  # the origin of its document, once it has one
    idle_since: float = 0.0  # monotonic time it was last given back

    @property
    def target_id(self) -> str:
        return self.session.target_id


class TargetPool:
    def __init__(self, cdp: CDPConnection, *, idle_targets: int, connect_wait_s: float) -> None:
        self.cdp = cdp
        self.idle_targets = idle_targets
        self.connect_wait_s = connect_wait_s
        self._idle: list[Target] = []
        self._leased: set[str] = set()
        self._settling = 0  # targets whose last request is still being aborted
        self._doomed: set[str] = set()  # targets to close (closing now, or at shutdown)
        self._closed = False
        self._released = asyncio.Event()
        self._tasks = TaskGroup("curl")
        self._remove_listener = cdp.on_state(self._on_state)
        if cdp.connected:
            self._on_state(True, cdp.generation)

    @property
    def target_ids(self) -> set[str]:
        return {t.target_id for t in self._idle} | self._leased | self._doomed

    def status(self) -> dict[str, Any]:
        return {"idle_targets": len(self._idle), "busy_targets": len(self._leased)}

    def _on_state(self, connected: bool, generation: int) -> None:
        # Targets of a dead browser are gone with it; warm one up in the new browser.
        self._idle = [t for t in self._idle if t.session.generation == generation and connected]
        if connected:
            self._doomed.clear()  # ids of the previous browser mean nothing to this one
        if connected and not self._idle and self.idle_targets > 0:
            self._tasks.spawn(self._warm(), name="warm-target")

    async def _warm(self) -> None:
        with contextlib.suppress(CDPError, TimeoutError):
            target = await self._new_target()
            await self.prepare(target, request_stage=False)
            self._keep_or_close(target)

    async def close(self) -> None:
        """Close every hidden target of the pool (Chromium outlives the agent)."""
        self._closed = True
        self._remove_listener()
        await asyncio.wait_for(self._tasks.close(), 5)  # settling targets land in _idle or _doomed
        doomed = {t.target_id for t in self._idle if t.session.alive} | self._doomed
        self._idle = []
        if self.cdp.connected and doomed:
            await asyncio.gather(*(self._close(target_id) for target_id in doomed))

    # --- leasing ------------------------------------------------------------------------------------------

    async def lease(self, origin: str) -> Target:
        """An idle target, one whose document already has `origin` if possible."""
        if not self.cdp.connected:
            try:
                await self.cdp.wait_connected(self.connect_wait_s)
            except CDPDisconnected as exc:
                raise Unavailable(f"Chromium is not reachable: {exc.message}") from None
        while True:
            # Targets idle for long go (their renderer's memory with them; a stale document is never used).
            now = time.monotonic()
            for stale in [t for t in self._idle if now - t.idle_since > IDLE_MAX_S]:
                self._idle.remove(stale)
                self.discard(stale)
            self._idle = [t for t in self._idle if t.session.alive]
            if self._idle:
                # The same origin first; else the least recently used (it gets a new document).
                same = [t for t in self._idle if t.origin == origin]
                target = same[-1] if same else self._idle[0]
                self._idle.remove(target)
                self._leased.add(target.target_id)
                return target
            if not self._settling:
                break
            # A target is about to come back (its last request is being aborted): cheaper than a new one.
            self._released.clear()
            try:
                await asyncio.wait_for(self._released.wait(), 0.1)
            except TimeoutError:
                break
        target = await self._new_target()
        self._leased.add(target.target_id)
        return target

    async def _new_target(self) -> Target:
        created = await self.cdp.send("Target.createTarget", {"url": "about:blank", "hidden": True})
        try:
            session = await self.cdp.attach(created["targetId"])
            # Raw response headers (Set-Cookie) come from Network events. The site's service worker must not
            # answer instead of the network (nor serve the hidden document).
            await session.send("Network.enable")
            await session.send("Network.setBypassServiceWorker", {"bypass": True})
        except BaseException:
            with contextlib.suppress(CDPError, TimeoutError):
                await self.cdp.send("Target.closeTarget", {"targetId": created["targetId"]}, timeout=5)
            raise
        return Target(session)

    async def open_origin(self, target: Target, origin: str) -> None:
        """Give the target an empty document of `origin`, answered by us (no request leaves the browser)."""
        session = target.session
        target.origin = None
        await self.prepare(target, request_stage=True)
        session.drain()
        navigated = asyncio.get_running_loop().create_task(
            session.send("Page.navigate", {"url": origin + BLANK_PATH}), name="curl-open-origin"
        )
        navigated.add_done_callback(lambda _: session.events.put_nowait({"method": _NAVIGATED}))
        try:
            while True:
                event = await session.events.get()
                if event.get("method") == "Fetch.requestPaused":
                    params = event["params"]
                    if params.get("resourceType") == "Document" and "responseStatusCode" not in params:
                        await session.send("Fetch.fulfillRequest", _blank_document(params["requestId"]))
                    else:  # nothing else belongs to an empty document
                        await session.send(
                            "Fetch.failRequest", {"requestId": params["requestId"], "errorReason": "Aborted"}
                        )
                elif event.get("method") == _NAVIGATED:
                    break
            error_text = str(navigated.result().get("errorText") or "")
        finally:
            if not navigated.done():
                navigated.cancel()
            with contextlib.suppress(BaseException):
                await navigated
        if error_text:
            name = net_error_name(error_text)
            raise CurlTransportError(f"request to {origin} failed: {name}", name)
        # The navigation has committed; make sure scripts run in the new document before using it.
        for _ in range(100):
            reply = await session.send("Runtime.evaluate", {"expression": _IS_BLANK, "returnByValue": True})
            if reply.get("result", {}).get("value") is True:
                target.origin = origin
                return
            await asyncio.sleep(0.01)
        raise Dirty(f"the hidden document for {origin} did not load")

    async def prepare(self, target: Target, *, request_stage: bool) -> None:
        """Fetch pausing at the Response stage, and at the Request stage too if `request_stage`."""
        if target.request_stage == request_stage:
            return
        patterns = [{"urlPattern": "*", "requestStage": "Response"}]
        if request_stage:
            patterns.insert(0, {"urlPattern": "*", "requestStage": "Request"})
        await target.session.send("Fetch.enable", {"patterns": patterns})
        target.request_stage = request_stage

    # --- giving back --------------------------------------------------------------------------------------

    def give_back(
        self, target: Target, fetched: asyncio.Task[dict[str, Any]], paused: dict[str, Any]
    ) -> None:
        """After an answer: abort its request and return the target, in the background."""
        self._settling += 1
        self._tasks.spawn(self._settle(target, fetched, paused), name="settle-target")

    def _keep_or_close(self, target: Target) -> None:
        self._leased.discard(target.target_id)
        if target.session.alive and len(self._idle) < self.idle_targets and not self._closed:
            target.idle_since = time.monotonic()
            self._idle.append(target)
            self._released.set()
        else:
            self.discard(target)

    def discard(self, target: Target) -> None:
        """Close the target (it is in an unknown state, or not wanted any more)."""
        self._leased.discard(target.target_id)
        self._released.set()
        target.session.close()
        if not target.session.alive:
            return  # gone with its browser
        self._doomed.add(target.target_id)
        if not self._closed:
            self._tasks.spawn(self._close(target.target_id), name="close-target")

    async def _close(self, target_id: str) -> None:
        with contextlib.suppress(CDPError, TimeoutError):
            await self.cdp.send("Target.closeTarget", {"targetId": target_id}, timeout=5)
        self._doomed.discard(target_id)

    async def _settle(
        self, target: Target, fetched: asyncio.Task[dict[str, Any]], paused: dict[str, Any]
    ) -> None:
        """Abort the request (the page never sees the answer) and give the target back once everything about
        it has been reported, so no late event of it can be mistaken for the next request's."""
        session = target.session
        network_id = paused.get("networkId")
        reusable = False
        try:
            await session.send(
                "Fetch.failRequest", {"requestId": paused["requestId"], "errorReason": "Aborted"}
            )
            async with asyncio.timeout(2.0):
                ended = network_id is None
                while not (ended and fetched.done()):
                    event = await session.events.get()
                    if event.get("method") in ("Network.loadingFailed", "Network.loadingFinished"):
                        ended = ended or event.get("params", {}).get("requestId") == network_id
            reusable = True
        except (CDPError, TimeoutError):
            pass
        finally:
            self._settling -= 1
            if not fetched.done():
                fetched.cancel()
            with contextlib.suppress(BaseException):
                await fetched
            if reusable:
                self._keep_or_close(target)
            else:
                self.discard(target)
