"""Found by the fuzzer: JSON Schema counts 177.0 as an integer, so validation lets it through, and handlers
that pass it on (struct.pack, ioctl, range) raised -> 500 (POST /process/spawn with "cols": 177.0)."""

from __future__ import annotations

from typing import Any

from agent.spec import Spec


def test_integral_floats_reach_handlers_as_ints() -> None:
    spec = Spec.load()
    schema: dict[str, Any] = {"$ref": "#/components/schemas/ProcessSpawnRequest"}
    body = {"command": "echo", "allocate_tty": True, "rows": 53, "cols": 177.0, "timeout_sec": 0.0}
    out = spec.with_defaults(schema, body)
    assert isinstance(out, dict)
    assert out["cols"] == 177 and type(out["cols"]) is int
    assert out["timeout_sec"] == 0 and type(out["timeout_sec"]) is int  # integer | null
    assert type(out["rows"]) is int


def test_numbers_stay_numbers_and_nested_integers_are_converted() -> None:
    spec = Spec.load()
    # `path` items are [integer, integer]; a `number` field keeps its float.
    drag = spec.with_defaults(
        {"$ref": "#/components/schemas/DragMouseRequest"}, {"path": [[1.0, 2.0], [3, 4.0]]}
    )
    assert isinstance(drag, dict)
    assert drag["path"] == [[1, 2], [3, 4]]
    assert all(type(v) is int for point in drag["path"] for v in point)
    assert spec.with_defaults({"type": "number"}, 2.0) == 2.0
    assert type(spec.with_defaults({"type": "number"}, 2.0)) is float
