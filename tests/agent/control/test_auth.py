"""Session tokens beyond loopback (issue 13 item 2) and on the CDP proxy: the agent bound to 0.0.0.0 with a
key refuses missing, forged and expired tokens on the API and the proxy (HTTP and websocket upgrades) and
takes valid ones (Playwright's connect_over_cdp with the signed URL included); a token in `?jwt=` never
reaches the agent's log file or its telemetry; without a key the agent will not start there unless told
`--insecure-no-auth`."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from playwright.async_api import async_playwright

from agent import config as config_module
from agent.auth import SessionAuth, Unauthorized, is_loopback, redact, startup_problem
from agent.config import Config
from agent.jwt import public_key_text, session_token, sign
from agent.sandbox import REPO, Sandbox
from harness.sandboxes import free_port, private_sandbox

SIGNING = Ed25519PrivateKey.generate()


def test_loopback_names_and_addresses() -> None:
    for host in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "x.localhost"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "", "::", "10.0.0.5", "example.com"):
        assert not is_loopback(host), host


def test_start_up_refuses_a_public_bind_without_a_key() -> None:
    problem = startup_problem(Config(host="0.0.0.0"))
    assert problem is not None
    assert "--insecure-no-auth" in problem and "AGENT_CONTROL_JWT_PUBLIC_KEY" in problem
    assert startup_problem(Config(host="0.0.0.0", insecure_no_auth=True)) is None
    keyed = Config(host="0.0.0.0", control_jwt_public_key=public_key_text(SIGNING.public_key()))
    assert startup_problem(keyed) is None
    # A control link brings the key (WELCOME): until it does, every route is 401 (fail closed).
    assert startup_problem(Config(host="0.0.0.0", control_url="tcp://10.0.0.1:7700")) is None
    assert startup_problem(Config(host="127.0.0.1")) is None
    assert "not a usable" in str(startup_problem(Config(control_jwt_public_key="nonsense")))


def test_insecure_no_auth_from_env_and_cli() -> None:
    assert config_module.load(env={"AGENT_INSECURE_NO_AUTH": "1"}).insecure_no_auth is True
    parser = argparse.ArgumentParser()
    config_module.add_arguments(parser)
    assert config_module.load(parser.parse_args(["--insecure-no-auth"]), env={}).insecure_no_auth is True
    assert config_module.load(parser.parse_args(["--headless", "0"]), env={}).headless is False
    assert config_module.load(parser.parse_args([]), env={}).insecure_no_auth is False


def test_tokens_are_redacted() -> None:
    line = 'GET /computer/get_mouse_position?x=1&jwt=eyJh.eyJz.c2ln HTTP/1.1 "Bearer eyJh.b.c"'
    assert redact(line) == 'GET /computer/get_mouse_position?x=1&jwt=<redacted> HTTP/1.1 "Bearer <redacted>"'


def test_verified_tokens_are_remembered_but_their_claims_checked_each_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    auth = SessionAuth(SIGNING.public_key(), agent_id="agent-1")
    auth.session_id = "s-1"
    token = session_token(SIGNING, "s-1", "agent-1", 60)
    auth.check("/x", token)
    auth.check("/x", token)  # from the cache
    auth.session_id = "s-2"
    with pytest.raises(Unauthorized):
        auth.check("/x", token)
    auth.session_id = "s-1"
    later = time.time() + 3600  # past exp + leeway: a remembered token expires too
    monkeypatch.setattr(time, "time", lambda: later)
    with pytest.raises(Unauthorized, match="expired"):
        auth.check("/x", token)
    monkeypatch.undo()
    auth.check("/x", token)
    auth.set_key(Ed25519PrivateKey.generate().public_key())  # the CP's new key: old tokens are re-verified
    with pytest.raises(Unauthorized, match="bad signature"):
        auth.check("/x", token)
    # The key now came over the link and nothing requires a token here (loopback): one sent is still verified.
    assert auth.status() == {"key": True, "required": False, "refused": 3}
    auth.check("/x", None)
    required = SessionAuth(SIGNING.public_key(), required=True)  # beyond loopback
    required.set_key(SIGNING.public_key())
    with pytest.raises(Unauthorized):
        required.check("/x", None)


def _serve(*args: str, state: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_")}
    command = [sys.executable, "-m", "agent", "serve", "--state-dir", str(state), *args]
    return subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.fixture
def state() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="agent-test-auth-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_a_public_bind_without_a_key_exits_with_the_fix_named(state: Path) -> None:
    ports = [
        "--port",
        str(free_port()),
        "--cdp-port",
        str(free_port()),
        "--chromium-cdp-port",
        str(free_port()),
    ]
    proc = _serve("--host", "0.0.0.0", *ports, state=state)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "refusing to serve on '0.0.0.0'" in err and "--insecure-no-auth" in err


def test_a_public_bind_with_insecure_no_auth_starts(state: Path) -> None:
    port = free_port()
    ports = ["--port", str(port), "--cdp-port", str(free_port()), "--chromium-cdp-port", str(free_port())]
    proc = _serve("--host", "0.0.0.0", *ports, "--insecure-no-auth", state=state)
    try:
        deadline = time.monotonic() + 60
        status = 0
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/spec.json", timeout=2) as response:
                    status = response.status
                    break
            except (OSError, urllib.error.URLError):
                time.sleep(0.2)
        assert status == 200, proc.poll()
        # No token needed on a protected route either: the operator said so.
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/process/exec",
            data=json.dumps({"command": "true"}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200 and json.loads(response.read())["exit_code"] == 0
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


# ---- a real sandbox on 0.0.0.0 with a key ---------------------------------------------------------------


@pytest.fixture(scope="module")
def box() -> Iterator[Sandbox]:
    with private_sandbox(
        "agent-test-auth-box-",
        host="0.0.0.0",
        control_jwt_public_key=public_key_text(SIGNING.public_key()),
        log_level="debug",  # the access log is on: it must not carry tokens either
    ) as sandbox:
        yield sandbox


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        yield session


def good() -> str:
    return session_token(SIGNING, "s-1", "agent-1", 120)


def bad_tokens() -> dict[str, str]:
    now = int(time.time())
    return {
        "forged": session_token(Ed25519PrivateKey.generate(), "s-1", "agent-1", 120),
        "expired": sign(SIGNING, {"sub": "s-1", "agent": "agent-1", "iat": now - 600, "exp": now - 300}),
        "garbage": "not.a.jwt",
    }


async def status_of(http: aiohttp.ClientSession, url: str, **kw: Any) -> tuple[int, Any]:
    async with http.get(url, **kw) as response:
        body = await response.read()
        return response.status, body


async def test_the_api_needs_a_valid_token(box: Sandbox, http: aiohttp.ClientSession) -> None:
    url = box.agent_url + "/computer/get_mouse_position"
    status, body = await status_of(http, box.agent_url + "/health")
    assert status == 200 and "jwt" not in body.decode()  # open for probes, and no secret in it
    async with http.post(url) as response:
        assert response.status == 401 and (await response.json())["code"] == "unauthorized"
    for name, token in bad_tokens().items():
        async with http.post(url, params={"jwt": token}) as response:
            assert response.status == 401, name
        async with http.post(url, headers={"Authorization": f"Bearer {token}"}) as response:
            assert response.status == 401, name
    async with http.post(url, params={"jwt": good()}) as response:
        assert response.status == 200
    async with http.post(url, headers={"Authorization": f"Bearer {good()}"}) as response:
        assert response.status == 200


async def test_the_cdp_proxy_needs_a_valid_token(box: Sandbox, http: aiohttp.ClientSession) -> None:
    version = box.cdp_url + "/json/version"
    assert (await status_of(http, version))[0] == 401
    for name, token in bad_tokens().items():
        assert (await status_of(http, version, params={"jwt": token}))[0] == 401, name
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(f"ws://127.0.0.1:{box.config.cdp_port}/devtools/browser?jwt={token}")
        assert refused.value.status == 401, name
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(f"ws://127.0.0.1:{box.config.cdp_port}/devtools/browser")
    assert refused.value.status == 401
    status, body = await status_of(http, version, headers={"Authorization": f"Bearer {good()}"})
    assert status == 200 and "jwt=" not in json.loads(body)["webSocketDebuggerUrl"]
    token = good()
    status, body = await status_of(http, version, params={"jwt": token})
    # The token came in the query: the websocket URL the answer names carries it on.
    assert status == 200 and json.loads(body)["webSocketDebuggerUrl"].endswith(f"?jwt={token}")


async def test_playwright_connects_with_the_signed_urls(box: Sandbox) -> None:
    token = good()
    async with async_playwright() as pw:
        # As the control plane's cdp_ws_url has it (ws://host:port?jwt=…), and the http form.
        for url in (f"ws://127.0.0.1:{box.config.cdp_port}?jwt={token}", f"{box.cdp_url}?jwt={token}"):
            browser = await pw.chromium.connect_over_cdp(url)
            try:
                context = browser.contexts[0]
                page = await context.new_page()
                assert await page.evaluate("6 * 7") == 42
                await page.close()
            finally:
                await browser.close()


async def test_a_token_in_the_query_is_in_no_log_and_no_telemetry(
    box: Sandbox, http: aiohttp.ClientSession
) -> None:
    token = good()
    marker = token.rsplit(".", 1)[1]  # the signature: the part a log line would show
    async with http.post(
        box.agent_url + "/computer/move_mouse", params={"jwt": token}, json={"x": 3, "y": 4}
    ):
        pass
    async with http.post(box.agent_url + "/computer/move_mouse", params={"jwt": "bad." + marker}, json={}):
        pass  # refused: its message names no token either
    assert (await status_of(http, box.cdp_url + "/json/list", params={"jwt": token}))[0] == 200
    auth = {"Authorization": f"Bearer {token}"}
    status, body = await status_of(
        http, box.agent_url + "/telemetry/events", params={"limit": "1000"}, headers=auth
    )
    assert status == 200 and b"api_call" in body
    assert marker not in body.decode()
    log_file = box.log_dir / "agent.log"
    deadline = time.monotonic() + 10
    text = ""
    while time.monotonic() < deadline:  # the access line is written after the response
        text = log_file.read_text(errors="replace")
        if "move_mouse?jwt=<redacted>" in text:
            break
        await asyncio.sleep(0.1)
    assert "move_mouse?jwt=<redacted>" in text
    assert marker not in text
