"""The browserCurl typed request: built from what validation hands over, with the spec's defaults."""

from __future__ import annotations

import dataclasses

import pytest

from agent.curl.models import BrowserCurlRequest, BrowserCurlResult, CurlResponse
from agent.curl.operations import OPERATIONS
from agent.curl.urls import checked_url, split_url
from agent.errors import BadRequest
from agent.operation import Operations, build, json_name
from agent.services import Services
from agent.spec import Spec

SPEC = Spec.load()
OPS = Operations(SPEC, Services(), OPERATIONS)


def test_the_spec_defaults_arrive_in_the_typed_request() -> None:
    req = build(BrowserCurlRequest, OPS.validate("browserCurl", {"url": "http://example.test/"}))
    assert req == BrowserCurlRequest(
        url="http://example.test/", method="GET", timeout_ms=30000, response_encoding="utf8"
    )
    assert req.headers is None and req.body is None


def test_given_fields_are_kept_and_bad_ones_refused() -> None:
    args = {"url": "http://x/", "method": "POST", "headers": {"A": "1"}, "body": "b", "timeout_ms": 1000}
    req = build(BrowserCurlRequest, OPS.validate("browserCurl", {**args, "response_encoding": "base64"}))
    assert (req.method, req.headers, req.body, req.timeout_ms, req.response_encoding) == (
        "POST",
        {"A": "1"},
        "b",
        1000,
        "base64",
    )
    with pytest.raises(BadRequest):
        OPS.validate("browserCurl", {"url": "http://x/", "method": "TRACE"})


def test_the_fields_are_the_spec_operations_fields() -> None:
    (op,) = [op for op in SPEC.operations.values() if op.operation_id == "browserCurl"]
    assert op.body_schema is not None
    properties = SPEC._deref(op.body_schema)["properties"]
    assert {json_name(f) for f in dataclasses.fields(BrowserCurlRequest)} == set(properties)


def test_the_result_encodes_the_body_as_asked() -> None:
    response = CurlResponse(200, {"A": ["1"]}, b"\xff\x00ok", 5)
    assert BrowserCurlResult.of(response, "base64").body == "/wBvaw=="
    assert BrowserCurlResult.of(response, "utf8").body == "\ufffd\x00ok"


def test_urls() -> None:
    assert checked_url(" http://a/ ") == "http://a/"
    for bad in ("ftp://a/", "http://", "not a url"):
        with pytest.raises(BadRequest):
            checked_url(bad)
    assert split_url("http://u:p%40@[::1]:8/p?q#f") == (
        "http://[::1]:8/p?q",
        "http://[::1]:8",
        {"Authorization": "Basic dTpwQA=="},
    )
