"""`make run` (browser-agent sandbox) starts a control plane beside the sandbox and prints a two-line Python
snippet that works as is with the official SDK."""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.sandboxes import free_display, free_port

REPO = Path(__file__).resolve().parent.parent.parent


def test_make_run_prints_a_snippet_that_drives_the_sandbox() -> None:
    state = Path(tempfile.mkdtemp(prefix="agent-test-makerun-"))
    ports = {name: free_port() for name in ("port", "cdp-port", "chromium-cdp-port", "control-plane-port")}
    ports["control-gateway-port"] = free_port()
    args = [f"--{name}={port}" for name, port in ports.items()]
    cmd = [
        sys.executable,
        "-m",
        "agent",
        "sandbox",
        *args,
        f"--display={free_display()}",
        f"--state-dir={state}",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_")}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert proc.stdout is not None
        out = b""
        deadline = time.monotonic() + 90
        while b"Ctrl-C" not in out:
            assert time.monotonic() < deadline, out
            # os.read, not readline: a buffered reader would hide lines that select() cannot see.
            ready, _, _ = select.select([proc.stdout], [], [], 1.0)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 65536)
                assert chunk, out  # exited early
                out += chunk
        lines = out.decode().splitlines()
        snippet = [line.strip() for line in lines if line.startswith("    ")]
        assert len(snippet) == 2 and "Kernel(base_url=" in snippet[0], lines
        run = subprocess.run(
            [sys.executable, "-c", "\n".join(snippet)], capture_output=True, timeout=120, cwd=REPO, env=env
        )
        assert run.returncode == 0, run.stderr.decode()[-2000:]
        assert b"x=" in run.stdout and b"y=" in run.stdout
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        shutil.rmtree(state, ignore_errors=True)
