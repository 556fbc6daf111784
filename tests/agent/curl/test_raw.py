"""/curl/raw through the real Chromium: the SDK's own direct-to-VM helpers, and the raw HTTP shape."""

from __future__ import annotations

import base64
import json
from typing import Any

import aiohttp
import kernel
import pytest
from kernel.lib.browser_routing.routing import BrowserRoute

from agent.sandbox import Sandbox
from agent.spec import Spec, check
from harness.cdp import PageSession
from harness.rss import PeakRss
from harness.sandboxes import private_sandbox
from tests.agent.fs.conftest import agent_pid
from tests.conftest import AgentClient
from tests.helpers.echo_server import BINARY, EchoServer, closed_port
from tests.helpers.sdk import SESSION_ID, sdk_client

MiB = 1024 * 1024
GiB = 1024 * MiB
RSS_BOUND = 64 * MiB
SPEC = Spec.load()
TRANSPORT_ERROR = SPEC.schema_validator("BrowserCurlTransportError")
ERROR = SPEC.schema_validator("Error")


def direct_client(sandbox: Sandbox) -> kernel.AsyncKernel:
    """The SDK as it is after browsers.create: the session's route (the VM's base URL and JWT) is cached, so
    browsers.request / browsers.stream go to the VM directly, as `<base_url>/curl/raw?url=…&jwt=…`."""
    client, _ = sdk_client(sandbox.agent_url)
    client.browser_route_cache.set(BrowserRoute(SESSION_ID, base_url=sandbox.agent_url, jwt="the-vm-jwt"))
    return client


def header(seen: dict[str, Any], name: str) -> str | None:
    return next((v for k, v in seen["headers"] if k.lower() == name.lower()), None)


async def test_sdk_get_sends_the_pages_cookies_and_the_callers_query(
    sandbox: Sandbox, echo_server: EchoServer, cdp_page: PageSession
) -> None:
    await cdp_page.navigate(echo_server.url("/cookies/set?v=raw"))
    async with direct_client(sandbox) as client:
        response = await client.browsers.request(
            SESSION_ID, "GET", echo_server.url("/echo?a=1"), params={"b": "two words", "c": "3"}
        )
    assert response.status_code == 200
    assert response.url.path == "/curl/raw"
    assert response.url.params["jwt"] == "the-vm-jwt"  # the SDK's own wire shape
    seen = response.json()
    assert seen["method"] == "GET"
    assert seen["query"] == {"a": "1", "b": "two words", "c": "3"}  # url and jwt stay the agent's
    assert seen["cookies"]["visible"] == "vraw"
    assert seen["cookies"]["secret"] == "sraw"  # HttpOnly, SameSite=Strict: the browser's own request
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    ua = header(seen, "User-Agent") or ""
    assert "Chrome/" in ua and "Kernel/Python" not in ua  # the browser's, not the SDK's
    assert not [k for k, _ in seen["headers"] if k.lower().startswith("x-stainless-")]


async def test_sdk_post_with_a_binary_body(sandbox: Sandbox, echo_server: EchoServer) -> None:
    async with direct_client(sandbox) as client:
        response = await client.browsers.request(
            SESSION_ID,
            "POST",
            echo_server.url("/echo"),
            content=BINARY,
            headers={"Content-Type": "application/octet-stream", "X-Raw": "yes"},
        )
    assert response.status_code == 200
    seen = response.json()
    assert seen["method"] == "POST"
    assert base64.b64decode(seen["body_b64"]) == BINARY  # every byte value, unchanged
    assert header(seen, "Content-Type") == "application/octet-stream"
    assert header(seen, "X-Raw") == "yes"


async def test_sdk_stream_of_1_gib_in_constant_agent_memory(
    sandbox: Sandbox, echo_server: EchoServer
) -> None:
    received = 0
    async with direct_client(sandbox) as client:
        with PeakRss(agent_pid(sandbox)) as rss:
            async with client.browsers.stream(
                SESSION_ID, "GET", echo_server.url(f"/chunked?bytes={GiB}"), timeout=300
            ) as response:
                assert response.status_code == 200
                async for chunk in response.aiter_raw():
                    assert chunk.count(b"z") == len(chunk)
                    received += len(chunk)
    assert received == GiB
    assert rss.growth < RSS_BOUND, f"agent RSS grew {rss.growth / MiB:.0f} MiB streaming 1 GiB"


