"""The house's import rules, checked on the source: bench/ stands alone, the agent imports no test code, and
capabilities never import each other's HTTP layer."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("folder", ["bench", "harness", "agent"])
def test_no_test_code_is_imported_outside_tests(folder: str) -> None:
    offenders = {
        str(path.relative_to(REPO)): sorted(
            n for n in _imports(path) if n == "tests" or n.startswith("tests.")
        )
        for path in (REPO / folder).rglob("*.py")
    }
    assert not {k: v for k, v in offenders.items() if v}


def test_capabilities_never_import_each_others_http_layer() -> None:
    agent = REPO / "agent"
    packages = {p.name for p in agent.iterdir() if (p / "__init__.py").exists()}
    found = {}
    for package in packages:
        for path in (agent / package).rglob("*.py"):
            foreign = sorted(
                name
                for name in _imports(path)
                if name.startswith("agent.")
                and name.split(".")[1] in packages - {package}
                and ".http" in name[len("agent.") :]
            )
            if foreign:
                found[str(path.relative_to(REPO))] = foreign
    assert not found
