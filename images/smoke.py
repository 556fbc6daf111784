"""Smoke test of a running image, one check per route family; run by images/image-test.sh inside the image's
network namespace with the image's own Python (stdlib + the `websockets` dependency).

Prints one line per check and closes with `image-test: N passed, N failed`; exits 1 on any failure.
"""

from __future__ import annotations

import asyncio
import base64
import http.server
import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

AGENT = "http://127.0.0.1:10001"
CDP = "http://127.0.0.1:9222"
MARKER = "image-test-marker-7f3a"
# The session token image-test.sh signed (the image binds 0.0.0.0: every route but /health needs one).
TOKEN = os.environ.get("SMOKE_JWT", "")


def request(
    method: str, url: str, body: Any = None, raw: bytes | None = None, timeout: float = 60, token: bool = True
) -> tuple[int, str, bytes]:
    headers = {"Authorization": f"Bearer {TOKEN}"} if TOKEN and token else {}
    data = raw
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    elif raw is not None:
        headers["Content-Type"] = "application/octet-stream"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return int(resp.status), str(resp.headers.get("Content-Type", "")), bytes(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, str(err.headers.get("Content-Type", "")), bytes(err.read())


def expect(status: int, got: tuple[int, str, bytes]) -> bytes:
    if got[0] != status:
        raise AssertionError(f"status {got[0]} (want {status}): {got[2][:300]!r}")
    return got[2]


def wait_health() -> str:
    deadline = time.monotonic() + 90
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            status, _, body = request("GET", f"{AGENT}/health", timeout=5)
            if status == 200:
                return body.decode()[:120]
            last = f"status {status}: {body[:200]!r}"
        except OSError as err:
            last = str(err)
        time.sleep(0.5)
    raise AssertionError(f"/health not 200 within 90 s ({last})")


def screenshot() -> str:
    body = expect(200, request("POST", f"{AGENT}/computer/screenshot", body={}))
    if not body.startswith(b"\x89PNG\r\n\x1a\n"):
        raise AssertionError(f"not a PNG: {body[:16]!r}")
    return f"PNG, {len(body)} bytes"


def click() -> str:
    expect(200, request("POST", f"{AGENT}/computer/click_mouse", body={"x": 200, "y": 300}))
    return "clicked at 200,300"


def clipboard() -> str:
    text = "image-test clipboard ✓"
    expect(200, request("POST", f"{AGENT}/computer/clipboard/write", body={"text": text}))
    got = json.loads(expect(200, request("POST", f"{AGENT}/computer/clipboard/read")))
    if got.get("text") != text:
        raise AssertionError(f"read back {got!r}")
    return "written and read back"


def process_exec() -> str:
    got = json.loads(
        expect(200, request("POST", f"{AGENT}/process/exec", body={"command": "echo", "args": ["hi"]}))
    )
    stdout = base64.b64decode(got.get("stdout_b64", ""))
    if got.get("exit_code") != 0 or stdout != b"hi\n":
        raise AssertionError(f"got {got!r}")
    return "echo hi → hi"


def files() -> str:
    path = "/tmp/image-test.txt"
    data = b"written by the image test\n"
    expect(201, request("PUT", f"{AGENT}/fs/write_file?path={path}", raw=data))
    got = expect(200, request("GET", f"{AGENT}/fs/read_file?path={path}"))
    if got != data:
        raise AssertionError(f"read back {got!r}")
    return f"{path} written and read back"


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = MARKER.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def curl() -> str:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hello"
        got = json.loads(expect(200, request("POST", f"{AGENT}/curl", body={"url": url})))
        if got.get("status") != 200 or MARKER not in got.get("body", ""):
            raise AssertionError(f"got {got!r}")
        return f"GET {url} through Chromium → 200"
    finally:
        server.shutdown()
        server.server_close()


def playwright() -> str:
    got = json.loads(expect(200, request("POST", f"{AGENT}/playwright/execute", body={"code": "return 1+1"})))
    if got.get("success") is not True or got.get("result") != 2:
        raise AssertionError(f"got {got!r}")
    return "return 1+1 → 2"


def cdp_version() -> str:
    got = json.loads(expect(200, request("GET", f"{CDP}/json/version")))
    if "Browser" not in got or "webSocketDebuggerUrl" not in got:
        raise AssertionError(f"got {got!r}")
    return str(got["Browser"])


def cdp_websocket() -> str:
    import websockets.asyncio.client as ws_client

    # With the token in the query, the websocket URL in the answer carries it too (as cdp_ws_url does).
    got = json.loads(expect(200, request("GET", f"{CDP}/json/version?jwt={TOKEN}", token=False)))
    url = str(got["webSocketDebuggerUrl"])

    async def call() -> dict[str, Any]:
        async with ws_client.connect(url, max_size=None, open_timeout=20) as ws:
            await ws.send(json.dumps({"id": 1, "method": "Browser.getVersion"}))
            while True:
                message = json.loads(await asyncio.wait_for(ws.recv(), 20))
                if message.get("id") == 1:
                    return dict(message)

    answer = asyncio.run(call())
    product = answer.get("result", {}).get("product")
    if not product:
        raise AssertionError(f"got {answer!r}")
    return f"{url.partition('?')[0]} (?jwt=…) → {product}"


def no_token() -> str:
    if not TOKEN:
        return "no key configured: skipped"
    expect(401, request("POST", f"{AGENT}/computer/click_mouse", body={"x": 1, "y": 1}, token=False))
    expect(401, request("GET", f"{CDP}/json/version", token=False))
    return "API and CDP proxy answer 401 without a session token"


def _chromium_processes() -> list[tuple[int, list[str], dict[str, str]]]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                argv = [a.decode(errors="replace") for a in fh.read().split(b"\0") if a]
            if len(argv) == 1:  # Chromium's children set their title: one string, words split by spaces
                argv = argv[0].split(" ")
            with open(f"/proc/{entry}/status") as fh:
                status = dict(line.split(":", 1) for line in fh.read().splitlines() if ":" in line)
        except OSError:
            continue  # gone meanwhile
        if argv and argv[0].endswith("/chromium"):
            found.append((int(entry), argv, {k: v.strip() for k, v in status.items()}))
    return found


def chromium_least_privilege() -> str:
    """Chromium runs as the unprivileged user with its sandbox on (issue 13); DevTools stay on loopback."""
    processes = _chromium_processes()
    browsers = [p for p in processes if not any(a.startswith("--type=") for a in p[1])]
    renderers = [p for p in processes if "--type=renderer" in p[1]]
    if len(browsers) != 1 or not renderers:
        raise AssertionError(f"{len(browsers)} browser and {len(renderers)} renderer processes")
    pid, argv, status = browsers[0]
    uid = int(status["Uid"].split()[0])
    if uid == 0 or any(int(u) == 0 for u in status["Uid"].split()):
        raise AssertionError(f"Chromium runs as uid {status['Uid']}")
    for _, args, _ in processes:
        if "--no-sandbox" in args:
            raise AssertionError("a Chromium process runs with --no-sandbox")
    if "--remote-debugging-address=127.0.0.1" not in argv or any("--remote-allow-origins" in a for a in argv):
        raise AssertionError(f"DevTools flags: {[a for a in argv if a.startswith('--remote')]}")
    for rpid, _, rstatus in renderers:
        if rstatus.get("Seccomp") != "2" or os.readlink(f"/proc/{rpid}/ns/user") == os.readlink(
            f"/proc/{pid}/ns/user"
        ):
            raise AssertionError(f"renderer {rpid} is not sandboxed (Seccomp {rstatus.get('Seccomp')})")
    return f"uid {uid}, {len(renderers)} sandboxed renderers (seccomp, own user namespace)"


CHECKS: list[tuple[str, Callable[[], str]]] = [
    ("GET /health", wait_health),
    ("401 without a token", no_token),
    ("POST /computer/screenshot", screenshot),
    ("POST /computer/click_mouse", click),
    ("POST /computer/clipboard/write+read", clipboard),
    ("POST /process/exec", process_exec),
    ("PUT /fs/write_file + GET /fs/read_file", files),
    ("POST /curl", curl),
    ("POST /playwright/execute", playwright),
    ("GET :9222/json/version", cdp_version),
    ("CDP websocket Browser.getVersion via :9222", cdp_websocket),
    ("Chromium unprivileged and sandboxed", chromium_least_privilege),
]


def main() -> int:
    passed = failed = 0
    for name, check in CHECKS:
        try:
            detail = check()
        except Exception as err:
            failed += 1
            print(f"FAIL {name}: {type(err).__name__}: {err}", flush=True)
            if name == "GET /health":
                break  # nothing else can pass
        else:
            passed += 1
            print(f"ok   {name}: {detail}", flush=True)
    failed += len(CHECKS) - passed - failed
    print(f"image-test: {passed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
