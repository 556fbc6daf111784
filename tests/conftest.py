"""Session fixtures: one real sandbox (supervisord + Xvfb + Chromium + agent) for the whole run."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
import pytest

from agent.sandbox import Sandbox
from harness.cdp import PageSession
from harness.sandboxes import private_sandbox
from tests.helpers.echo_server import EchoServer
from tests.helpers.pages import PageServer


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    with private_sandbox("agent-test-sandbox-") as box:
        yield box


class Reply:
    def __init__(self, status: int, headers: Any, body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"<Reply {self.status} {self.body[:300]!r}>"


class AgentClient:
    def __init__(self, base_url: str, http: aiohttp.ClientSession) -> None:
        self.base_url = base_url
        self.http = http

    async def request(self, method: str, path: str, **kwargs: Any) -> Reply:
        async with self.http.request(method, self.base_url + path, **kwargs) as response:
            return Reply(response.status, response.headers, await response.read())

    async def post(self, path: str, body: Any = None, **kwargs: Any) -> Reply:
        if body is not None:
            kwargs["json"] = body
        return await self.request("POST", path, **kwargs)

    async def get(self, path: str, **kwargs: Any) -> Reply:
        return await self.request("GET", path, **kwargs)


@pytest.fixture(scope="session")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        yield session


@pytest.fixture(scope="session")
async def agent(sandbox: Sandbox, http: aiohttp.ClientSession) -> AgentClient:
    return AgentClient(sandbox.agent_url, http)


@pytest.fixture(scope="session")
async def page_server() -> AsyncIterator[PageServer]:
    server = PageServer()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture(scope="session")
async def echo_server() -> AsyncIterator[EchoServer]:
    """A loopback HTTP server that echoes requests and serves test pages (curl, Playwright, CDP tests)."""
    server = EchoServer()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture(scope="session")
async def cdp_page(sandbox: Sandbox) -> AsyncIterator[PageSession]:
    session = await PageSession.open(sandbox.cdp_url)
    yield session
    await session.close()


class RecorderPage:
    """The recorder page as the user sees it, with screen coordinates of its content."""

    def __init__(self, cdp: PageSession, agent: AgentClient) -> None:
        self.cdp = cdp
        self.agent = agent
        self.origin = (0, 0)

    async def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = await self.cdp.evaluate("window.__events")
        return [e for e in events if kind is None or e["type"] == kind]

    async def wait_for(
        self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 5.0
    ) -> list[dict[str, Any]]:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            events = await self.events()
            if predicate(events):
                return events
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"page never saw what was expected; it saw {events[-20:]}")
            await asyncio.sleep(0.02)

    async def clear(self) -> None:
        await self.cdp.evaluate("window.__events.length = 0")

    def screen(self, client_x: int, client_y: int) -> tuple[int, int]:
        return self.origin[0] + client_x, self.origin[1] + client_y

    async def center_of(self, selector: str) -> tuple[int, int]:
        rect = await self.cdp.evaluate(
            f"(() => {{ const r = document.querySelector({json.dumps(selector)}).getBoundingClientRect();"
            " return [r.left + r.width / 2, r.top + r.height / 2]; })()"
        )
        return self.screen(int(rect[0]), int(rect[1]))

    async def value(self, selector: str = "#t") -> str:
        value: str = await self.cdp.evaluate(f"document.querySelector({json.dumps(selector)}).value")
        return value

    async def focus_input(self) -> None:
        """Click into the text field (as a user would) and wait until it has the focus."""
        x, y = await self.center_of("#t")
        reply = await self.agent.post("/computer/click_mouse", {"x": x, "y": y})
        assert reply.status == 200, reply
        for _ in range(100):
            if await self.cdp.evaluate("document.activeElement && document.activeElement.id === 't'"):
                await self.clear()
                return
            await asyncio.sleep(0.02)
        raise AssertionError("the text field never got the focus")


@pytest.fixture
async def page(cdp_page: PageSession, page_server: PageServer, agent: AgentClient) -> RecorderPage:
    await cdp_page.navigate(page_server.url())
    recorder = RecorderPage(cdp_page, agent)
    # Where the page's content starts on the screen: move the pointer and compare coordinates. A new
    # document ignores input until its first frame is up, so keep nudging until the page sees a move.
    for attempt in range(100):
        target = (960 + attempt % 2, 600)
        reply = await agent.post("/computer/move_mouse", {"x": target[0], "y": target[1], "smooth": False})
        assert reply.status == 200, reply
        await asyncio.sleep(0.03)
        moves = await recorder.events("mousemove")
        if moves:
            move = moves[-1]
            break
    else:
        raise AssertionError("the page never saw the pointer move")
    recorder.origin = (move["x"] - move["cx"], move["y"] - move["cy"])
    await recorder.clear()
    return recorder
