"""A web page in the VM's Chromium attacks the agent and the CDP proxy and gets nothing; DNS rebinding (a
forged Host) gets nothing; the SDK, Playwright over the proxy, curl and plain clients keep working.

The attacker page is served from another loopback port and opened in a tab of its own (the user's tab is
untouched). What it sends, and what it would have done, is checked from outside: the HTTP status of each of
its requests as Chromium saw it (CDP Network events, visible even for no-cors requests), and the effects
(marker files, the pointer, the clipboard, requests reaching the echo server).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import shutil
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
import websockets
from aiohttp import web
from playwright.async_api import async_playwright

from agent.sandbox import Sandbox
from harness.cdp import PageSession
from harness.sandboxes import private_sandbox
from tests.conftest import AgentClient
from tests.helpers.echo_server import EchoServer
from tests.helpers.sdk import SESSION_ID, sdk_client

ATTACK_HTML = """<!doctype html><html><head><meta charset="utf-8"><title>attacker</title></head><body>
<script>
  // Every helper settles (never hangs the test) and says what the page could tell.
  const settle = (promise) =>
    Promise.race([promise, new Promise((resolve) => setTimeout(() => resolve("timeout"), 10000))]);
  window.post = (url, body, how) => settle((async () => {
    const init = {method: "POST", mode: "no-cors"};
    if (how === "text") { init.headers = {"Content-Type": "text/plain"}; init.body = body; }
    if (how === "blob") init.body = new Blob([body]);  // no type at all
    if (how === "upload") {
      const data = new FormData();
      data.append("dest_path", body);
      data.append("file", new Blob(["pwned"]), "x.txt");
      init.body = data;
    }
    try { await fetch(url, init); return "sent"; } catch (e) { return "failed: " + e; }
  })());
  window.get = (url, mode) =>
    settle(fetch(url, {mode: mode || "no-cors"}).then(() => "sent", (e) => "failed: " + e));
  window.img = (url) => settle(new Promise((resolve) => {
    const image = new Image();
    image.onload = () => resolve("load");
    image.onerror = () => resolve("error");
    image.src = url;
  }));
  let frames = 0;
  // A classic CSRF: an auto-submitted form into a hidden iframe. fields: [name, value] or [name, {file}].
  window.form = (url, enctype, fields) => settle(new Promise((resolve) => {
    const frame = document.createElement("iframe");
    frame.name = "sink" + frames++;
    document.body.appendChild(frame);
    frame.onload = () => resolve("loaded");
    const form = document.createElement("form");
    form.method = "post"; form.action = url; form.enctype = enctype; form.target = frame.name;
    for (const [name, value] of fields) {
      const input = document.createElement("input");
      input.name = name;
      if (typeof value === "string") { input.type = "hidden"; input.value = value; }
      else {
        input.type = "file";
        const files = new DataTransfer();
        files.items.add(new File([value.file], "x.txt"));
        input.files = files.files;
      }
      form.appendChild(input);
    }
    document.body.appendChild(form);
    form.submit();
  }));
  // "open..." only if the handshake succeeded; probe: a message to send once open (the reply is kept).
  window.socket = (url, probe) => settle(new Promise((resolve) => {
    let ws;
    try { ws = new WebSocket(url); } catch (e) { resolve("throws: " + e); return; }
    ws.onopen = () => { if (probe) ws.send(probe); else { ws.close(); resolve("open"); } };
    ws.onmessage = (e) => { ws.close(); resolve("open, got: " + String(e.data).slice(0, 300)); };
    ws.onclose = (e) => resolve("closed " + e.code);
  }));
  window.__ready = true;
</script></body></html>"""


class Attacker:
    """The attacker's web server: another loopback port, so another origin (and same-site, as ports go)."""

    def __init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/attack", self._page)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]

    async def _page(self, request: web.Request) -> web.Response:
        return web.Response(text=ATTACK_HTML, content_type="text/html")

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture(scope="module")
async def attacker() -> AsyncIterator[Attacker]:
    server = Attacker()
    await server.start()
    yield server
    await server.stop()


