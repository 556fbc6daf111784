"""The Playwright typed requests: built from what validation hands over, with the spec's defaults."""

from __future__ import annotations

import dataclasses

import pytest

from agent.errors import BadRequest
from agent.operation import Operations, build, json_name
from agent.playwright import models
from agent.playwright.operations import OPERATIONS
from agent.services import Services
from agent.spec import Spec

SPEC = Spec.load()
OPS = Operations(SPEC, Services(), OPERATIONS)


def test_execute_gets_the_spec_timeout() -> None:
    req = build(models.ExecutePlaywrightRequest, OPS.validate("executePlaywrightCode", {"code": "return 1"}))
    assert req == models.ExecutePlaywrightRequest(code="return 1", timeout_sec=60, executor=None)
    args = {"code": "x", "timeout_sec": 5, "executor": "mine"}
    assert build(models.ExecutePlaywrightRequest, OPS.validate("executePlaywrightCode", args)) == (
        models.ExecutePlaywrightRequest("x", 5, "mine")
    )
    with pytest.raises(BadRequest):
        OPS.validate("executePlaywrightCode", {"code": "x", "executor": "no spaces"})


def test_delete_closes_the_tab_unless_told_not_to() -> None:
    validated = OPS.validate("deletePlaywrightExecutor", {"name": "mine"})
    assert build(models.DeletePlaywrightExecutorRequest, validated) == (
        models.DeletePlaywrightExecutorRequest(name="mine", close_tab=True)
    )
    validated = OPS.validate("deletePlaywrightExecutor", {"name": "mine", "close_tab": False})
    assert build(models.DeletePlaywrightExecutorRequest, validated).close_tab is False


def test_the_fields_are_the_spec_operations_fields() -> None:
    for op in OPERATIONS:
        (spec_op,) = [s for s in SPEC.operations.values() if s.operation_id == op.operation_id]
        names = {p.name for p in spec_op.parameters}
        if spec_op.body_schema is not None:
            names |= set(SPEC._deref(spec_op.body_schema).get("properties", {}))
        assert {json_name(f) for f in dataclasses.fields(op.request)} == names, op.operation_id
