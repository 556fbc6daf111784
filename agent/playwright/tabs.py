"""Which tab `page` binds to: the tab the user sees (the default executor), or a named executor's own."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from ..cdp.connection import CDPConnection, CDPDisconnected, CDPError
from ..errors import InternalError, Unavailable

_TABS_AND_PAGES = [{"type": "tab", "exclude": False}, {"type": "page", "exclude": False}, {"exclude": True}]
_PAGES = [{"type": "page", "exclude": False}, {"exclude": True}]


class Tabs:
    def __init__(self, cdp: CDPConnection, *, connect_wait_s: float) -> None:
        self.cdp = cdp
        self.connect_wait_s = connect_wait_s
        self._tab_pages: dict[str, str] = {}  # tab target id → its page target id

    async def bind(self, *, seen: bool, owned: str | None) -> tuple[str, bool]:
        """The page target to bind to, and whether this call opened it: the tab the user sees if `seen`
        (a new one if there is none), else the tab `owned` while it is open (a new background tab if not)."""
        try:
            await self.cdp.wait_connected(self.connect_wait_s)
            targets = await self.cdp.send("Target.getTargets", {"filter": _TABS_AND_PAGES})
            infos: list[dict[str, Any]] = targets["targetInfos"]
            pages = {str(t["targetId"]) for t in infos if t.get("type") == "page" and not t.get("subtype")}
            if seen:
                page = await self._seen_page(infos, pages)
                if page is not None:
                    return page, False
                created = await self.cdp.send("Target.createTarget", {"url": "about:blank"})
                return str(created["targetId"]), True
            if owned is not None and owned in pages:
                return owned, False
            # A background tab: the tab the user sees (and that `default` uses) stays in front.
            created = await self.cdp.send("Target.createTarget", {"url": "about:blank", "background": True})
            return str(created["targetId"]), True
        except CDPDisconnected as exc:
            raise Unavailable(f"Chromium is not reachable: {exc.message}") from None
        except CDPError as exc:
            raise InternalError(f"cannot find a tab for the code: {exc}") from None

    async def urls(self) -> dict[str, str]:
        """target id → URL of every target, as far as Chromium answers."""
        with contextlib.suppress(CDPError):
            return {str(t.get("id")): str(t.get("url", "")) for t in await self.cdp.targets_by_activity()}
        return {}

    async def close(self, target_id: str, timeout: float = 5) -> None:
        with contextlib.suppress(CDPError, TimeoutError):
            await self.cdp.send("Target.closeTarget", {"targetId": target_id}, timeout=timeout)

    async def _seen_page(self, infos: list[dict[str, Any]], pages: set[str]) -> str | None:
        """The page target of the tab the user sees: the active tab of a window (Chromium reports
        `embedderData.tabActive` on tab targets), else the most recently active page."""
        for info in infos:
            if info.get("type") != "tab" or not (info.get("embedderData") or {}).get("tabActive"):
                continue
            tab = str(info["targetId"])
            page = self._tab_pages.get(tab)
            if page is None or page not in pages:
                page = await self._page_of_tab(tab)
            if page is not None and page in pages:
                self._tab_pages[tab] = page
                return page
        # No tab strip (headless) or a tab in flux: /json/list lists the most recently active first.
        for target in await self.cdp.targets_by_activity():
            if target.get("type") == "page" and str(target.get("id")) in pages:
                return str(target["id"])
        return None

    async def _page_of_tab(self, tab: str) -> str | None:
        # A browser session of its own: autoAttachRelated replaces the auto-attach settings of the
        # session it runs on, and the shared connection's browser session belongs to everyone.
        session = (await self.cdp.send("Target.attachToBrowserTarget"))["sessionId"]
        try:
            async with self.cdp.events(session) as events:
                await self.cdp.send(
                    "Target.autoAttachRelated",
                    {"targetId": tab, "waitForDebuggerOnStart": False, "filter": _PAGES},
                    session_id=session,
                )
                # Chromium reports the attachment before its reply; wait a little in case it did not.
                while True:
                    try:
                        event = await asyncio.wait_for(events.get(), 0.2)
                    except TimeoutError:
                        return None
                    info = event.get("params", {}).get("targetInfo", {})
                    attached = event.get("method") == "Target.attachedToTarget"
                    if attached and info.get("type") == "page" and not info.get("subtype"):
                        return str(info["targetId"])
        finally:
            with contextlib.suppress(CDPError, TimeoutError):
                await self.cdp.send("Target.detachFromTarget", {"sessionId": session}, timeout=5)
