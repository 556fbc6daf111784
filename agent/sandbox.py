"""The local sandbox: supervisord running Xvfb, Chromium and the agent, as the VM image does.

Used by `browser-agent sandbox` (`make run`), by the test fixtures and by the benchmarks.
"""

from __future__ import annotations

import contextlib
import ctypes
import getpass
import json
import os
import pwd
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from .config import Config, env_for
from .procgroup import signal_group

REPO = Path(__file__).resolve().parent.parent
SUPERVISOR_CONF = REPO / "supervisor" / "supervisord.conf"


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when our process dies, even by SIGKILL, so that supervisord
    (which then stops every program) never outlives the sandbox that started it."""
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)


class SandboxError(RuntimeError):
    pass


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def _port_in_use_message(name: str, field: str, port: int) -> str:
    """Names the option that changes the port, and a free one to try."""
    option, variable = "--" + field.replace("_", "-"), "AGENT_" + field.upper()
    free = next((p for p in range(port + 1, min(port + 100, 65536)) if not port_in_use("127.0.0.1", p)), None)
    example = f"{option} {free if free is not None else '<port>'}"
    return (
        f"{name} port {port} is already in use (is another sandbox running?); choose another with "
        f"{option} or {variable} (make run RUN_ARGS='{example}')"
    )


class Sandbox:
    def __init__(self, config: Config, extra_env: dict[str, str] | None = None) -> None:
        self.config = config
        self.state_dir = config.state_dir.resolve()
        self.extra_env = extra_env or {}
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def agent_url(self) -> str:
        host = "127.0.0.1" if self.config.host in ("0.0.0.0", "") else self.config.host
        return f"http://{host}:{self.config.port}"

    @property
    def cdp_url(self) -> str:
        return f"http://127.0.0.1:{self.config.cdp_port}"

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(env_for(self.config))
        env.update(
            {
                "DISPLAY": self.config.display,
                "AGENT_STATE_DIR": str(self.state_dir),
                "AGENT_REPO": str(REPO),
                "AGENT_PYTHON": sys.executable,
                "AGENT_SUPERVISOR_USER": getpass.getuser(),
                "PYTHONUNBUFFERED": "1",
            }
        )
        if not self.config.fs_root and "AGENT_FS_ROOT" not in self.extra_env:
            # /fs routes of a local sandbox stay in its own directory, never the host's files.
            fs_root = self.state_dir / "fs"
            fs_root.mkdir(parents=True, exist_ok=True)
            env["AGENT_FS_ROOT"] = str(fs_root)
        env.update(self.extra_env)
        return env

    def start(self) -> None:
        for name, field in (("agent", "port"), ("CDP", "cdp_port"), ("Chromium CDP", "chromium_cdp_port")):
            port: int = getattr(self.config, field)
            if port_in_use("127.0.0.1", port):
                raise SandboxError(_port_in_use_message(name, field, port))
        user = self.config.chromium_user
        if os.getuid() == 0 and user and not user.replace(":", "").isdigit():
            try:
                pwd.getpwnam(user)
            except KeyError:
                raise SandboxError(
                    f"no user {user!r} for Chromium (images/install.sh creates `browser`); choose one with "
                    "--chromium-user or AGENT_CHROMIUM_USER (a name or uid[:gid])"
                ) from None
        (self.state_dir / "logs").mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "supervisor.supervisord", "-n", "-c", str(SUPERVISOR_CONF)],
            env=self.environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(self.state_dir / "logs" / "supervisord.stderr", "ab"),  # noqa: SIM115
            start_new_session=True,  # Ctrl-C reaches us, and we stop supervisord in order
            preexec_fn=_die_with_parent,
        )

    def health(self) -> tuple[int, dict[str, Any]]:
        try:
            with urllib.request.urlopen(self.agent_url + "/health", timeout=2) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")
        except (OSError, ValueError):
            return 0, {}

    def cdp_version(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(self.cdp_url + "/json/version", timeout=2) as response:
                data: dict[str, Any] = json.loads(response.read())
                return data
        except urllib.error.HTTPError as exc:
            # 401: the proxy answers and wants a session token (agent/auth.py); /health tells of Chromium.
            return {} if exc.code == 401 else None
        except (OSError, ValueError):
            return None

    def wait_ready(self, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        report: dict[str, Any] = {}
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise SandboxError(f"supervisord exited with {self.process.returncode}; see {self.log_dir}")
            status, report = self.health()
            if status == 200 and self.cdp_version() is not None:
                return report
            time.sleep(0.1)
        raise SandboxError(f"sandbox not ready after {timeout:.0f}s: {report or 'agent not answering'}")

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    def supervisorctl(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "supervisor.supervisorctl", "-c", str(SUPERVISOR_CONF), *args],
            env=self.environment(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return result.stdout + result.stderr

    def stop(self, timeout: float = 30.0) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)  # supervisord stops every program (whole groups), then exits
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            signal_group(process.pid, signal.SIGKILL)
            process.wait()


def run_foreground(config: Config) -> int:
    """`make run`: start, print the URLs once both answer, and stop everything on Ctrl-C."""
    control_plane: subprocess.Popen[bytes] | None = None
    snippet: list[str] = []
    if config.control_plane_port and not config.control_url:
        from controlplane import local  # a reference control plane beside the sandbox (issue 12)

        try:
            config, control_plane, snippet = local.start_beside(config)
        except RuntimeError as exc:
            print(f"browser-agent sandbox: {exc}", file=sys.stderr)
            return 1
    sandbox = Sandbox(config)

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # Ctrl-C, `kill`, `timeout` and a closed terminal all stop the sandbox the same way (SIGINT too: a
    # shell starts background jobs with SIGINT ignored, which Python would otherwise inherit).
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, interrupt)
    try:
        sandbox.start()
    except SandboxError as exc:
        print(f"browser-agent sandbox: {exc}", file=sys.stderr)
        return 1
    try:
        report = sandbox.wait_ready()
        print(f"agent   {sandbox.agent_url}   (health: {sandbox.agent_url}/health)")
        print(f"CDP     {sandbox.cdp_url}   ({report['chromium'].get('browser')})")
        print(f"display {config.display} {config.screen}; state and logs in {sandbox.state_dir}")
        if snippet:
            print("control plane: the official SDK drives this sandbox with", *snippet, sep="\n    ")
        print("Ctrl-C stops everything.", flush=True)
        assert sandbox.process is not None
        return sandbox.process.wait()
    except KeyboardInterrupt:
        print("\nstopping…", flush=True)
        return 0
    except SandboxError as exc:
        print(f"browser-agent sandbox: {exc}", file=sys.stderr)
        return 1
    finally:
        with contextlib.suppress(KeyboardInterrupt):
            sandbox.stop()
            if control_plane is not None:
                local.stop(control_plane)
