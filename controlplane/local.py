"""`make run`: a control plane beside the local sandbox, and the two-line SDK snippet that drives it."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from agent.config import Config

from .__main__ import local_setup

LOCAL_AGENT_ID = "local-sandbox"


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def start_beside(config: Config) -> tuple[Config, subprocess.Popen[bytes], list[str]]:
    """Start `browser-agent control-plane` for this sandbox; the sandbox's config with the link aimed at it,
    the process (stop it with `stop`), and the snippet to print."""
    root = config.state_dir.resolve() / "controlplane"
    server_key, agent_cert, api_key = local_setup(root, LOCAL_AGENT_ID)
    if _listening(config.control_plane_port):
        raise RuntimeError(
            f"port {config.control_plane_port} is in use (the control plane's API); "
            "set --control-plane-port (0 = no control plane)"
        )
    gateway = f"tcp://127.0.0.1:{config.control_gateway_port}"
    (config.state_dir / "logs").mkdir(parents=True, exist_ok=True)
    log = open(config.state_dir / "logs" / "controlplane.log", "ab")  # noqa: SIM115 (the child keeps it)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "controlplane",
            "--dir",
            str(root),
            "--bind",
            gateway,
            "--http-port",
            str(config.control_plane_port),
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,
        cwd=Path(__file__).resolve().parent.parent,  # `-m controlplane` from the checkout
    )
    log.close()
    deadline = time.monotonic() + 20
    while not _listening(config.control_plane_port):
        if process.poll() is not None or time.monotonic() > deadline:
            stop(process)
            raise RuntimeError(
                f"the control plane did not start; see {config.state_dir}/logs/controlplane.log"
            )
        time.sleep(0.05)
    linked = dataclasses.replace(
        config,
        control_url=gateway,
        control_server_key=server_key,
        control_key_file=agent_cert,
        control_agent_id=LOCAL_AGENT_ID,
    )
    url = f"http://127.0.0.1:{config.control_plane_port}"
    snippet = [
        f'from kernel import Kernel; k = Kernel(base_url="{url}", api_key="{api_key}")',
        "b = k.browsers.create(); print(k.browsers.computer.get_mouse_position(id_or_name=b.session_id))",
    ]
    return linked, process, snippet


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