class AttackTab(PageSession):
    """A tab of its own on the attacker page; records the HTTP status of every request the page made, as
    the network saw it (raw response headers: also for answers ORB or CORS then hide from the page)."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        super().__init__(ws)
        self._urls: dict[str, str] = {}
        self._outcomes: dict[str, int | str] = {}

    def _collect(self) -> None:
        while not self._events.empty():
            event = self._events.get_nowait()
            method, params = event.get("method"), event.get("params", {})
            request_id = params.get("requestId", "")
            if method == "Network.requestWillBeSent":
                self._urls[request_id] = params["request"]["url"]
            elif method == "Network.responseReceivedExtraInfo":
                self._outcomes[request_id] = params["statusCode"]
            elif method == "Network.responseReceived":
                self._outcomes[request_id] = params["response"]["status"]
            elif method == "Network.loadingFailed" and request_id not in self._outcomes:
                self._outcomes[request_id] = params["errorText"]  # no answer at all

    def statuses(self) -> dict[str, list[int | str]]:
        self._collect()
        out: dict[str, list[int | str]] = {}
        for request_id, outcome in self._outcomes.items():
            out.setdefault(self._urls.get(request_id, "?"), []).append(outcome)
        return out

    async def run(self, call: str, *args: Any) -> str:
        result: str = await self.evaluate(f"{call}({', '.join(json.dumps(a) for a in args)})")
        return result

    async def wait_for_statuses(
        self, counts: dict[str, int], timeout: float = 10.0
    ) -> dict[str, list[int | str]]:
        """Until each URL got as many answers as requests were sent to it (or the timeout)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            statuses = self.statuses()
            done = all(len(statuses.get(url, [])) >= n for url, n in counts.items())
            if done or asyncio.get_running_loop().time() > deadline:
                return statuses
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def attack_tab(cdp_url: str, attacker: Attacker) -> AsyncIterator[AttackTab]:
    async with aiohttp.ClientSession() as http, http.put(cdp_url + "/json/new?about:blank") as response:
        target = await response.json()
    tab = AttackTab(await websockets.connect(target["webSocketDebuggerUrl"], max_size=64 * 1024 * 1024))
    try:
        await tab.call("Page.enable")
        await tab.navigate(attacker.origin + "/attack")
        await tab.call("Network.enable")
        yield tab
    finally:
        await tab.close()
        async with aiohttp.ClientSession() as http, http.get(f"{cdp_url}/json/close/{target['id']}"):
            pass


def exec_body(command: str) -> str:
    return json.dumps({"command": "sh", "args": ["-c", command]})


def text_form_fields(command: str) -> list[list[str]]:
    """A text/plain form sends `name=value`: split a JSON body around an `=` that lands inside a string."""
    return [[f'{{"command":"sh","args":["-c","{command}","', '"]}']]


async def pointer(agent: AgentClient) -> tuple[int, int]:
    reply = await agent.post("/computer/get_mouse_position")
    assert reply.status == 200, reply
    return reply.json()["x"], reply.json()["y"]


