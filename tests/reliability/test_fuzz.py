"""schemathesis over every operation of agent/openapi.yaml against a private sandbox (issue 13, item 5).

Positive cases come from a test copy of the spec whose commands are harmless (`true`/`echo`) and whose
durations, sizes and counts are capped, so that a valid request never runs for long nor does harm; negative
cases come from the real spec, so each is invalid there and must be refused (4xx) before anything runs.
Deterministic: hypothesis is derandomized, no example database.
"""

from __future__ import annotations

import copy
from typing import Any

import hypothesis
import hypothesis.errors
import pytest
import requests
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from agent.sandbox import Sandbox
from agent.spec import Spec
from agent.unimplemented import NOT_IMPLEMENTED

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = 12
# SSE streams are read for this long (in total), then cut: the stream's head and first events are checked.
REQUEST_TIMEOUT_S = 3.0

# Not fuzzed at all: a websocket (schemathesis speaks HTTP only).
SKIPPED = {"processAttach": "a websocket upgrade; tests/agent/process covers it"}
# Fuzzed with invalid input only: a valid request restarts Chromium (POST /extensions), or runs a command with
# the fuzzer's arguments and environment (exec/spawn get positive cases from the harmless copy instead).
NEGATIVE_ONLY = {"uploadExtensionsToBrowser"}
POSITIVE_ONLY = {"processExec", "processSpawn"}

# Caps of the positive copy: property name -> largest value (integers) or count (arrays / strings).
INTEGER_CAPS = {
    "delay": 20,
    "duration": 50,
    "duration_ms": 50,
    "step_delay_ms": 5,
    "steps_per_segment": 5,
    "timeout_sec": 2,
    "timeout_ms": 2000,
    "delta_x": 5,
    "delta_y": 5,
    "num_clicks": 3,
    "rows": 200,
    "cols": 200,
}
ARRAY_CAPS = {"actions": 4, "path": 4, "keys": 4, "hold_keys": 2, "args": 3}
STRING_CAPS = {"text": 200, "code": 200}


def _cap(node: Any) -> None:
    if isinstance(node, dict):
        properties = node.get("properties")
        if isinstance(properties, dict):
            for name, schema in properties.items():
                if not isinstance(schema, dict):
                    continue
                if name in INTEGER_CAPS and "integer" in str(schema.get("type")):
                    schema["maximum"] = min(schema.get("maximum", INTEGER_CAPS[name]), INTEGER_CAPS[name])
                    schema.setdefault("minimum", 0)
                if name in ARRAY_CAPS and "array" in str(schema.get("type")):
                    schema["maxItems"] = min(schema.get("maxItems", ARRAY_CAPS[name]), ARRAY_CAPS[name])
                if name in STRING_CAPS and "string" in str(schema.get("type")):
                    schema["maxLength"] = min(schema.get("maxLength", STRING_CAPS[name]), STRING_CAPS[name])
        for value in node.values():
            _cap(value)
    elif isinstance(node, list):
        for value in node:
            _cap(value)


def harmless_copy(raw: dict[str, Any]) -> dict[str, Any]:
    spec = copy.deepcopy(raw)
    schemas = spec["components"]["schemas"]
    for name in ("ProcessExecRequest", "ProcessSpawnRequest"):
        props = schemas[name]["properties"]
        props["command"] = {"type": "string", "enum": ["true", "echo"]}
        # No privilege changes, no directory or environment of the fuzzer's choice.
        for field in ("as_user", "as_root", "cwd", "env"):
            props.pop(field, None)
    # Only what requests use is capped: a response schema (e.g. a result's duration_ms) must stay as it is.
    request_parts = [
        part
        for item in spec["paths"].values()
        for method, operation in item.items()
        if method in {"get", "put", "post", "delete", "patch"}
        for part in (operation.get("parameters"), operation.get("requestBody"))
        if part
    ]
    for name in _referenced(request_parts, schemas):
        _cap(schemas[name])
    _cap(request_parts)
    return spec


def _referenced(node: Any, schemas: dict[str, Any]) -> set[str]:
    """The component schemas `node` refers to, transitively."""
    found: set[str] = set()
    pending = [node]
    while pending:
        current = pending.pop()
        if isinstance(current, dict):
            ref = current.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
                name = ref.rsplit("/", 1)[1]
                if name not in found:
                    found.add(name)
                    pending.append(schemas[name])
            pending.extend(current.values())
        elif isinstance(current, list):
            pending.extend(current)
    return found


def _operations() -> list[str]:
    raw = Spec.load().document
    ids = []
    for item in raw["paths"].values():
        for method, operation in item.items():
            if method in {"get", "put", "post", "delete", "patch"}:
                ids.append(operation["operationId"])
    return ids


@pytest.fixture(scope="module")
def schemas() -> dict[GenerationMode, Any]:
    raw = Spec.load().document
    return {
        GenerationMode.POSITIVE: schemathesis.openapi.from_dict(harmless_copy(raw)),
        GenerationMode.NEGATIVE: schemathesis.openapi.from_dict(copy.deepcopy(raw)),
    }


def _modes(operation_id: str) -> list[GenerationMode]:
    if operation_id in NEGATIVE_ONLY:
        return [GenerationMode.NEGATIVE]
    if operation_id in POSITIVE_ONLY:
        return [GenerationMode.POSITIVE]
    return [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]


@pytest.mark.timeout(240)
@pytest.mark.parametrize("operation_id", _operations())
def test_fuzz_operation(operation_id: str, rbox: Sandbox, schemas: dict[GenerationMode, Any]) -> None:
    if operation_id in SKIPPED:
        pytest.skip(SKIPPED[operation_id])
    if operation_id in NOT_IMPLEMENTED:
        pytest.skip("not implemented yet (501 by design)")
    session = requests.Session()
    for mode in _modes(operation_id):
        operation = schemas[mode].find_operation_by_id(operation_id)
        strategy = operation.as_strategy(generation_mode=mode)

        @hypothesis.settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(hypothesis.HealthCheck),
            phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
        )
        @hypothesis.given(case=strategy)
        def run(case: Any) -> None:
            response = case.call(base_url=rbox.agent_url, session=session, timeout=REQUEST_TIMEOUT_S)
            checks = CHECKS
            # (schemathesis's Response has lowercase header names and a list of values for each.)
            if response.headers.get("content-type", [""])[0].startswith("text/event-stream"):
                # The stream is cut after REQUEST_TIMEOUT_S, and an event cut half-way (a megabyte-sized
                # monitor_screenshot, say) is not JSON, so schemathesis checks the raw {data, id, event}
                # object against the envelope's schema and fails. The stream tests of each capability
                # validate every whole event's data against the spec instead.
                checks = [c for c in CHECKS if c is not response_schema_conformance]
            case.validate_response(response, checks=checks)

        try:
            run()
        except hypothesis.errors.Unsatisfiable:
            # No invalid request exists for it (no parameters, or only free strings): nothing to send.
            if mode is not GenerationMode.NEGATIVE:
                raise
    session.close()
    # The agent is still healthy after the operation was fuzzed.
    status, _ = rbox.health()
    assert status == 200, f"agent unhealthy after fuzzing {operation_id}"
