"""POST /curl through the real Chromium's network stack, against a loopback server."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import aiohttp

from agent.sandbox import Sandbox
from agent.spec import Spec, check
from harness.cdp import PageSession
from tests.conftest import AgentClient, Reply
from tests.helpers.echo_server import BINARY, EchoServer, closed_port

SPEC = Spec.load()
RESULT = SPEC.schema_validator("BrowserCurlResult")
TRANSPORT_ERROR = SPEC.schema_validator("BrowserCurlTransportError")
ERROR = SPEC.schema_validator("Error")


async def curl(agent: AgentClient, **body: Any) -> Reply:
    return await agent.post("/curl", body)


def result(reply: Reply) -> dict[str, Any]:
    assert reply.status == 200, reply
    data: dict[str, Any] = reply.json()
    check(RESULT, data)
    return data


def echoed(reply: Reply) -> dict[str, Any]:
    data = result(reply)
    assert data["status"] == 200, data
    seen: dict[str, Any] = json.loads(data["body"])
    return seen


def header(seen: dict[str, Any], name: str) -> str | None:
    return next((v for k, v in seen["headers"] if k.lower() == name.lower()), None)


async def page_targets(sandbox: Sandbox) -> list[tuple[str, str]]:
    async with aiohttp.ClientSession() as http, http.get(sandbox.cdp_url + "/json/list") as response:
        targets = await response.json()
    return sorted((t["id"], t["url"]) for t in targets if t["type"] == "page")


async def test_cookies_from_a_page_visit_are_sent_httponly_too(
    agent: AgentClient, echo_server: EchoServer, cdp_page: PageSession
) -> None:
    await cdp_page.navigate(echo_server.url("/cookies/set?v=7"))
    seen = echoed(await curl(agent, url=echo_server.url("/echo")))
    assert seen["cookies"]["visible"] == "v7"
    assert seen["cookies"]["secret"] == "s7"  # HttpOnly, SameSite=Strict: the browser's own request sends it


async def test_set_cookie_in_an_answer_lands_in_the_jar(agent: AgentClient, echo_server: EchoServer) -> None:
    data = result(await curl(agent, url=echo_server.url("/cookies/set?v=curl")))
    assert sorted(c.split(";")[0] for c in data["headers"]["Set-Cookie"]) == ["secret=scurl", "visible=vcurl"]
    seen = echoed(await curl(agent, url=echo_server.url("/echo")))
    assert seen["cookies"] == {"visible": "vcurl", "secret": "scurl"}


async def test_post_body_and_headers_are_echoed(agent: AgentClient, echo_server: EchoServer) -> None:
    body = '{"hello": "wörld ✓"}'
    seen = echoed(
        await curl(
            agent,
            url=echo_server.url("/echo?q=1"),
            method="POST",
            headers={"X-Custom": "yes", "Content-Type": "application/json", "User-Agent": "mine/1.0"},
            body=body,
        )
    )
    assert seen["method"] == "POST"
    assert seen["query"] == {"q": "1"}
    assert base64.b64decode(seen["body_b64"]).decode() == body
    assert header(seen, "X-Custom") == "yes"
    assert header(seen, "Content-Type") == "application/json"
    assert header(seen, "User-Agent") == "mine/1.0"  # the caller's header wins over the browser's
    assert header(seen, "Accept-Language")  # the browser's own headers are there too


async def test_every_method(agent: AgentClient, echo_server: EchoServer) -> None:
    for method in ("PUT", "PATCH", "DELETE", "OPTIONS"):
        seen = echoed(await curl(agent, url=echo_server.url("/echo"), method=method, body="x"))
        assert seen["method"] == method
    data = result(await curl(agent, url=echo_server.url("/echo"), method="HEAD"))
    assert (data["status"], data["body"]) == (200, "")


async def test_browser_headers_without_custom_ones(agent: AgentClient, echo_server: EchoServer) -> None:
    seen = echoed(await curl(agent, url=echo_server.url("/echo")))
    assert seen["method"] == "GET"
    assert "Chrome/" in (header(seen, "User-Agent") or "")
    assert header(seen, "Sec-CH-UA")  # client hints: what Chromium sends, not a lookalike


async def test_binary_body_round_trips_through_base64(agent: AgentClient, echo_server: EchoServer) -> None:
    data = result(await curl(agent, url=echo_server.url("/binary"), response_encoding="base64"))
    assert base64.b64decode(data["body"]) == BINARY
    assert data["headers"]["Content-Type"] == ["application/octet-stream"]
    assert isinstance(data["duration_ms"], int) and data["duration_ms"] >= 0


async def test_multi_value_headers(agent: AgentClient, echo_server: EchoServer) -> None:
    data = result(await curl(agent, url=echo_server.url("/multi")))
    assert data["headers"]["X-Multi"] == ["one", "two"]
    assert data["headers"]["Set-Cookie"] == ["m1=a; Path=/multi", "m2=b; Path=/multi; HttpOnly"]
    assert data["body"] == "multi"


async def test_redirects_are_returned_not_followed(agent: AgentClient, echo_server: EchoServer) -> None:
    before = len(echo_server.seen)
    data = result(await curl(agent, url=echo_server.url("/redirect")))
    assert data["status"] == 302
    assert data["headers"]["Location"] == ["/echo?from=redirect"]
    assert len(echo_server.seen) == before


async def test_a_closed_port_is_a_502_with_the_net_error(agent: AgentClient) -> None:
    reply = await curl(agent, url=f"http://127.0.0.1:{closed_port()}/")
    assert reply.status == 502, reply
    body = reply.json()
    check(TRANSPORT_ERROR, body)
    check(SPEC.schema_validator("Error"), body)  # also an Error {code, message}, like every error body
    assert body["code"] == "browser_curl_transport_error"
    assert (body["net_error"], body["net_error_name"]) == (-102, "ERR_CONNECTION_REFUSED")
    assert "ERR_CONNECTION_REFUSED" in body["message"]


async def test_a_restricted_port_fails_before_any_request(agent: AgentClient) -> None:
    reply = await curl(agent, url="http://127.0.0.1:25/")
    assert reply.status == 502, reply
    assert reply.json()["net_error_name"] == "ERR_UNSAFE_PORT"
    assert reply.json()["net_error"] == -312


async def test_timeout(agent: AgentClient, echo_server: EchoServer) -> None:
    reply = await curl(agent, url=echo_server.url("/slow?s=10"), timeout_ms=1000)
    assert reply.status == 502, reply
    assert reply.json()["net_error_name"] == "ERR_TIMED_OUT"
    assert "1000 ms" in reply.json()["message"]
    echoed(await curl(agent, url=echo_server.url("/echo")))  # and the next request is fine


async def test_body_above_the_cap_is_a_clear_error(
    agent: AgentClient, echo_server: EchoServer, sandbox: Sandbox
) -> None:
    cap = sandbox.config.curl_max_response_bytes
    reply = await curl(agent, url=echo_server.url(f"/chunked?bytes={cap + 1}"))
    assert reply.status == 502, reply
    check(TRANSPORT_ERROR, reply.json())
    assert "too large" in reply.json()["message"] and str(cap) in reply.json()["message"]
    small = result(await curl(agent, url=echo_server.url("/chunked?bytes=300000")))
    assert small["body"] == "z" * 300000


async def test_bad_urls_are_400(agent: AgentClient) -> None:
    for url in ("ftp://example.com/", "file:///etc/passwd", "javascript:alert(1)", "not a url", "http://"):
        reply = await curl(agent, url=url)
        assert reply.status == 400, (url, reply)
        check(ERROR, reply.json())
    reply = await curl(agent, url="http://x/", method="TRACE")
    assert reply.status == 400, reply
    reply = await curl(agent, url="http://x/", timeout_ms=10)
    assert reply.status == 400, reply


async def test_ten_concurrent_requests(agent: AgentClient, echo_server: EchoServer) -> None:
    replies = await asyncio.gather(
        *(curl(agent, url=echo_server.url(f"/echo?n={n}"), headers={"X-N": str(n)}) for n in range(10))
    )
    for n, reply in enumerate(replies):
        seen = echoed(reply)
        assert seen["query"] == {"n": str(n)}
        assert header(seen, "X-N") == str(n)


async def test_the_users_tabs_are_left_alone(
    agent: AgentClient, echo_server: EchoServer, sandbox: Sandbox, cdp_page: PageSession
) -> None:
    await cdp_page.navigate(echo_server.url("/page?title=mine"))
    before = await page_targets(sandbox)
    for _ in range(3):
        echoed(await curl(agent, url=echo_server.url("/echo")))
    assert await page_targets(sandbox) == before  # no tab opened, none navigated
    assert await cdp_page.evaluate("document.title") == "mine"
    # Nor does Playwright see a page of ours.
    code = "return browser.contexts().flatMap((c) => c.pages()).map((p) => p.url())"
    urls = (await agent.post("/playwright/execute", {"code": code})).json()["result"]
    assert urls and not [u for u in urls if "__agent_curl__" in u]


async def test_health_reports_the_cdp_connection(agent: AgentClient) -> None:
    report = (await agent.get("/health")).json()
    assert report["cdp"]["connected"] is True
    assert report["cdp"]["generation"] >= 1
    assert "connections" in report["cdp"]["proxy"]


async def test_credentials_in_the_url_become_basic_auth(agent: AgentClient, echo_server: EchoServer) -> None:
    url = echo_server.url("/echo").replace("http://", "http://alice:s%40cret@")
    seen = echoed(await curl(agent, url=url))
    assert header(seen, "Authorization") == "Basic " + base64.b64encode(b"alice:s@cret").decode()


async def test_several_origins_in_turn(agent: AgentClient, echo_server: EchoServer) -> None:
    # 127.0.0.1 and localhost are different origins of the same server (and different cookie jars).
    other = echo_server.url("/echo").replace("127.0.0.1", "localhost")
    for url in (echo_server.url("/echo?a"), other + "?b", echo_server.url("/echo?c"), other + "?d"):
        seen = echoed(await curl(agent, url=url))
        assert seen["query"] == {url[-1]: ""}


async def test_the_request_is_the_sites_own_kind(agent: AgentClient, echo_server: EchoServer) -> None:
    seen = echoed(await curl(agent, url=echo_server.url("/echo")))
    assert header(seen, "Sec-Fetch-Site") == "same-origin"
    assert header(seen, "Referer") is None  # the hidden document is ours: no referrer leaks its path