async def test_a_page_in_the_browser_gets_nothing(
    sandbox: Sandbox, agent: AgentClient, attacker: Attacker, echo_server: EchoServer
) -> None:
    base, cdp = sandbox.agent_url, sandbox.cdp_url
    ws_base, ws_cdp = base.replace("http://", "ws://"), cdp.replace("http://", "ws://")
    markers = sandbox.state_dir / "hostile"
    markers.mkdir(exist_ok=True)
    fs_marker = sandbox.state_dir / "fs" / "hostile-upload"
    form_fs_marker = sandbox.state_dir / "fs" / "hostile-form-upload"
    # What the user has: a terminal to attach to, the pointer somewhere, something on the clipboard.
    spawned = await agent.post("/process/spawn", {"command": "sh", "allocate_tty": True})
    assert spawned.status == 200, spawned
    process_id = spawned.json()["process_id"]
    assert (await agent.post("/computer/move_mouse", {"x": 501, "y": 502, "smooth": False})).status == 200
    assert (await agent.post("/computer/clipboard/write", {"text": "the user's"})).status == 200
    page_said: dict[str, str] = {}
    try:
        async with attack_tab(cdp, attacker) as tab:
            sent: dict[str, int] = {}

            async def attack(label: str, url: str, call: str, *args: Any) -> None:
                page_said[label] = await tab.run(call, url, *args)
                sent[url] = sent.get(url, 0) + 1

            # no-cors POSTs with a JSON body labelled text/plain, and as a typeless Blob, on every family
            for how in ("text", "blob"):
                await attack(
                    f"exec {how}",
                    base + "/process/exec",
                    "post",
                    exec_body(f"touch {markers}/exec-{how}"),
                    how,
                )
                await attack(
                    f"computer {how}",
                    base + "/computer/move_mouse",
                    "post",
                    json.dumps({"x": 7, "y": 13}),
                    how,
                )
                await attack(f"screenshot {how}", base + "/computer/screenshot", "post", "{}", how)
                await attack(
                    f"clipboard {how}",
                    base + "/computer/clipboard/write",
                    "post",
                    json.dumps({"text": "pwned"}),
                    how,
                )
                await attack(
                    f"fs {how}",
                    base + "/fs/watch",
                    "post",
                    json.dumps({"path": str(sandbox.state_dir / "fs")}),
                    how,
                )
                await attack(
                    f"curl {how}",
                    base + "/curl",
                    "post",
                    json.dumps({"url": echo_server.url(f"/echo?pwned=curl-{how}")}),
                    how,
                )
                code = f"await fetch({json.dumps(echo_server.url(f'/echo?pwned=pw-{how}'))}); return 1"
                await attack(
                    f"playwright {how}", base + "/playwright/execute", "post", json.dumps({"code": code}), how
                )
            # fs writes need no JSON: multipart uploads are "simple" requests too
            await attack("fs upload", base + "/fs/upload", "post", str(fs_marker), "upload")
            await attack(
                "fs upload form",
                base + "/fs/upload",
                "form",
                "multipart/form-data",
                [["dest_path", str(form_fs_marker)], ["file", {"file": "pwned"}]],
            )
            await attack(
                "exec form",
                base + "/process/exec",
                "form",
                "text/plain",
                text_form_fields(f"touch {markers}/form"),
            )
            # GETs: an <img> (no Origin header at all) and a no-cors fetch, on the agent and the proxy
            await attack("health img", base + "/health", "img")
            await attack("spec img", base + "/spec.json", "img")
            await attack("unknown path img", base + "/no/such/route", "img")
            await attack("read_file get", base + f"/fs/read_file?path={sandbox.state_dir}/fs", "get")
            await attack("cdp version img", cdp + "/json/version", "img")
            await attack("cdp list get", cdp + "/json/list", "get")
            # websockets: the browser endpoint (any id), a page endpoint, a terminal
            page_said["cdp browser ws"] = await tab.run(
                "socket", ws_cdp + "/devtools/browser/x", json.dumps({"id": 1, "method": "Target.getTargets"})
            )
            page_said["attach ws"] = await tab.run("socket", ws_base + f"/process/{process_id}/attach", None)

            statuses = await tab.wait_for_statuses(sent)
    finally:
        await agent.post(f"/process/{process_id}/kill", {"signal": "KILL"})
        effects = {
            "exec text": (markers / "exec-text").exists(),
            "exec blob": (markers / "exec-blob").exists(),
            "exec form": (markers / "form").exists(),
            "fs upload": fs_marker.exists(),
            "fs upload form": form_fs_marker.exists(),
        }
        shutil.rmtree(markers, ignore_errors=True)
        for path in (fs_marker, form_fs_marker):
            path.unlink(missing_ok=True)

    answered = {url: statuses.get(url) for url, n in sent.items() if statuses.get(url) != [403] * n}
    assert not answered, (answered, page_said)
    for label in ("cdp browser ws", "attach ws"):
        assert not page_said[label].startswith("open"), (label, page_said[label])
    assert not any(effects.values()), effects
    assert await pointer(agent) == (501, 502)
    clipboard = await agent.post("/computer/clipboard/read")
    assert clipboard.json()["text"] == "the user's", clipboard
    assert not [seen for seen in echo_server.seen if "pwned" in seen["query"]]


async def fetch(url: str, **kwargs: Any) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as http, http.get(url, **kwargs) as response:
        return response.status, await response.read()


async def ws_status(url: str, **kwargs: Any) -> int:
    """101 when the websocket opens, else the handshake's HTTP status."""
    async with aiohttp.ClientSession() as http:
        try:
            async with http.ws_connect(url, **kwargs):
                return 101
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status


async def test_dns_rebinding_a_forged_host_is_refused(sandbox: Sandbox) -> None:
    agent_port, cdp_port = sandbox.config.port, sandbox.config.cdp_port
    for url in (
        sandbox.agent_url + "/health",
        sandbox.agent_url + "/spec.yaml",
        sandbox.cdp_url + "/json/version",
    ):
        for host in ("evil.example", f"evil.example:{cdp_port}", "127.0.0.1.evil.example"):
            status, body = await fetch(url, headers={"Host": host})
            assert status == 403, (url, host, body)
            assert json.loads(body)["code"] == "forbidden_host"
            assert b"evil.example" not in body
    cdp_ws = sandbox.cdp_url.replace("http://", "ws://") + "/devtools/browser/x"
    assert await ws_status(cdp_ws, headers={"Host": "evil.example"}) == 403
    # Chromium's own port refuses it too: the proxy is not weaker.
    chromium = f"http://127.0.0.1:{sandbox.config.chromium_cdp_port}/json/version"
    assert (await fetch(chromium, headers={"Host": "evil.example"}))[0] != 200
    # Loopback names and addresses, with or without the port, are served.
    for host in (f"127.0.0.1:{cdp_port}", f"localhost:{cdp_port}", "localhost", f"[::1]:{cdp_port}"):
        status, body = await fetch(sandbox.cdp_url + "/json/version", headers={"Host": host})
        assert status == 200, (host, body)
        assert json.loads(body)["webSocketDebuggerUrl"].startswith(f"ws://{host}/devtools/browser/")
    for host in (f"127.0.0.1:{agent_port}", f"localhost:{agent_port}"):
        assert (await fetch(sandbox.agent_url + "/health", headers={"Host": host}))[0] == 200
    assert await ws_status(cdp_ws, headers={"Host": f"localhost:{cdp_port}"}) == 101


