"""The telemetry collector against real Chromium: every event type from real pages, resume, restarts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
import websockets

from agent.sandbox import Sandbox
from harness.cdp import PageSession
from harness.sandboxes import private_sandbox

from .helpers import Reader, Site, reading


@pytest.fixture(scope="module")
def box() -> Iterator[Sandbox]:
    with private_sandbox("agent-test-telemetry-", telemetry_categories="all") as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
async def page(box: Sandbox) -> AsyncIterator[PageSession]:
    session = await PageSession.open(box.cdp_url)
    yield session
    await session.close()


@pytest.fixture
async def stream(box: Sandbox, http: aiohttp.ClientSession) -> AsyncIterator[Reader]:
    async with reading(http, box.agent_url + "/telemetry/stream") as reader:
        await asyncio.sleep(0.1)
        yield reader


async def test_a_real_page_produces_console_network_and_page_events(
    box: Sandbox, page: PageSession, site: Site, stream: Reader
) -> None:
    await page.navigate(site.url("/page"))
    nav = await stream.wait_type("page_navigation", url=site.url("/page"))
    target_id = nav[0]["event"]["data"]["target_id"]
    log = (await stream.wait_type("console_log", text="hello"))[0]["event"]
    assert log["category"] == "console" and log["source"] == {
        "kind": "cdp",
        "event": "Runtime.consoleAPICalled",
    }
    assert log["data"]["args"] == ["hello", "42", "true"] and log["data"]["level"] == "log"
    assert log["data"]["target_id"] == target_id and log["data"]["url"] == site.url("/page")
    assert log["data"]["nav_seq"] >= 1 and log["data"]["stack_trace"]["callFrames"]
    error = (await stream.wait_type("console_error", text="something bad"))[0]["event"]
    assert error["data"]["level"] == "error"
    await stream.wait_for(
        lambda es: any(
            "boom from timer" in e["event"]["data"].get("text", "")
            for e in es
            if e["event"]["type"] == "console_error" and "line" in e["event"]["data"]
        )
    )
    exc = next(e for e in stream.of("console_error") if "boom" in e["event"]["data"]["text"])["event"]
    assert exc["source"]["event"] == "Runtime.exceptionThrown"
    assert exc["data"].get("source_url") == site.url("/page") and exc["data"]["column"] >= 0, str(exc["data"])

    posted = (await stream.wait_type("network_request", method="POST"))[0]["event"]["data"]
    assert posted["post_data"] == "a=1&b=2" and posted["resource_type"] == "Fetch"
    json_response = (await stream.wait_type("network_response", method="POST"))[0]["event"]
    assert json_response["data"]["status"] == 200 and json_response["data"]["mime_type"] == "application/json"
    assert len(json_response["data"]["body"].encode()) == 8 * 1024 and json_response["truncated"] is True
    text = (await stream.wait_type("network_response", url=site.url("/big.txt")))[0]["event"]["data"]
    assert len(text["body"].encode()) <= 4 * 1024 and text["body"] == "é" * 2048
    redirected = await stream.wait_type("network_request", is_redirect=True)
    assert redirected[0]["event"]["data"]["redirect_url"] == site.url("/redirect")
    failed = (await stream.wait_type("network_loading_failed"))[0]["event"]["data"]
    assert failed["error_text"].startswith("net::ERR_")
    await stream.wait_type("network_idle")

    load = (await stream.wait_type("page_load", url=site.url("/page")))[0]["event"]["data"]
    assert isinstance(load["cdp_timestamp"], float)
    await stream.wait_type("page_dom_content_loaded", url=site.url("/page"))
    shift = (await stream.wait_type("page_layout_shift"))[0]["event"]["data"]
    assert shift["layout_shift_details"]["value"] > 0
    lcp = (await stream.wait_type("page_lcp"))[0]["event"]["data"]
    assert lcp["lcp_details"]["size"] > 0
    await stream.wait_type("page_layout_settled", url=site.url("/page"))
    settled = await stream.wait_type("page_navigation_settled", url=site.url("/page"))
    assert settled[0]["event"]["data"]["nav_seq"] == load["nav_seq"]
    # monitor_screenshot on load (the screenshot category is on): a real PNG.
    shot = (await stream.wait_type("monitor_screenshot"))[0]["event"]
    assert shot["data"]["png"].startswith("iVBORw0KGgo")
    assert stream.frames_with_event_field == 0
    assert stream.ids == [e["seq"] for e in stream.envelopes]


async def test_clicks_keys_and_scrolls_are_reported_but_not_password_keys(
    page: PageSession, site: Site, stream: Reader
) -> None:
    await page.navigate(site.url("/page"))
    await stream.wait_type("page_load", url=site.url("/page"))
    await asyncio.sleep(0.3)
    box = await page.evaluate(
        "(() => { const r = go.getBoundingClientRect(); return [r.x + 5, r.y + 5]; })()"
    )
    for kind in ("mousePressed", "mouseReleased"):
        await page.call(
            "Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1
        )
    click = (await stream.wait_type("interaction_click"))[0]["event"]["data"]
    assert click["tag"] == "BUTTON" and click["selector"] == "#go" and click["text"] == "Go"
    await page.evaluate("document.getElementById('name').focus()")
    await page.call("Input.dispatchKeyEvent", type="keyDown", key="q", text="q")
    await page.call("Input.dispatchKeyEvent", type="keyUp", key="q")
    key = (await stream.wait_type("interaction_key"))[0]["event"]["data"]
    assert key["key"] == "q" and key["selector"] == "#name" and key["tag"] == "INPUT"
    await page.evaluate("document.getElementById('pw').focus()")
    for letter in "hunter2":
        await page.call("Input.dispatchKeyEvent", type="keyDown", key=letter, text=letter)
        await page.call("Input.dispatchKeyEvent", type="keyUp", key=letter)
    await page.evaluate("document.getElementById('name').focus()")
    await page.call("Input.dispatchKeyEvent", type="keyDown", key="z", text="z")
    await stream.wait_type("interaction_key", key="z")
    keys = [e["event"]["data"]["key"] for e in stream.of("interaction_key")]
    assert keys == ["q", "z"]  # nothing of what went into the password field
    await page.evaluate("window.scrollTo(0, 400)")
    scroll = (await stream.wait_type("interaction_scroll_settled"))[0]["event"]["data"]
    assert (scroll["from_y"], scroll["to_y"]) == (0, 400)


async def test_new_tabs_are_attached_and_the_curl_targets_are_not(
    box: Sandbox, http: aiohttp.ClientSession, site: Site, stream: Reader
) -> None:
    async with http.put(box.cdp_url + "/json/new?" + site.url("/plain")) as response:
        tab = await response.json()
    opened = await stream.wait_type("page_tab_opened", target_id=tab["id"])
    assert opened[0]["event"]["data"]["target_type"] == "page"
    try:
        await stream.wait_type("page_load", target_id=tab["id"], timeout=5)
    except AssertionError:
        raise AssertionError(
            str([(e["event"]["type"], e["event"].get("data")) for e in stream.envelopes])
        ) from None
    async with http.post(box.agent_url + "/curl", json={"url": site.url("/data.json")}) as response:
        assert response.status == 200, await response.text()
    await asyncio.sleep(1.0)
    curl_urls = [
        e for e in stream.envelopes if e["event"].get("data", {}).get("url") == site.url("/data.json")
    ]
    assert curl_urls == []
    async with http.get(box.cdp_url + f"/json/close/{tab['id']}"):
        pass


async def test_a_renderer_crash_gives_page_crashed(
    box: Sandbox, http: aiohttp.ClientSession, site: Site, stream: Reader
) -> None:
    async with http.put(box.cdp_url + "/json/new?" + site.url("/plain")) as response:
        tab = await response.json()
    await stream.wait_type("page_load", target_id=tab["id"])
    async with http.get(box.cdp_url + "/json/list") as response:
        url = next(t for t in await response.json() if t["id"] == tab["id"])["webSocketDebuggerUrl"]
    async with websockets.connect(url) as ws:
        await ws.send('{"id": 1, "method": "Page.crash", "params": {}}')
        crashed = (await stream.wait_type("page_crashed", target_id=tab["id"]))[0]["event"]
    assert crashed["data"]["url"] == site.url("/plain") and crashed["category"] == "page"
    async with http.get(box.cdp_url + f"/json/close/{tab['id']}"):
        pass
