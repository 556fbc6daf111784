"""The README's promises: its quickstart runs as written against a sandbox, and every reference resolves."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from agent.sandbox import REPO, Sandbox

README = (REPO / "README.md").read_text(encoding="utf-8")
DEFAULT_URL = "http://127.0.0.1:10001"


def _blocks(language: str) -> list[str]:
    blocks = re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)
    assert blocks, f"the README has no {language} block"
    return blocks


def test_the_quickstart_curl_screenshot_works_as_written(sandbox: Sandbox, tmp_path: Path) -> None:
    lines = [line for block in _blocks("sh") for line in block.splitlines() if line.startswith("curl ")]
    assert lines, "the quickstart shows a curl call"
    for line in lines:
        subprocess.run(
            line.replace(DEFAULT_URL, sandbox.agent_url), shell=True, check=True, cwd=tmp_path, timeout=60
        )
    assert (tmp_path / "screenshot.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_the_quickstart_sdk_snippet_works_as_written(sandbox: Sandbox, tmp_path: Path) -> None:
    (code,) = _blocks("python")
    code = code.replace(DEFAULT_URL, sandbox.agent_url)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    finally:
        os.chdir(cwd)
    assert (tmp_path / "screenshot.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


@pytest.mark.parametrize("path", sorted({m for m in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README)}))
def test_every_link_in_the_readme_resolves_inside_the_repo(path: str) -> None:
    assert not path.startswith(("http://", "https://")), f"{path}: the README links outside the repo"
    assert (REPO / path).exists(), path


def test_every_repo_path_the_readme_names_exists() -> None:
    named = set(re.findall(r"`((?:agent|bench|tests|supervisor|images|docs)/[\w./-]*[\w/])`", README))
    missing = sorted(p for p in named if not (REPO / p).exists() and "*" not in p and "<" not in p)
    assert not missing, missing
