"""The official `kernel` SDK drives /curl (prefix stripped, as the per-session proxy does)."""

from __future__ import annotations

import base64
import json

import kernel
import pytest

from agent.sandbox import Sandbox
from tests.helpers.echo_server import BINARY, EchoServer, closed_port
from tests.helpers.sdk import SESSION_ID, sdk_client


async def test_sdk_curl(sandbox: Sandbox, echo_server: EchoServer) -> None:
    client, transport = sdk_client(sandbox.agent_url)
    async with client:
        response = await client.browsers.curl(
            SESSION_ID,
            url=echo_server.url("/echo"),
            method="POST",
            headers={"X-Sdk": "1"},
            body="from the sdk",
            timeout_ms=10000,
        )
        assert response.status == 200
        seen = json.loads(response.body)
        assert seen["method"] == "POST"
        assert base64.b64decode(seen["body_b64"]) == b"from the sdk"
        assert ["X-Sdk", "1"] in seen["headers"]
        assert response.headers["Content-Type"] == ["application/json; charset=utf-8"]

        binary = await client.browsers.curl(
            SESSION_ID, url=echo_server.url("/binary"), response_encoding="base64"
        )
        assert base64.b64decode(binary.body) == BINARY

        with pytest.raises(kernel.APIStatusError) as caught:
            await client.browsers.curl(SESSION_ID, url=f"http://127.0.0.1:{closed_port()}/")
        assert caught.value.status_code == 502
        assert "ERR_CONNECTION_REFUSED" in str(caught.value)

        with pytest.raises(kernel.BadRequestError):
            await client.browsers.curl(SESSION_ID, url="ftp://example.com/")
    assert transport.seen[0][:2] == ("POST", "/curl")
