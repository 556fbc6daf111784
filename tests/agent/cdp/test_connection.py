"""The shared CDP connection against the real Chromium: commands, errors, sessions, events, state."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from agent.cdp.connection import ALL_SESSIONS, CDPConnection, CDPDisconnected, CDPError
from agent.sandbox import Sandbox


@pytest.fixture
async def connection(sandbox: Sandbox) -> AsyncIterator[CDPConnection]:
    conn = CDPConnection(sandbox.config.chromium_cdp_url)
    task = asyncio.get_running_loop().create_task(conn.run(), name="test-cdp-connection")
    await conn.wait_connected(10)
    yield conn
    await conn.close()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_commands_and_errors(connection: CDPConnection) -> None:
    version = await connection.send("Browser.getVersion")
    assert version["product"].startswith("Chrome/")
    with pytest.raises(CDPError) as caught:
        await connection.send("No.suchMethod")
    assert caught.value.code == -32601
    status = connection.status()
    assert status["connected"] is True and status["generation"] == 1
    assert status["browser"].startswith("Chrome/")


async def test_sessions_and_events(connection: CDPConnection) -> None:
    everything: list[dict[str, Any]] = []
    created = await connection.send("Target.createTarget", {"url": "about:blank", "hidden": True})
    session = await connection.attach(created["targetId"])
    try:
        with connection.subscribe(everything.append, session_id=ALL_SESSIONS):
            await session.send("Page.enable")
            await session.send("Page.navigate", {"url": "data:text/html,<title>events</title>"})
            while True:  # this session's events arrive on its own queue
                event = await asyncio.wait_for(session.events.get(), 10)
                assert event["sessionId"] == session.session_id
                if event["method"] == "Page.loadEventFired":
                    break
            title = await session.send(
                "Runtime.evaluate", {"expression": "document.title", "returnByValue": True}
            )
            assert title["result"]["value"] == "events"
        assert any(e.get("method") == "Page.loadEventFired" for e in everything)
        count = len(everything)
        await session.send("Runtime.evaluate", {"expression": "1"})
        assert len(everything) == count  # unsubscribed
    finally:
        session.close()
        await connection.send("Target.closeTarget", {"targetId": created["targetId"]})


async def test_targets_by_activity(connection: CDPConnection) -> None:
    targets = await connection.targets_by_activity()
    assert any(t["type"] == "page" for t in targets)


async def test_a_closed_connection_fails_calls_and_reports_it(sandbox: Sandbox) -> None:
    states: list[tuple[bool, int]] = []
    conn = CDPConnection(sandbox.config.chromium_cdp_url)
    conn.on_state(lambda connected, generation: states.append((connected, generation)))
    with pytest.raises(CDPDisconnected):
        await conn.send("Browser.getVersion")
    with pytest.raises(CDPDisconnected):
        await conn.wait_connected(0.05)
    task = asyncio.get_running_loop().create_task(conn.run(), name="test-cdp-connection")
    try:
        await conn.wait_connected(10)
        assert states == [(True, 1)]
    finally:
        await conn.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert states[-1] == (False, 1)
    assert conn.status()["connected"] is False
