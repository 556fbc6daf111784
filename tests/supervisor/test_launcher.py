"""supervisor/chromium-launcher's privilege choices, with a stand-in for the Chromium binary that reports
who it runs as and with which flags (headless, so no display is needed; no Chromium starts)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.sandbox import REPO
from harness.sandboxes import chromium_user

LAUNCHER = REPO / "supervisor" / "chromium-launcher"

pytestmark = pytest.mark.skipif(os.getuid() != 0, reason="the launcher drops privileges only as root")


@pytest.fixture
def state() -> Iterator[Path]:
    top = Path(tempfile.mkdtemp(prefix="agent-test-launcher-"))
    try:
        # The stand-in must be executable by Chromium's user: a folder of its own, open to all.
        top.chmod(0o711)
        bin_dir = top / "bin"
        bin_dir.mkdir()
        bin_dir.chmod(0o755)
        stub = bin_dir / "chromium"
        stub.write_text('#!/bin/sh\necho "uid=$(id -u) gid=$(id -g) home=$HOME"\nprintf "%s\\n" "$@"\n')
        stub.chmod(0o755)
        (top / "state").mkdir(mode=0o700)
        yield top
    finally:
        shutil.rmtree(top, ignore_errors=True)


def _launch(top: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        "PATH": os.environ["PATH"],
        "AGENT_STATE_DIR": str(top / "state"),
        "AGENT_HEADLESS": "1",
        "CHROMIUM_BIN": str(top / "bin" / "chromium"),
        "AGENT_CHROMIUM_USER": chromium_user(),
        **env,
    }
    return subprocess.run([str(LAUNCHER)], env=environment, capture_output=True, text=True, timeout=30)


def test_drops_to_the_user_with_the_sandbox_on(state: Path) -> None:
    result = _launch(state)
    assert result.returncode == 0, result.stderr
    who, *flags = result.stdout.splitlines()
    uid = int(who.split()[0].removeprefix("uid="))
    assert uid != 0
    assert f"home={state / 'state' / 'chromium-home'}" in who
    assert "--no-sandbox" not in flags
    assert "--remote-debugging-address=127.0.0.1" in flags
    assert not [f for f in flags if f.startswith("--remote-allow-origins")]
    for name in ("chromium-profile", "tmp", "chromium-home"):
        assert (state / "state" / name).stat().st_uid == uid, name
    assert (state / "state").stat().st_uid == 0
    assert (state / "state").stat().st_mode & 0o777 == 0o701  # traverse only, for Chromium's user


def test_no_sandbox_switch_keeps_the_user(state: Path) -> None:
    result = _launch(state, AGENT_CHROMIUM_NO_SANDBOX="1")
    assert result.returncode == 0, result.stderr
    who, *flags = result.stdout.splitlines()
    assert not who.startswith("uid=0 ")
    assert "--no-sandbox" in flags


def test_refuses_root_without_the_switch(state: Path) -> None:
    result = _launch(state, AGENT_CHROMIUM_USER="")
    assert result.returncode == 1
    assert "would run as root" in result.stderr and "AGENT_CHROMIUM_NO_SANDBOX" in result.stderr
    assert result.stdout == ""


def test_an_unknown_user_is_a_clear_error(state: Path) -> None:
    result = _launch(state, AGENT_CHROMIUM_USER="no-such-user-bva")
    assert result.returncode == 1
    assert "no user no-such-user-bva" in result.stderr
    assert result.stdout == ""
