"""`make run`'s command, for real: it prints both URLs once they answer, survives a Chromium crash, and
Ctrl-C leaves no process behind."""

from __future__ import annotations

import dataclasses
import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any

import psutil
import pytest

from agent.config import Config
from agent.sandbox import REPO, Sandbox, SandboxError
from harness.sandboxes import chromium_user, free_display, free_port


def _get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
    except OSError:
        return 0, None


def _wait_health(url: str, ready: bool, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = _get(url + "/health")
        if body and (status == 200) == ready:
            result: dict[str, Any] = body
            return result
        time.sleep(0.1)
    raise AssertionError(f"health never became ready={ready}")


def test_sandbox_runs_recovers_and_stops_cleanly() -> None:
    port, cdp_port = free_port(), free_port()
    state = tempfile.mkdtemp(prefix="agent-test-run-")
    command = [
        sys.executable, "-m", "agent", "sandbox", "--port", str(port), "--cdp-port", str(cdp_port),
        "--chromium-cdp-port", str(free_port()), "--display", free_display(), "--state-dir", state,
        "--chromium-user", chromium_user(),
    ]  # fmt: skip
    cli = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        assert cli.stdout is not None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = cli.stdout.readline()
            assert line, f"sandbox exited early: {lines}"
            lines.append(line)
            if "Ctrl-C" in line:
                break
        text = "".join(lines)
        assert f"http://127.0.0.1:{port}" in text and f"http://127.0.0.1:{cdp_port}" in text

        agent_url = f"http://127.0.0.1:{port}"
        status, health = _get(agent_url + "/health")
        assert status == 200 and health["chromium"]["ready"] and health["x"]["ready"]
        status, version = _get(f"http://127.0.0.1:{cdp_port}/json/version")
        assert status == 200 and version["Browser"].startswith("Chrome/")
        if "control plane:" in text:
            # Once the local control plane's key has come over the link, a loopback sandbox still needs no
            # token (the README's curl quickstart): a token sent would be verified.
            for _ in range(100):
                if _get(agent_url + "/health")[1]["auth"]["key"]:
                    break
                time.sleep(0.1)
            assert _get(agent_url + "/health")[1]["auth"] == {"key": True, "required": False, "refused": 0}
            status, _ = _get(f"http://127.0.0.1:{cdp_port}/json/version")
            assert status == 200
            position = urllib.request.Request(
                agent_url + "/computer/get_mouse_position", data=b"{}", method="POST",
                headers={"Content-Type": "application/json"},
            )  # fmt: skip
            with urllib.request.urlopen(position, timeout=5) as response:
                assert response.status == 200

        # Chromium dies: supervisord restarts it, and the agent notices both.
        browser = next(
            p for p in psutil.Process(cli.pid).children(recursive=True)
            if p.name() == "chromium" and not any(a.startswith("--type=") for a in p.cmdline())
        )  # fmt: skip
        browser.kill()
        _wait_health(agent_url, ready=False, timeout=10)
        _wait_health(agent_url, ready=True, timeout=60)

        family = psutil.Process(cli.pid).children(recursive=True)
        assert {p.name() for p in family} >= {"Xvfb", "chromium"}
        cli.send_signal(signal.SIGINT)  # what Ctrl-C does
        assert cli.wait(60) == 0
        time.sleep(0.5)
        alive = []
        for proc in family:
            try:
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(proc)
            except psutil.NoSuchProcess:
                pass
        assert not alive, f"left behind: {alive}"
        assert _get(agent_url + "/health")[0] == 0
    finally:
        if cli.poll() is None:  # a failed assertion: stop it the way Ctrl-C does, then insist
            cli.send_signal(signal.SIGINT)
            try:
                cli.wait(30)
            except subprocess.TimeoutExpired:
                cli.kill()
                cli.wait()
        shutil.rmtree(state, ignore_errors=True)


def _program(sandbox: Sandbox, name: str) -> psutil.Process:
    return psutil.Process(int(sandbox.supervisorctl("pid", name).strip()))


def test_chromium_and_playwright_keep_their_temp_dirs_in_the_state_dir(sandbox: Sandbox) -> None:
    """org.chromium.Chromium.* and playwright-artifacts-* go to <state dir>/tmp, not the machine's /tmp."""
    tmp = sandbox.state_dir / "tmp"
    assert _program(sandbox, "chromium").environ()["TMPDIR"] == str(tmp)
    request = urllib.request.Request(
        sandbox.agent_url + "/playwright/execute",
        data=json.dumps({"code": "return 6 * 7"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        assert json.loads(response.read())["result"] == 42
    family = _program(sandbox, "agent").children(recursive=True)
    workers = [p for p in family if "worker.mjs" in " ".join(p.cmdline())]
    assert workers and all(p.environ()["TMPDIR"] == str(tmp) for p in workers)
    assert list(tmp.glob("playwright-artifacts-*"))  # the connected worker's, where it belongs


def test_a_port_in_use_names_the_option_that_changes_it() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        never_made = REPO / ".never-made-state"  # start refuses before it creates anything
        for field, option, variable in (
            ("port", "--port", "AGENT_PORT"),
            ("cdp_port", "--cdp-port", "AGENT_CDP_PORT"),
            ("chromium_cdp_port", "--chromium-cdp-port", "AGENT_CHROMIUM_CDP_PORT"),
        ):
            config = Config(
                state_dir=never_made, port=free_port(), cdp_port=free_port(), chromium_cdp_port=free_port()
            )
            with pytest.raises(SandboxError) as refused:
                Sandbox(dataclasses.replace(config, **{field: port})).start()
            message = str(refused.value)
            assert f"port {port} is already in use" in message
            assert option in message and variable in message and f"make run RUN_ARGS='{option} " in message
        assert not never_made.exists()
