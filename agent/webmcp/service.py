"""WebMCP over the shared CDP connection.

Chromium 156 (Debian) has WebMCP only behind a feature flag that is off, so the agent injects `shim.js` into
every document of every tab: a browser session of its own auto-attaches to every page target (new tabs wait
until the script is added, existing ones get it for their current document too, `runImmediately`; the script,
Page.enable and the resume go in one burst, so a popup's first document has it). The pause on start does not
hold the first navigation of a tab a CDP client creates on a URL (`Target.createTarget {url}`,
`/json/new?url`): while such a command goes through the :9222 proxy, the same session pauses document requests
(Fetch, Request stage) and continues them at once, except the first one of a page target whose script is not
sent yet: that one waits (at most HOLD_S) until it is. Only meanwhile: interception slows every request of
every tab. Tools are not mirrored here: a listing asks each page's top-level document for its live
registrations, so a tool is gone as soon as its document is. A `tool_ref` names the target, the document (a
token the shim draws per document), the tool and its registration: invoking a ref whose document or
registration is gone is a 404, never a call of something else. An invocation is sent once; if it does not
finish in time, or its tab or document goes away meanwhile, the answer is `status: error` with `error_text`
starting `outcome_unknown` and nothing is retried.

Embedded frames: a same-process frame (same origin, or another origin of the same site) is asked through
its document's main-world object (DOM.getFrameOwner → describeNode's contentDocument → resolveNode →
Runtime.callFunctionOn runs in that frame's main world; no Runtime.enable, which pages can detect). A
cross-site frame is an out-of-process iframe: a target of its own, auto-attached from its tab's session (the
shim goes in the same way), asked like a tab. Such tools carry `source.frame {frame_id, url}`.

Custom tools (POST /webmcp/custom-tools): `source` is a JavaScript expression evaluating to an array of
`{match: {url_patterns}, tool: {name, description, inputSchema, ...}, execute(input)}`. It is checked in an
isolated world (no access to the page) and kept; each tool is listed once per tab whose top-level URL matches
one of its URLPatterns, and runs there (the source evaluated again in the page's main world).

Not covered: CDP-backed (REPL) custom tools.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import itertools
import json
import logging
import re
import secrets
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from ..cdp.connection import CDPConnection, CDPDisconnected, CDPError, Event, Subscription
from ..errors import BadRequest, NotFound, Unavailable
from ..tasks import TaskGroup

log = logging.getLogger(__name__)

SHIM = Path(__file__).with_name("shim.js").read_text()
_PAGES = [{"type": "page", "exclude": False}, {"exclude": True}]
# While a tab opens on a URL, document requests are paused at the browser level until its tab has the script
# (see before_new_tab and _hold).
_DOCUMENTS = [{"urlPattern": "*", "resourceType": "Document", "requestStage": "Request"}]
HOLD_S = 3.0  # the longest a new tab's first document request waits for the script
_IFRAMES = [{"type": "iframe", "exclude": False}, {"exclude": True}]  # a tab's out-of-process frames
NAMESPACE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MAX_INPUT_BYTES = 1024 * 1024
MAX_SOURCE_BYTES = 8_000_000
MAX_CUSTOM_TOOLS = 1000
MAX_CUSTOM_SOURCE_BYTES = 64 * 1024 * 1024  # all kept sources together
PROBE_TIMEOUT_S = 5.0
REF_PREFIX = "wmt_"

# Checks a custom tools source (evaluated in an isolated world): see check.js.
_CHECK_BEFORE, _CHECK_AFTER = Path(__file__).with_name("check.js").read_text().split("__SOURCE__", 1)


@dataclasses.dataclass(frozen=True)
class CustomTool:
    id: str
    namespace: str
    kind: str
    url_patterns: list[str]
    tool: dict[str, Any]
    source: str

    def definition(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "match": {"url_patterns": self.url_patterns},
            "namespace": self.namespace,
            "tool": self.tool,
        }


@dataclasses.dataclass(frozen=True)
class Ref:
    kind: str  # "page" or "custom"
    target_id: str  # the tab, or the out-of-process frame's target
    doc: str
    key: str  # the tool's name, or the custom tool's id
    reg: int
    frame: str  # CDP frame id of a same-process embedded frame; "" for the target's own document


def encode_ref(ref: Ref) -> str:
    fields = [ref.kind, ref.target_id, ref.doc, ref.key, ref.reg, ref.frame]
    raw = json.dumps(fields, separators=(",", ":")).encode()
    return REF_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_ref(ref: str) -> Ref:
    try:
        if not ref.startswith(REF_PREFIX):
            raise ValueError(ref)
        body = ref[len(REF_PREFIX) :]
        kind, target_id, doc, key, reg, frame = json.loads(
            base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        )
        strings = (target_id, doc, key, frame)
        if kind not in ("page", "custom") or not all(isinstance(v, str) for v in strings):
            raise ValueError(ref)
        return Ref(kind, target_id, doc, key, int(reg), frame)
    except (ValueError, TypeError, binascii.Error):
        raise BadRequest(f"{ref!r} is not a tool_ref from GET /webmcp/tools") from None


class FrameGone(Exception):
    """A same-process frame (or its document) is no longer there: nothing was run in it."""


class FrameHung(FrameGone):
    """A same-process frame's document could not be found in time: nothing was run in it."""


