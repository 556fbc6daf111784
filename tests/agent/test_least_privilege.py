"""Least privilege (issue 13): Chromium runs as an unprivileged user with its own sandbox on, its DevTools
listen on loopback only and refuse web origins; the agent's own clients (its CDP connection, the proxy,
Playwright over the proxy) keep working. Checked on the real processes of the session's sandbox."""

from __future__ import annotations

import os
from pathlib import Path

import psutil
import pytest
import websockets
from playwright.async_api import async_playwright

from agent.sandbox import Sandbox
from tests.conftest import AgentClient


def _browser(sandbox: Sandbox) -> psutil.Process:
    """Chromium's browser process: the chromium program of the sandbox's supervisord (the launcher and
    setpriv exec into it, so it keeps their pid)."""
    pid = int(sandbox.supervisorctl("pid", "chromium").strip())
    process = psutil.Process(pid)
    assert "--type=" not in " ".join(process.cmdline()), process.cmdline()
    return process


def _renderers(browser: psutil.Process) -> list[psutil.Process]:
    return [p for p in browser.children(recursive=True) if "--type=renderer" in p.cmdline()]


def _status(pid: int) -> dict[str, str]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = value.strip()
    return fields


async def test_chromium_runs_unprivileged_with_its_sandbox_on(sandbox: Sandbox, agent: AgentClient) -> None:
    browser = _browser(sandbox)
    uids, gids = browser.uids(), browser.gids()
    assert 0 not in (uids.real, uids.effective, uids.saved), uids
    assert 0 not in (gids.real, gids.effective, gids.saved), gids
    assert _status(browser.pid)["CapEff"] == "0000000000000000"
    family = [browser, *browser.children(recursive=True)]
    for process in family:
        assert "--no-sandbox" not in process.cmdline(), process.cmdline()
        assert process.uids().real == uids.real, process.cmdline()

    renderers = _renderers(browser)
    assert renderers, "no renderer process"
    browser_ns = {kind: os.readlink(f"/proc/{browser.pid}/ns/{kind}") for kind in ("user", "pid", "net")}
    for renderer in renderers:
        status = _status(renderer.pid)
        # The namespace sandbox: seccomp-bpf filter on, no new privileges, and a user, pid and network
        # namespace of its own (with --no-sandbox a renderer shares all three with the browser).
        assert status["Seccomp"] == "2", (renderer.cmdline(), status["Seccomp"])
        assert status["NoNewPrivs"] == "1"
        for kind, ns in browser_ns.items():
            assert os.readlink(f"/proc/{renderer.pid}/ns/{kind}") != ns, kind

    # Its files are its own; the state dir stays the agent's (Chromium may only pass through it).
    state = sandbox.state_dir
    for name in ("chromium-profile", "tmp", "chromium-home"):
        assert (state / name).stat().st_uid == uids.real, name
    assert state.stat().st_uid == os.getuid()


async def test_devtools_on_loopback_only(sandbox: Sandbox) -> None:
    browser = _browser(sandbox)
    cmdline = browser.cmdline()
    assert "--remote-debugging-address=127.0.0.1" in cmdline
    assert not [flag for flag in cmdline if flag.startswith("--remote-allow-origins")], cmdline
    listening = [c for c in browser.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    assert listening, "Chromium listens on no port"
    for connection in listening:
        assert connection.laddr.ip == "127.0.0.1", connection


async def test_devtools_refuse_a_web_origin(sandbox: Sandbox) -> None:
    """Chromium's own DevTools port: a websocket from a web page (it always sends its Origin) is refused; the
    agent's kind of client (no Origin, like aiohttp, websockets and Playwright) is accepted."""
    url = f"ws://127.0.0.1:{sandbox.config.chromium_cdp_port}/devtools/browser"
    version = sandbox.cdp_version()
    assert version is not None
    browser_id = version["webSocketDebuggerUrl"].rpartition("/")[2]
    url = f"{url}/{browser_id}"
    for origin in ("http://evil.example", f"http://127.0.0.1:{sandbox.config.port}", "null"):
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(url, origin=websockets.Origin(origin), open_timeout=5):
                pass
        assert refused.value.response.status_code == 403, origin
    async with websockets.connect(url, open_timeout=5, max_size=None) as ws:
        await ws.send('{"id": 1, "method": "Browser.getVersion"}')
        assert '"id":1' in str(await ws.recv())


async def test_playwright_over_the_proxy(sandbox: Sandbox) -> None:
    async with async_playwright() as pw:
        browser = await pw.chromium.connect_over_cdp(sandbox.cdp_url)
        try:
            context = browser.contexts[0]
            page = await context.new_page()
            try:
                await page.set_content("<p id=x>sandboxed</p>")
                assert await page.text_content("#x") == "sandboxed"
            finally:
                await page.close()
        finally:
            await browser.close()
