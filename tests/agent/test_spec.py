"""The contract: every error is an Error body, bodies and queries are validated, the spec is served."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from agent.app import build_app
from agent.config import Config
from agent.spec import Spec, check
from agent.unimplemented import NOT_IMPLEMENTED
from tests.conftest import AgentClient

SPEC = Spec.load()
ERROR = SPEC.schema_validator("Error")


def assert_error(reply: Any, status: int) -> dict[str, Any]:
    assert reply.status == status, reply
    assert reply.headers["Content-Type"].startswith("application/json")
    body: dict[str, Any] = reply.json()
    check(ERROR, body)
    return body


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "fragment"),
    [
        ("GET", "/no/such/route", {}, 404, "no route"),
        ("DELETE", "/computer/click_mouse", {}, 405, "not allowed"),
        (
            "POST",
            "/computer/click_mouse",
            {"data": b"{not json", "headers": {"Content-Type": "application/json"}},
            400,
            "not valid JSON",
        ),
        (
            "POST",
            "/computer/click_mouse",
            {"data": b"", "headers": {"Content-Type": "application/json"}},
            400,
            "required",
        ),
        (
            "POST",
            "/process/exec",
            {"data": b'{"command": "true"}', "headers": {"Content-Type": "text/plain"}},
            415,
            "send application/json",
        ),
        (
            "POST",
            "/process/exec",
            {"data": b"command=true", "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
            415,
            "send application/json",
        ),
        ("POST", "/process/exec", {"data": b'{"command": "true"}'}, 415, "application/json"),
        (
            "POST",
            "/process/exec",
            {"data": b"[" * 100_000 + b"]" * 100_000, "headers": {"Content-Type": "application/json"}},
            400,
            "nested too deeply",
        ),
        (
            "POST",
            "/process/exec",
            {
                "data": b'{"command": "true", "env": ' + b'{"a":' * 5000 + b"1" + b"}" * 5000 + b"}",
                "headers": {"Content-Type": "application/json"},
            },
            400,
            "",
        ),
        ("POST", "/computer/click_mouse", {"json": [1, 2]}, 400, "must be of type object"),
        ("POST", "/computer/click_mouse", {"json": {"x": 1, "y": 2, "z": 3}}, 400, "unknown field: z"),
        (
            "POST",
            "/computer/click_mouse",
            {"json": {"x": 1.5, "y": 2}},
            400,
            "field 'x' must be of type integer",
        ),
        (
            "POST",
            "/computer/click_mouse",
            {"json": {"x": True, "y": 2}},
            400,
            "field 'x' must be of type integer",
        ),
        ("POST", "/computer/click_mouse", {"json": {"x": 1, "y": 2, "num_clicks": "2"}}, 400, "num_clicks"),
        ("POST", "/computer/move_mouse", {"json": {"x": 1, "y": 2, "duration_ms": 5001}}, 400, "<= 5000"),
        ("POST", "/computer/click_mouse", {"json": {"x": 1, "y": 2, "click_type": "triple"}}, 400, "one of"),
        (
            "POST",
            "/computer/click_mouse",
            {"json": {"x": 1, "y": 2}, "params": {"verbose": "1"}},
            400,
            "unknown query parameter: verbose",
        ),
        ("POST", "/computer/get_mouse_position", {"json": {"x": 1}}, 400, "unknown field: x"),
        (
            "POST",
            "/computer/type",
            {"data": b"x" * (9 * 1024 * 1024), "headers": {"Content-Type": "application/json"}},
            413,
            "larger than",
        ),
    ],
)
async def test_bad_requests_get_error_bodies(
    agent: AgentClient, method: str, path: str, kwargs: dict[str, Any], status: int, fragment: str
) -> None:
    body = assert_error(await agent.request(method, path, **kwargs), status)
    assert fragment in body["message"], body


async def test_daemon_stays_healthy_after_bad_input(agent: AgentClient) -> None:
    for _ in range(3):
        await agent.post("/computer/batch", {"actions": [{"type": "nope"}]})
        await agent.request(
            "POST", "/computer/type", data=b"\xff\xfe", headers={"Content-Type": "application/json"}
        )
    reply = await agent.get("/health")
    assert reply.status == 200 and reply.json()["status"] == "ok"


async def test_every_route_accepts_a_jwt_query_parameter(agent: AgentClient) -> None:
    reply = await agent.post("/computer/get_mouse_position", params={"jwt": "header.payload.sig"})
    assert reply.status == 200 and set(reply.json()) == {"x", "y"}
    assert (await agent.get("/health", params={"jwt": "t"})).status == 200


async def test_empty_json_bodies_are_accepted_where_the_sdk_sends_them(agent: AgentClient) -> None:
    for path in ("/computer/get_mouse_position", "/computer/clipboard/read"):
        reply = await agent.request("POST", path, data=b"", headers={"Content-Type": "application/json"})
        assert reply.status == 200, (path, reply)
        assert (await agent.post(path, {})).status == 200


async def test_the_spec_is_served_as_yaml_and_json(agent: AgentClient) -> None:
    as_yaml = await agent.get("/spec.yaml")
    as_json = await agent.get("/spec.json")
    assert as_yaml.status == as_json.status == 200
    assert yaml.safe_load(as_yaml.body) == as_json.json()
    assert "/computer/click_mouse" in as_json.json()["paths"]


async def test_health_reports_x_chromium_versions_and_uptime(agent: AgentClient) -> None:
    report = (await agent.get("/health")).json()
    assert report["status"] == "ok"
    assert report["x"]["ready"] and report["chromium"]["ready"]
    assert report["chromium"]["browser"].startswith("Chrome/")
    assert report["uptime_s"] > 0 and report["version"]


def test_every_computer_route_in_the_spec_is_served() -> None:
    app = build_app(Config())
    served = {(r.method, r.resource.canonical) for r in app.router.routes() if r.resource is not None}
    wanted = {key for key in SPEC.operations if key[1].startswith("/computer/")}
    assert wanted and wanted <= served


def test_validation_messages_name_nested_fields() -> None:
    op = SPEC.operations[("POST", "/computer/drag_mouse")]
    assert op.body_validator is not None
    with pytest.raises(Exception, match=r"field 'path\[1\]\[0\]' must be of type integer"):
        check(op.body_validator, {"path": [[1, 1], ["a", 2]]})


def test_every_seed_operation_is_built() -> None:
    assert frozenset() == NOT_IMPLEMENTED


async def test_an_operation_listed_as_not_built_answers_501_not_a_404() -> None:
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from agent.errors import error_middleware
    from agent.unimplemented import complete

    text = yaml.safe_dump(
        {
            **SPEC.document,
            "paths": {**SPEC.document["paths"], "/brand/new": {"post": {"operationId": "brandNew"}}},
        }
    )
    app = web.Application(middlewares=[error_middleware])
    spec = Spec(text)
    served = web.Application()  # every other operation counts as served here
    for method, path in spec.operations:
        if path != "/brand/new":
            served.router.add_route(method, path, lambda request: web.Response())  # type: ignore[arg-type,return-value]
    for route in served.router.routes():
        app.router.add_route(route.method, route.resource.canonical, route.handler)  # type: ignore[union-attr]
    complete(app, spec, frozenset({"brandNew"}))
    async with TestClient(TestServer(app)) as client:
        reply = await client.post("/brand/new")
        assert reply.status == 501
        assert await reply.json() == {"code": "not_implemented", "message": "brandNew is not implemented yet"}


def test_every_spec_operation_is_served_or_listed_as_not_implemented() -> None:
    app = build_app(Config())
    served = {(r.method, r.resource.canonical) for r in app.router.routes() if r.resource is not None}
    assert set(SPEC.operations) <= served


def test_the_app_refuses_to_start_when_an_operation_is_unaccounted_for() -> None:
    text = yaml.safe_dump(
        {
            **SPEC.document,
            "paths": {**SPEC.document["paths"], "/brand/new": {"get": {"operationId": "brandNew"}}},
        }
    )
    with pytest.raises(RuntimeError, match=r"brandNew \(GET /brand/new\)"):
        build_app(Config(), Spec(text))