# What a document offers (run in its main world; W is its window, P the custom tools' URL patterns).
_PROBE = (
    "(W, P) => { const w = W.__agentWebmcp;"
    " return {url: W.location.href.split('#')[0], title: W.document.title, doc: w ? w.doc : null,"
    " tools: w ? w.list() : [],"
    " custom: w ? P.filter(([id, ps]) => w.matches(ps)).map(([id]) => id) : []}; }"
)
_INVOKE = (
    "(W, d, reg, name, input) => W.__agentWebmcp ? W.__agentWebmcp.invoke(d, reg, name, input)"
    " : {state: 'gone'}"
)


def _outcome_unknown(invocation_id: str, why: str) -> dict[str, Any]:
    return {
        "invocation_id": invocation_id,
        "status": "error",
        "error_text": f"outcome_unknown: {why}; the invocation was not retried (it may have had effects)",
    }


class WebmcpService:
    def __init__(self, cdp: CDPConnection) -> None:
        self.cdp = cdp
        self._tasks = TaskGroup("webmcp")
        self._pages: dict[str, str] = {}  # page target id → our session on it (current connection)
        # Out-of-process frames: target id → (our session on it, the tab's target id).
        self._oopifs: dict[str, tuple[str, str]] = {}
        self._session_tab: dict[str, str] = {}  # our page or frame session → its tab's target id
        self._session_subs: dict[str, Subscription] = {}  # events of a tab's session (its frames attach)
        self._frame_ids: dict[str, dict[str, int]] = {}  # tab → CDP frame id → our frame_id
        self._next_frame = itertools.count(1)
        self._tab_ids: dict[str, int] = {}
        self._window_ids: dict[str, int] = {}
        self._next_tab = itertools.count(1)
        self._custom: dict[str, CustomTool] = {}
        self._ready = asyncio.Event()  # auto-attach is set up on the current connection
        self._browser_session: str | None = None
        self._sent: set[str] = set()  # page targets whose script is sent (their documents may go on)
        self._prepared: dict[str, asyncio.Event] = {}  # page target id → set once its script is sent
        # Tabs about to open on a URL (see before_new_tab): while any is, the browser session pauses
        # document requests. `_releases` counts new tabs' first documents let go; `_released` is pulsed then.
        self._holds = 0
        self._hold_lock = asyncio.Lock()
        self._releases = 0
        self._released = asyncio.Event()
        self._state = asyncio.Event()
        self._subscription: Subscription | None = None
        self._remove_state: Any = None
        self._closed = False

    # --- attaching to every page ----------------------------------------------------------------------

    def start(self) -> None:
        self._remove_state = self.cdp.on_state(lambda connected, generation: self._state.set())
        self._tasks.spawn(self._run(), name="webmcp-attach")

    async def _run(self) -> None:
        while not self._closed:
            try:
                await self.cdp.wait_connected(3600)
            except CDPDisconnected:
                continue
            generation = self.cdp.generation
            self._state.clear()
            try:
                await self._attach_all()
            except (CDPError, TimeoutError) as exc:
                log.warning("webmcp: cannot attach to the tabs: %s", exc)
                await asyncio.sleep(0.5)
                continue
            while self.cdp.connected and self.cdp.generation == generation:
                await self._state.wait()
                self._state.clear()
            self._ready.clear()
            self._pages.clear()
            self._sent.clear()
            self._oopifs.clear()
            self._session_tab.clear()
            self._frame_ids.clear()
            for sub in self._session_subs.values():
                sub.close()
            self._session_subs.clear()
            if self._subscription is not None:
                self._subscription.close()
                self._subscription = None

    async def _attach_all(self) -> None:
        session = (await self.cdp.send("Target.attachToBrowserTarget"))["sessionId"]
        if self._subscription is not None:
            self._subscription.close()
        self._subscription = self.cdp.subscribe(self._on_event, session_id=session)
        self._browser_session = session
        self._holds = 0  # a new session: no pause on it yet
        params = {"autoAttach": True, "waitForDebuggerOnStart": True, "flatten": True, "filter": _PAGES}
        await self.cdp.send("Target.setAutoAttach", params, session_id=session)
        self._ready.set()

    def _on_event(self, event: Event) -> None:
        params = event.get("params", {})
        if event.get("method") == "Fetch.requestPaused":
            self._tasks.spawn(self._hold(params, str(event.get("sessionId"))), name="webmcp-hold")
        elif event.get("method") == "Target.attachedToTarget":
            info = params.get("targetInfo", {})
            parent = event.get("sessionId")
            self._tasks.spawn(
                self._prepare(
                    str(params["sessionId"]),
                    info,
                    bool(params.get("waitingForDebugger")),
                    self._session_tab.get(str(parent)) if parent is not None else None,
                ),
                name="webmcp-prepare",
            )
        elif event.get("method") == "Target.detachedFromTarget":
            target_id = str(params.get("targetId"))
            session = params.get("sessionId")
            if self._pages.get(target_id) == session:
                del self._pages[target_id]
                self._sent.discard(target_id)
                self._window_ids.pop(target_id, None)
                self._tab_ids.pop(target_id, None)  # the tab is gone: its number is never reused
                self._frame_ids.pop(target_id, None)
                for frame_target, (frame_session, tab) in list(self._oopifs.items()):
                    if tab == target_id:
                        self._forget_frame(frame_target, frame_session)
                self._forget_session(str(session))
            elif target_id in self._oopifs and self._oopifs[target_id][0] == session:
                self._forget_frame(target_id, str(session))

    def _forget_frame(self, target_id: str, session: str) -> None:
        self._oopifs.pop(target_id, None)
        self._forget_session(session)

    def _forget_session(self, session: str) -> None:
        self._session_tab.pop(session, None)
        sub = self._session_subs.pop(session, None)
        if sub is not None:
            sub.close()

    async def _mark_sent(self, target_id: str) -> None:
        """Runs after the commands before it in _inject's gather are written: a held document request is
        continued after them on the same connection, so Chromium has them first."""
        self._sent.add(target_id)
        event = self._prepared.pop(target_id, None)
        if event is not None:
            event.set()

    async def _inject(self, session: str, tab: str, waiting: bool, page: str | None = None) -> None:
        """The shim into the target's documents, and auto-attach to its out-of-process frames."""
        self._session_tab[session] = tab
        if session not in self._session_subs:
            self._session_subs[session] = self.cdp.subscribe(self._on_event, session_id=session)
        script = {"source": SHIM, "runImmediately": True}
        params = {"autoAttach": True, "waitForDebuggerOnStart": True, "flatten": True, "filter": _IFRAMES}
        # Sent in this order without waiting for the answers: a paused target that has no renderer yet (a
        # noopener popup) answers Page.enable only once it runs, so it is resumed in the same breath; the
        # renderer gets the queued commands before its first document commits. Chromium runs a session's
        # new-document scripts only while its Page domain is enabled.
        sends: list[Coroutine[Any, Any, Any]] = [
            self.cdp.send("Page.enable", session_id=session, timeout=5),
            self.cdp.send("Page.addScriptToEvaluateOnNewDocument", script, session_id=session, timeout=5),
            self.cdp.send("Target.setAutoAttach", params, session_id=session, timeout=5),
        ]
        if waiting:
            sends.append(self.cdp.send("Runtime.runIfWaitingForDebugger", session_id=session, timeout=5))
        if page is not None:
            sends.append(self._mark_sent(page))
        await asyncio.gather(*sends)

    async def _prepare(self, session: str, info: dict[str, Any], waiting: bool, tab: str | None) -> None:
        target_id = str(info.get("targetId"))
        try:
            if info.get("type") == "page" and not info.get("subtype"):
                await self._inject(session, target_id, waiting, page=target_id)
                self._pages[target_id] = session
                self._tab_ids.setdefault(target_id, next(self._next_tab))
            elif info.get("type") == "iframe" and tab is not None:
                await self._inject(session, tab, waiting)
                self._oopifs[target_id] = (session, tab)
        except (CDPError, TimeoutError) as exc:
            log.debug("webmcp: cannot prepare %s: %s", target_id, exc)
        finally:
            if waiting:  # a new tab waits for us: never leave it paused
                with contextlib.suppress(CDPError, TimeoutError):
                    await self.cdp.send("Runtime.runIfWaitingForDebugger", session_id=session, timeout=5)

    async def before_new_tab(self) -> None:
        """Before a CDP client's command that opens a tab on a URL reaches Chromium (the :9222 proxy calls
        this). Chromium starts such a tab's first navigation before the tab is attached, and the pause on
        start does not hold it, so its document could run before the script is in: the browser session
        pauses document requests (Fetch, Request stage) until that tab's first one has gone on with the
        script in, or HOLD_S at most. Only meanwhile: Fetch interception routes every request of every tab
        through the browser process (always on, it cost each /curl about 3.5 ms here)."""
        session = self._browser_session
        if session is None or not self._ready.is_set():
            return  # not attached (Chromium down): the tab gets the script when it is
        async with self._hold_lock:
            if session != self._browser_session:
                return
            if self._holds == 0:
                try:
                    params = {"patterns": _DOCUMENTS}
                    await self.cdp.send("Fetch.enable", params, session_id=session, timeout=5)
                except (CDPError, TimeoutError) as exc:
                    log.debug("webmcp: cannot pause document requests: %s", exc)
                    return
            self._holds += 1
        self._tasks.spawn(self._end_hold(session, self._releases), name="webmcp-end-hold")

    async def _end_hold(self, session: str, releases: int) -> None:
        """Once a new tab's first document has gone on since the hold began (or HOLD_S), and no other tab is
        opening, document requests go unpaused again."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(HOLD_S):
                while self._releases == releases:
                    await self._released.wait()
        async with self._hold_lock:
            if session != self._browser_session:
                return  # Chromium restarted meanwhile: that session and its pause are gone
            self._holds -= 1
            if self._holds == 0:
                with contextlib.suppress(CDPError, TimeoutError):
                    await self.cdp.send("Fetch.disable", session_id=session, timeout=5)

    def _first_document_released(self) -> None:
        self._releases += 1
        released, self._released = self._released, asyncio.Event()
        released.set()

    async def _hold(self, params: dict[str, Any], session: str) -> None:
        """A document request goes on at once unless it is the first one of a tab the script is not in yet:
        that one waits (at most HOLD_S) until the tab is prepared. Always continued, never changed."""
        frame = str(params.get("frameId", ""))
        first = False
        try:
            if frame and frame not in self._sent:
                info = await self.cdp.send(
                    "Target.getTargetInfo", {"targetId": frame}, session_id=session, timeout=2
                )
                target = info.get("targetInfo", {})
                if target.get("type") == "page" and not target.get("subtype") and frame not in self._sent:
                    first = True
                    event = self._prepared.setdefault(frame, asyncio.Event())
                    try:
                        await asyncio.wait_for(event.wait(), HOLD_S)
                    except TimeoutError:
                        log.warning(
                            "webmcp: tab %s was not prepared within %s s; its document goes on", frame, HOLD_S
                        )
                    finally:
                        if not event.is_set():
                            self._prepared.pop(frame, None)
        except (CDPError, TimeoutError):
            pass  # not a target (a frame of a page), or gone: nothing to wait for
        finally:
            with contextlib.suppress(CDPError, TimeoutError):
                await self.cdp.send(
                    "Fetch.continueRequest", {"requestId": params["requestId"]}, session_id=session, timeout=5
                )
            if first:
                self._first_document_released()

    async def _wait_ready(self) -> None:
        try:
            await self.cdp.wait_connected(10)
            await asyncio.wait_for(self._ready.wait(), 10)
        except (CDPDisconnected, TimeoutError):
            raise Unavailable("Chromium is not reachable") from None

    # --- listing ----------------------------------------------------------------------------------------

    async def _window_of(self, target_id: str) -> int:
        window = self._window_ids.get(target_id)
        if window is None:
            try:
                reply = await self.cdp.send("Browser.getWindowForTarget", {"targetId": target_id}, timeout=5)
                window = int(reply["windowId"])
            except (CDPError, TimeoutError, KeyError):
                return 0
            self._window_ids[target_id] = window
        return window

    async def _call(
        self,
        session: str,
        frame: str,
        function: str,
        args: list[Any],
        *,
        timeout: float,
        await_promise: bool = False,
    ) -> dict[str, Any]:
        """Run `function(window, ...args)` in the main world of the target's document, or of the
        same-process embedded frame `frame`. FrameGone if that frame has no document any more."""
        if not frame:
            expression = f"({function})(window, {', '.join(json.dumps(a) for a in args)})"
            params: dict[str, Any] = {
                "expression": expression,
                "returnByValue": True,
                "awaitPromise": await_promise,
            }
            return await self.cdp.send("Runtime.evaluate", params, session_id=session, timeout=timeout)
        group = "agent-webmcp-" + secrets.token_hex(4)
        try:
            # The frame's document node, then its wrapper in the frame's main world (no Runtime.enable).
            owner = await self.cdp.send(
                "DOM.getFrameOwner", {"frameId": frame}, session_id=session, timeout=5
            )
            node = await self.cdp.send(
                "DOM.describeNode", {"backendNodeId": owner["backendNodeId"]}, session_id=session, timeout=5
            )
            document = node["node"].get("contentDocument")
            if document is None:  # out of process now (or not loaded): not this session's to ask
                raise FrameGone(frame)
            resolved = await self.cdp.send(
                "DOM.resolveNode",
                {"backendNodeId": document["backendNodeId"], "objectGroup": group},
                session_id=session,
                timeout=5,
            )
        except (CDPError, KeyError) as exc:
            raise FrameGone(frame) from exc
        except TimeoutError as exc:
            raise FrameHung(frame) from exc
        try:
            call = {
                "objectId": resolved["object"]["objectId"],
                "functionDeclaration": (
                    f"function (...args) {{ return ({function})(this.defaultView, ...args); }}"
                ),
                "arguments": [{"value": a} for a in args],
                "returnByValue": True,
                "awaitPromise": await_promise,
            }
            return await self.cdp.send("Runtime.callFunctionOn", call, session_id=session, timeout=timeout)
        finally:
            self._tasks.spawn(self._release(session, group), name="webmcp-release")

    async def _release(self, session: str, group: str) -> None:
        with contextlib.suppress(CDPError, TimeoutError):
            await self.cdp.send(
                "Runtime.releaseObjectGroup", {"objectGroup": group}, session_id=session, timeout=5
            )

    async def _ask(self, session: str, frame: str, patterns: list[list[Any]]) -> dict[str, Any] | None:
        """What one document offers, or None (closing, navigating, hung, gone: nothing right now)."""
        try:
            reply = await self._call(session, frame, _PROBE, [patterns], timeout=PROBE_TIMEOUT_S)
        except (CDPError, TimeoutError, FrameGone):
            return None
        page = reply.get("result", {}).get("value")
        if not isinstance(page, dict) or not page.get("doc"):
            return None
        return page

    async def _child_frames(self, session: str) -> list[str]:
        """The CDP ids of the target's embedded frames (those in its process and those not)."""
        try:
            tree = await self.cdp.send("Page.getFrameTree", session_id=session, timeout=PROBE_TIMEOUT_S)
        except (CDPError, TimeoutError):
            return []
        found: list[str] = []
        todo = list(tree.get("frameTree", {}).get("childFrames", []))
        while todo:
            node = todo.pop(0)
            found.append(str(node["frame"]["id"]))
            todo.extend(node.get("childFrames", []))
        return found

    def _frame_id(self, tab: str, cdp_frame: str) -> int:
        return self._frame_ids.setdefault(tab, {}).setdefault(cdp_frame, next(self._next_frame))

    async def _probe(self, target_id: str, session: str, patterns: list[list[Any]]) -> list[dict[str, Any]]:
        page = await self._ask(session, "", patterns)
        if page is None:
            return []
        source = {
            "frame": None,
            "page_title": str(page.get("title", "")),
            "page_url": str(page.get("url", "")),
            "tab_id": self._tab_ids.setdefault(target_id, next(self._next_tab)),
            "window_id": await self._window_of(target_id),
        }
        doc = str(page["doc"])
        out = [
            {
                "tool_ref": encode_ref(
                    Ref("page", target_id, doc, str(item["tool"]["name"]), int(item["reg"]), "")
                ),
                "tool": item["tool"],
                "source": source,
            }
            for item in page.get("tools", [])
        ]
        for custom_id in page.get("custom", []):
            custom = self._custom.get(str(custom_id))
            if custom is None:
                continue
            out.append(
                {
                    "tool_ref": encode_ref(Ref("custom", target_id, doc, custom.id, 0, "")),
                    "tool": custom.tool,
                    "source": {
                        **source,
                        "custom": {"id": custom.id, "namespace": custom.namespace},
                        "target_id": target_id,
                    },
                }
            )
        out.extend(await self._probe_frames(target_id, session, source))
        return out

    async def _probe_frames(self, tab: str, session: str, source: dict[str, Any]) -> list[dict[str, Any]]:
        """The tools of the tab's embedded frames: (session's target, CDP frame id or "" for its root)."""
        frames = [(tab, session, f) for f in await self._child_frames(session)]
        for frame_target, (frame_session, owner) in list(self._oopifs.items()):
            if owner == tab:
                frames.append((frame_target, frame_session, ""))
                frames.extend(
                    (frame_target, frame_session, f) for f in await self._child_frames(frame_session)
                )
        oopif_roots = {t for t, _, f in frames if not f}
        # A frame out of process is listed by its own target (as its root), not through its parent.
        frames = [(t, s, f) for t, s, f in frames if f == "" or f not in oopif_roots]
        answers = await asyncio.gather(*(self._ask(s, f, []) for _, s, f in frames))
        seen: dict[str, int] = {}
        out: list[dict[str, Any]] = []
        for (target, _, cdp_frame), page in zip(frames, answers, strict=True):
            if page is None:
                continue
            cdp_id = cdp_frame or target  # an out-of-process frame's target id is its frame id
            seen[cdp_id] = self._frame_id(tab, cdp_id)
            frame = {"frame_id": seen[cdp_id], "url": str(page.get("url", ""))}
            doc = str(page["doc"])
            out.extend(
                {
                    "tool_ref": encode_ref(
                        Ref("page", target, doc, str(item["tool"]["name"]), int(item["reg"]), cdp_frame)
                    ),
                    "tool": item["tool"],
                    "source": {**source, "frame": frame},
                }
                for item in page.get("tools", [])
            )
        # Only frames present now keep their number (a frame id never comes back once its frame is gone).
        self._frame_ids[tab] = {k: v for k, v in self._frame_ids.get(tab, {}).items() if k in seen}
        return out

    async def list_tools(self, *, exclude_custom: bool) -> list[dict[str, Any]]:
        await self._wait_ready()
        custom = [] if exclude_custom else [[c.id, c.url_patterns] for c in self._custom.values()]
        pages = sorted(self._pages.items(), key=lambda item: self._tab_ids.get(item[0], 0))
        found = await asyncio.gather(*(self._probe(target, session, custom) for target, session in pages))
        return [tool for tools in found for tool in tools]

    # --- invoking ---------------------------------------------------------------------------------------

    def _session_of(self, target_id: str) -> str | None:
        session = self._pages.get(target_id)
        if session is None and target_id in self._oopifs:
            session = self._oopifs[target_id][0]
        return session

    async def invoke(self, tool_ref: str, tool_input: dict[str, Any], *, timeout_s: int) -> dict[str, Any]:
        ref = decode_ref(tool_ref)
        encoded_input = json.dumps(tool_input)
        if len(encoded_input.encode()) > MAX_INPUT_BYTES:
            raise BadRequest(f"field 'input' is over {MAX_INPUT_BYTES} bytes as JSON")
        await self._wait_ready()
        session = self._session_of(ref.target_id)
        if session is None:
            raise NotFound("the tool's tab or frame is gone; list the tools again")
        invocation_id = "inv_" + secrets.token_hex(12)
        try:
            if ref.kind == "page":
                reply = await self._call(
                    session,
                    ref.frame,
                    _INVOKE,
                    [ref.doc, ref.reg, ref.key, tool_input],
                    timeout=timeout_s,
                    await_promise=True,
                )
            else:
                reply = await self._invoke_custom(session, ref, encoded_input, timeout_s)
        except FrameHung:
            raise Unavailable("the tool's frame does not answer; nothing was run") from None
        except FrameGone:
            raise NotFound("the tool's frame is gone; list the tools again") from None
        except TimeoutError:
            return _outcome_unknown(invocation_id, f"no result within {timeout_s} s")
        except CDPError as exc:
            return _outcome_unknown(invocation_id, f"the tab or its document went away ({exc.message})")
        if "exceptionDetails" in reply:
            details = reply["exceptionDetails"]
            why = details.get("exception", {}).get("description") or details.get("text", "")
            return _outcome_unknown(invocation_id, f"the document went away ({why})")
        value = reply.get("result", {}).get("value")
        state = value.get("state") if isinstance(value, dict) else None
        if state == "gone":
            raise NotFound(
                "the tool is no longer registered (its document went away, or it was unregistered)"
            )
        if state == "done":
            return {"invocation_id": invocation_id, "status": "completed", "output": value.get("output")}
        error = value.get("error") if isinstance(value, dict) else None
        return {
            "invocation_id": invocation_id,
            "status": "error",
            "error_text": str(error or "the tool failed"),
        }

    async def _invoke_custom(
        self, session: str, ref: Ref, encoded_input: str, timeout_s: int
    ) -> dict[str, Any]:
        custom = self._custom.get(ref.key)
        if custom is None:
            raise NotFound(f"no custom tool {ref.key!r} (deleted?)")
        d = json.dumps(ref.doc)
        expression = (
            "(async () => { const w = window.__agentWebmcp;"
            f" if (!w || w.doc !== {d} || !w.matches({json.dumps(custom.url_patterns)}))"
            " return {state: 'gone'};"
            " let defs; try { defs = (\n" + custom.source + "\n); } catch (e) { return {state: 'error',"
            " error: 'the source failed: ' + e}; }"
            f" return w.invokeCustom({d}, defs, {json.dumps(custom.tool['name'])}, {encoded_input});"
            " })()"
        )
        params = {"expression": expression, "awaitPromise": True, "returnByValue": True}
        return await self.cdp.send("Runtime.evaluate", params, session_id=session, timeout=timeout_s)

    # --- custom tools ------------------------------------------------------------------------------------

    def custom_tools(self) -> list[dict[str, Any]]:
        return [tool.definition() for tool in self._custom.values()]

    async def _check(self, source: str) -> list[dict[str, Any]]:
        """The definitions' metadata, evaluated in an isolated world of a tab (no access to the page)."""
        await self._wait_ready()
        for target_id, session in list(self._pages.items()):
            try:
                tree = await self.cdp.send("Page.getFrameTree", session_id=session, timeout=5)
                world = await self.cdp.send(
                    "Page.createIsolatedWorld",
                    {"frameId": tree["frameTree"]["frame"]["id"], "worldName": "agent-webmcp-check"},
                    session_id=session,
                    timeout=5,
                )
                params = {
                    "expression": _CHECK_BEFORE + source + _CHECK_AFTER,
                    "contextId": world["executionContextId"],
                    "returnByValue": True,
                    "timeout": 5000,
                }
                reply = await self.cdp.send("Runtime.evaluate", params, session_id=session, timeout=10)
            except CDPError as exc:
                if "terminated" in exc.message:  # the evaluation's own time limit
                    raise BadRequest("field 'source' did not evaluate within 5 s") from None
                log.debug("webmcp: cannot check a source in %s: %s", target_id, exc)
                continue
            except TimeoutError:
                log.debug("webmcp: cannot check a source in %s: no answer", target_id)
                continue
            if "exceptionDetails" in reply:
                details = reply["exceptionDetails"]
                why = details.get("exception", {}).get("description") or details.get("text", "")
                raise BadRequest(f"field 'source': {why.splitlines()[0] if why else 'it threw'}")
            defs: list[dict[str, Any]] = reply.get("result", {}).get("value") or []
            return defs
        raise Unavailable("no tab to check the source in")

    async def add_custom(self, namespace: str, source: str, *, overwrite: bool) -> list[dict[str, Any]]:
        if not NAMESPACE.match(namespace):
            raise BadRequest(f"field 'namespace' must match {NAMESPACE.pattern}")
        if len(source.encode()) > MAX_SOURCE_BYTES:
            raise BadRequest(f"field 'source' is over {MAX_SOURCE_BYTES} bytes (UTF-8)")
        defs = await self._check(source)
        names = [str(d["tool"]["name"]) for d in defs]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise BadRequest(f"the batch defines {', '.join(duplicates)} more than once")
        kept = {i: t for i, t in self._custom.items() if not (overwrite and t.namespace == namespace)}
        taken = sorted({t.tool["name"] for t in kept.values() if t.namespace == namespace} & set(names))
        if taken:
            raise BadRequest(
                f"namespace {namespace!r} has {', '.join(taken)} already (delete it first, or set "
                "force_overwrite_namespace)"
            )
        if len(kept) + len(defs) > MAX_CUSTOM_TOOLS:
            raise BadRequest(f"at most {MAX_CUSTOM_TOOLS} custom tools")
        sources = {id(t.source): len(t.source) for t in kept.values()}
        if sum(sources.values()) + len(source) > MAX_CUSTOM_SOURCE_BYTES:
            raise BadRequest(f"the custom tools' sources are over {MAX_CUSTOM_SOURCE_BYTES} bytes together")
        added = [
            CustomTool(
                id="ct_" + secrets.token_hex(8),
                namespace=namespace,
                kind=str(d["kind"]),
                url_patterns=[str(p) for p in d["url_patterns"]],
                tool=d["tool"],
                source=source,
            )
            for d in defs
        ]
        # Atomic: the batch (and the namespace's replacement) lands in one step, after every check.
        self._custom = {**kept, **{t.id: t for t in added}}
        return [t.definition() for t in added]

    def delete_custom(self, tool_id: str) -> None:
        if self._custom.pop(tool_id, None) is None:
            raise NotFound(f"no custom tool {tool_id!r}")

    async def close(self) -> None:
        self._closed = True
        self._state.set()
        if self._remove_state is not None:
            self._remove_state()
        if self._subscription is not None:
            self._subscription.close()
        await self._tasks.close()
