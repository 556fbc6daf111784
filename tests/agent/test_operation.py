"""The operation core: defaults from the spec, typed requests, one call path with the HTTP validation."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

import pytest

from agent.errors import BadRequest
from agent.operation import Operation, Operations, build, to_json
from agent.services import Services
from agent.spec import Spec

SPEC = Spec.load()


@dataclasses.dataclass(frozen=True)
class Click:
    x: int
    y: int
    num_clicks: int
    button: str | None = None
    hold_keys: tuple[str, ...] | None = None


@dataclasses.dataclass(frozen=True)
class Action:
    type: str
    click_mouse: Click | None = None


@dataclasses.dataclass(frozen=True)
class Batch:
    actions: list[Action]


def test_defaults_are_filled_in_at_every_depth_and_the_input_is_not_changed() -> None:
    schema = {"$ref": "#/components/schemas/BatchComputerActionRequest"}
    body: dict[str, Any] = {"actions": [{"type": "click_mouse", "click_mouse": {"x": 1, "y": 2}}]}
    out = SPEC.with_defaults(schema, body)
    click = {"x": 1, "y": 2, "num_clicks": 1, "button": "left", "click_type": "click"}
    assert out == {"actions": [{"type": "click_mouse", "click_mouse": click}]}
    assert body == {"actions": [{"type": "click_mouse", "click_mouse": {"x": 1, "y": 2}}]}


def test_typed_requests_are_built_with_nested_dataclasses_lists_and_optionals() -> None:
    batch = build(
        Batch,
        {
            "actions": [
                {"type": "click_mouse", "click_mouse": {"x": 1, "y": 2, "num_clicks": 3, "hold_keys": ["a"]}}
            ]
        },
    )
    assert batch == Batch([Action("click_mouse", Click(1, 2, 3, None, ("a",)))])
    assert to_json(batch) == {
        "actions": [
            {"type": "click_mouse", "click_mouse": {"x": 1, "y": 2, "num_clicks": 3, "hold_keys": ["a"]}}
        ]
    }


async def test_call_validates_applies_defaults_and_runs_the_same_operation_http_does() -> None:
    seen: list[Click] = []

    async def run(services: Services, request: Click) -> dict[str, int]:
        seen.append(request)
        return {"clicks": request.num_clicks}

    operations = Operations(SPEC, Services(), [Operation("clickMouse", Click, run)])
    assert await operations.call("clickMouse", {"x": 5, "y": 6}) == {"clicks": 1}
    assert seen == [Click(5, 6, 1, "left")]
    with pytest.raises(BadRequest, match="missing required field: y"):
        await operations.call("clickMouse", {"x": 5})
    with pytest.raises(BadRequest, match="unknown field: z"):
        await operations.call("clickMouse", {"x": 5, "y": 6, "z": 1})


def test_an_operation_the_spec_lacks_is_refused() -> None:
    async def run(services: Services, request: Click) -> None:
        return None

    with pytest.raises(RuntimeError, match=r"'noSuchOperation' is not in agent/openapi\.yaml"):
        Operations(SPEC, Services(), [Operation("noSuchOperation", Click, run)])


def _spec_fields(operation_id: str) -> set[str]:
    (op,) = [op for op in SPEC.operations.values() if op.operation_id == operation_id]
    names = {p.name for p in op.parameters}
    pending = [op.body_schema] if op.body_schema else []
    while pending:
        schema = SPEC._deref(dict(pending.pop()))
        names |= set(schema.get("properties", {}))
        pending.extend(schema.get("allOf", []))
    return names


def _object_schema(schema: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """Properties and required names of an object schema (allOf parts merged)."""
    schema = SPEC._deref(dict(schema))
    properties = dict(schema.get("properties", {}))
    required = set(schema.get("required", []))
    for part in schema.get("allOf", []):
        more, needed = _object_schema(part)
        properties.update(more)
        required |= needed
    return properties, required


def _dataclass_in(hint: Any) -> Any:
    """The dataclass a field's type holds (X, X | None, list[X], tuple[X, ...]), or None."""
    if dataclasses.is_dataclass(hint):
        return hint
    for arg in typing.get_args(hint):
        found = _dataclass_in(arg)
        if found is not None:
            return found
    return None


def _check_always_set(cls: Any, properties: dict[str, Any], required: set[str], where: str) -> None:
    """A field without a dataclass default must be required by the spec or have a spec default (else a
    request without it fails to build); nested request dataclasses likewise."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        name = field.metadata.get("json", field.name)
        prop = SPEC._deref(dict(properties.get(name, {})))
        no_default = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
        if no_default and properties:
            assert name in required or "default" in prop, f"{where}.{name}: neither required nor defaulted"
        nested = _dataclass_in(hints[field.name])
        if nested is not None and prop:
            item = SPEC._deref(dict(prop.get("items", prop))) if prop.get("type") == "array" else prop
            _check_always_set(nested, *_object_schema(item), f"{where}.{name}")


def test_every_operations_typed_request_has_exactly_the_spec_fields() -> None:
    from agent.app import build_app
    from agent.config import Config
    from agent.operation import OPERATIONS_KEY

    operations = build_app(Config())[OPERATIONS_KEY]
    assert len(operations.ids()) >= 11
    for operation_id in operations.ids():
        request = operations.get(operation_id).request
        fields = {f.metadata.get("json", f.name) for f in dataclasses.fields(request)}
        assert fields == _spec_fields(operation_id), operation_id
        (spec_op,) = [op for op in SPEC.operations.values() if op.operation_id == operation_id]
        properties, required = _object_schema(spec_op.body_schema) if spec_op.body_schema else ({}, set())
        for param in spec_op.parameters:
            properties[param.name] = param.schema
            if param.required:
                required.add(param.name)
        _check_always_set(request, properties, required, operation_id)