async def test_curl_the_sdk_and_playwright_keep_working(sandbox: Sandbox, agent: AgentClient) -> None:
    # plain clients (no Origin): JSON in, JSON out
    reply = await agent.post("/process/exec", {"command": "echo", "args": ["plain"]})
    assert reply.status == 200 and base64.b64decode(reply.json()["stdout_b64"]) == b"plain\n", reply
    curl = await asyncio.create_subprocess_exec(
        "curl", "-sS", "-H", "Content-Type: application/json", "-d", exec_body("echo curl"),
        sandbox.agent_url + "/process/exec",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await curl.communicate()
    assert curl.returncode == 0 and base64.b64decode(json.loads(out)["stdout_b64"]) == b"curl\n", out
    # the official SDK
    client, transport = sdk_client(sandbox.agent_url)
    async with client:
        result = await client.browsers.process.exec(SESSION_ID, command="echo", args=["sdk"])
        assert base64.b64decode(result.stdout_b64 or "") == b"sdk\n"
    assert transport.seen == [("POST", "/process/exec", 200)]
    # Playwright over the proxy's websocket
    async with async_playwright() as pw:
        browser = await pw.chromium.connect_over_cdp(sandbox.cdp_url)
        try:
            pages = [p for c in browser.contexts for p in c.pages]
            assert pages and await pages[0].evaluate("6 * 7") == 42
        finally:
            await browser.close()


@pytest.fixture(scope="module")
def open_sandbox(attacker: Attacker) -> Iterator[Sandbox]:
    """A sandbox that lets the attacker's origin and the name vm.example in."""
    with private_sandbox(
        "agent-test-guard-", allowed_origins=attacker.origin, allowed_hosts="vm.example"
    ) as box:
        yield box
    shutil.rmtree(box.state_dir, ignore_errors=True)


async def test_configured_origins_and_hosts_are_let_through(
    open_sandbox: Sandbox, attacker: Attacker
) -> None:
    box = open_sandbox
    fs_marker = box.state_dir / "fs" / "allowed-upload"
    async with attack_tab(box.cdp_url, attacker) as tab:
        assert await tab.run("post", box.agent_url + "/fs/upload", str(fs_marker), "upload") == "sent"
        # A CORS GET carries the Origin: served (the page cannot read it: the agent sends no CORS headers).
        assert await tab.run("get", box.agent_url + "/health", "cors") != "timeout"
        # An <img> GET carries no Origin, only Sec-Fetch-Site: still refused.
        await tab.run("img", box.agent_url + "/spec.json")
        said = await tab.run(
            "socket",
            box.cdp_url.replace("http://", "ws://") + "/devtools/browser/x",
            json.dumps({"id": 1, "method": "Browser.getVersion"}),
        )
        counts = {box.agent_url + path: 1 for path in ("/fs/upload", "/health", "/spec.json")}
        statuses = await tab.wait_for_statuses(counts)
    assert statuses[box.agent_url + "/fs/upload"] == [201], statuses
    assert statuses[box.agent_url + "/health"] == [200], statuses
    assert statuses[box.agent_url + "/spec.json"] == [403], statuses
    assert fs_marker.read_bytes() == b"pwned"
    assert said.startswith("open, got: ") and "Chrome/" in said, said
    # Another origin is still refused; so is an unlisted name, while the listed one is served.
    other = {"Origin": f"http://localhost:{attacker.port}"}
    assert (await fetch(box.agent_url + "/health", headers=other))[0] == 403
    assert (await fetch(box.cdp_url + "/json/version", headers={"Host": "evil.example"}))[0] == 403
    status, body = await fetch(box.cdp_url + "/json/version", headers={"Host": "vm.example:9222"})
    assert status == 200 and json.loads(body)["webSocketDebuggerUrl"].startswith("ws://vm.example:9222/")
