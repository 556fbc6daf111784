"""The SDK's generated tests for repl, curl and webmcp (see cases.py), run against a real sandbox.

Each case runs the generator's five shapes (method, with all params, raw response, streaming response, empty
path parameters) with the sync client (loose, strict) and the async one (loose, strict; aiohttp skipped).
A pass: the answer parses as the method's type (strict: validated by the SDK), and is also valid under our
spec; or, where the generated data cannot be valid for a real browser, the refusal the case names, as the
spec's Error. Nothing may be a 5xx, and the SDK sends no request for an empty path parameter.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from kernel import APIStatusError, AsyncKernel, Kernel
from pydantic import BaseModel

from agent.spec import Spec, check
from tests.sdk_generated.cases import CASES, Case

SPEC = Spec.load()
ERROR = SPEC.schema_validator("Error")
IDS = [case.id for case in CASES]
SYNC = pytest.mark.parametrize("client", [False, True], indirect=True, ids=["loose", "strict"])
ASYNC = pytest.mark.parametrize(
    "async_client",
    [False, True, {"http_client": "aiohttp"}],
    indirect=True,
    ids=["loose", "strict", "aiohttp"],
)
SHAPES = ["method", "method_with_all_params", "raw_response", "streaming_response"]


def resource(root: Any, case: Case) -> Any:
    for name in case.resource.split("."):
        root = getattr(root, name)
    return root


def assert_matches(case: Case, value: Any) -> None:
    """What the generated tests' assert_matches_type checks: the value is the method's type, fully valid."""
    if case.returns is None:
        assert value is None
        return
    assert isinstance(value, case.returns), type(value)
    assert isinstance(value, BaseModel)
    case.returns.model_validate(value.model_dump(mode="json", by_alias=True))


def assert_refused(case: Case, error: APIStatusError) -> None:
    assert case.rejects is not None
    status, code = case.rejects
    assert error.status_code == status, (error.status_code, error.response.text)
    body = json.loads(error.response.text)
    check(ERROR, body)
    assert body["code"] == code


def check_spec(case: Case, response: httpx.Response) -> None:
    """The answer is also valid under our own spec (the SDK's loose client checks nothing)."""
    if case.schema is None:
        assert response.status_code == 204 and not response.content
    else:
        check(SPEC.schema_validator(case.schema), response.json())


def params(case: Case, shape: str) -> dict[str, Any]:
    if shape == "method_with_all_params":
        if case.all_params is None:
            pytest.skip("the method has no optional parameters (no such generated test)")
        return case.all_params
    return case.required


def run_sync(client: Kernel, case: Case, shape: str) -> Any:
    res = resource(client, case)
    kwargs = params(case, shape)
    if shape.startswith("method"):
        return getattr(res, case.method)(**kwargs)
    if shape == "raw_response":
        response = getattr(res.with_raw_response, case.method)(**kwargs)
        assert response.is_closed is True
        assert response.http_request.headers.get("X-Stainless-Lang") == "python"
        check_spec(case, response.http_response)
        return response.parse()
    with getattr(res.with_streaming_response, case.method)(**kwargs) as response:
        assert not response.is_closed
        assert response.http_request.headers.get("X-Stainless-Lang") == "python"
        value = response.parse()
    assert response.is_closed is True
    return value


async def run_async(client: AsyncKernel, case: Case, shape: str) -> Any:
    res = resource(client, case)
    kwargs = params(case, shape)
    if shape.startswith("method"):
        return await getattr(res, case.method)(**kwargs)
    if shape == "raw_response":
        response = await getattr(res.with_raw_response, case.method)(**kwargs)
        assert response.is_closed is True
        assert response.http_request.headers.get("X-Stainless-Lang") == "python"
        check_spec(case, response.http_response)
        return await response.parse()
    async with getattr(res.with_streaming_response, case.method)(**kwargs) as response:
        assert not response.is_closed
        assert response.http_request.headers.get("X-Stainless-Lang") == "python"
        value = await response.parse()
    assert response.is_closed is True
    return value


def outcome_sync(case: Case, call: Callable[[], Any]) -> None:
    if case.rejects is None:
        assert_matches(case, call())
        return
    with pytest.raises(APIStatusError) as caught:
        call()
    assert_refused(case, caught.value)


async def outcome_async(case: Case, call: Callable[[], Awaitable[Any]]) -> None:
    if case.rejects is None:
        assert_matches(case, await call())
        return
    with pytest.raises(APIStatusError) as caught:
        await call()
    assert_refused(case, caught.value)


@SYNC
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_sync(client: Kernel, case: Case, shape: str) -> None:
    outcome_sync(case, lambda: run_sync(client, case, shape))


@SYNC
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_sync_path_params(client: Kernel, case: Case) -> None:
    for name in case.path_params:
        with pytest.raises(ValueError, match=rf"Expected a non-empty value for `{name}` but received ''"):
            getattr(resource(client, case).with_raw_response, case.method)(**{**case.required, name: ""})


@ASYNC
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("case", CASES, ids=IDS)
async def test_async(async_client: AsyncKernel, case: Case, shape: str) -> None:
    await outcome_async(case, lambda: run_async(async_client, case, shape))


@ASYNC
@pytest.mark.parametrize("case", CASES, ids=IDS)
async def test_async_path_params(async_client: AsyncKernel, case: Case) -> None:
    for name in case.path_params:
        with pytest.raises(ValueError, match=rf"Expected a non-empty value for `{name}` but received ''"):
            await getattr(resource(async_client, case).with_raw_response, case.method)(
                **{**case.required, name: ""}
            )