async def test_sdk_refused_port_is_a_502_with_the_net_error(sandbox: Sandbox) -> None:
    async with direct_client(sandbox) as client:
        with pytest.raises(kernel.APIStatusError) as caught:
            await client.browsers.request(SESSION_ID, "GET", f"http://127.0.0.1:{closed_port()}/x")
    assert caught.value.status_code == 502
    body = caught.value.response.json()
    check(TRANSPORT_ERROR, body)
    assert body["net_error_name"] == "ERR_CONNECTION_REFUSED" and body["net_error"] == -102


async def raw(agent: AgentClient, method: str, url: str, **kwargs: Any) -> tuple[int, Any, bytes]:
    async with agent.http.request(
        method, agent.base_url + "/curl/raw", params={"url": url}, allow_redirects=False, **kwargs
    ) as response:
        return response.status, response.headers, await response.read()


async def test_set_cookie_comes_back_raw_and_lands_in_the_jar(
    agent: AgentClient, echo_server: EchoServer
) -> None:
    status, headers, body = await raw(agent, "GET", echo_server.url("/multi"))
    assert status == 200 and body == b"multi"
    assert headers.getall("X-Multi") == ["one", "two"]
    assert headers.getall("Set-Cookie") == ["m1=a; Path=/multi", "m2=b; Path=/multi; HttpOnly"]
    status, headers, _ = await raw(agent, "GET", echo_server.url("/cookies/set?v=jar"))
    assert status == 200 and len(headers.getall("Set-Cookie")) == 2
    # The browser's jar has them now: its next request sends them, the HttpOnly one too.
    status, _, body = await raw(agent, "GET", echo_server.url("/echo"))
    assert status == 200
    assert json.loads(body)["cookies"] == {"visible": "vjar", "secret": "sjar"}


async def test_every_method_and_head(agent: AgentClient, echo_server: EchoServer) -> None:
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
        data = b"x" if method != "GET" else None
        status, _, body = await raw(agent, method, echo_server.url("/echo"), data=data)
        assert status == 200, (method, body[:300])
        assert json.loads(body)["method"] == method
    status, headers, body = await raw(agent, "HEAD", echo_server.url("/binary"))
    assert status == 200 and body == b""
    assert headers["Content-Type"] == "application/octet-stream"


async def test_redirects_and_statuses_come_back_as_they_are(
    agent: AgentClient, echo_server: EchoServer
) -> None:
    status, headers, _ = await raw(agent, "GET", echo_server.url("/redirect"))
    assert status == 302 and headers["Location"] == "/echo?from=redirect"
    status, _, _ = await raw(agent, "GET", echo_server.url("/nothing-here"))
    assert status == 404
    status, headers, body = await raw(agent, "GET", echo_server.url("/binary"))
    assert status == 200 and body == BINARY and headers["Content-Length"] == str(len(BINARY))


async def test_client_mistakes_are_4xx(agent: AgentClient, sandbox: Sandbox) -> None:
    async with agent.http.get(agent.base_url + "/curl/raw") as response:
        assert response.status == 400
        check(ERROR, await response.json())
    for url in ("ftp://example.com/", "not a url"):
        status, _, body = await raw(agent, "GET", url)
        assert status == 400, body
        check(ERROR, json.loads(body))


async def test_the_caps(echo_server: EchoServer) -> None:
    with private_sandbox(
        "agent-test-curlraw-", curl_raw_max_bytes=8192, curl_raw_max_request_bytes=1024
    ) as box:
        async with aiohttp.ClientSession() as http:
            agent = AgentClient(box.agent_url, http)
            # A declared length over the cap: refused before anything is sent (502, the net error).
            status, _, body = await raw(agent, "GET", echo_server.url("/binary"))
            assert status == 502, body
            error = json.loads(body)
            check(TRANSPORT_ERROR, error)
            assert error["net_error_name"] == "ERR_FILE_TOO_BIG" and "curl_raw_max_bytes" in error["message"]
            # No declared length: the status went out, so the transfer is cut, never complete-looking.
            with pytest.raises(aiohttp.ClientPayloadError):
                await raw(agent, "GET", echo_server.url("/chunked?bytes=65536"))
            # A request body over its cap is the client's mistake.
            status, _, body = await raw(agent, "POST", echo_server.url("/echo"), data=b"x" * 1025)
            assert status == 413, body
            check(ERROR, json.loads(body))
            # Nothing is stuck: the next requests work.
            status, _, body = await raw(agent, "POST", echo_server.url("/echo"), data=b"x" * 1024)
            assert status == 200 and base64.b64decode(json.loads(body)["body_b64"]) == b"x" * 1024
            status, _, body = await raw(agent, "GET", echo_server.url("/chunked?bytes=8192"))
            assert status == 200 and body == b"z" * 8192
