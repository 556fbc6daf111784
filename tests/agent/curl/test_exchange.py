"""The sans-io Fetch exchange: CDP events and replies in → CDP commands and a result or error out.

The recorded cases (exchanges.json, made by record_exchanges.py from real requests through the sandbox's
Chromium) are replayed: every recorded input must give the recorded output, and the outcome must be the
expected one. Synthetic cases cover the failures a real run rarely shows (a command failing, silence).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from agent.cdp.connection import CDPDisconnected, CDPError
from agent.curl.errors import CurlTransportError, Dirty
from agent.curl.exchange import FETCH_ENDED, QUIET_S, Action, Answer, Drain, Exchange, Send

FIXTURE = json.loads(Path(__file__).with_name("exchanges.json").read_text())


def action_json(action: Action) -> Any:
    if isinstance(action, Send):
        return {"send": action.method, "params": action.params}
    if isinstance(action, Drain):
        return {"drain": True}
    return None


def recorded_exchange(case: Mapping[str, Any]) -> Exchange:
    spec = dict(case["exchange"])
    body = spec.pop("body_b64")
    return Exchange(**spec, body=base64.b64decode(body) if body is not None else None)


def replay(case: Mapping[str, Any]) -> tuple[Exchange, list[str]]:
    """Feed the recorded inputs; check each output against the recorded one; the methods sent, in order."""
    exchange = recorded_exchange(case)
    sent: list[str] = []
    for n, step in enumerate(case["steps"]):
        kind, data = step["in"], step["data"]
        if kind == "event":
            action = exchange.event(data)
        elif kind == "reply":
            action = exchange.reply(data)
        elif kind == "failed":
            error_class = CDPDisconnected if data["error"] == "CDPDisconnected" else CDPError
            action = exchange.failed(error_class("recorded", data["message"]))
        elif kind == "drained":
            action = exchange.drained(data)
        else:
            assert kind == "quiet"
            action = exchange.quiet()
        assert action_json(action) == step["out"], f"step {n}: {kind} {json.dumps(data)[:200]}"
        if isinstance(action, Send):
            sent.append(action.method)
    return exchange, sent


def answer(exchange: Exchange) -> Answer:
    assert exchange.finished and exchange.error is None, exchange.error
    assert exchange.answer is not None and exchange.paused is not None
    return exchange.answer


def transport_error(exchange: Exchange) -> CurlTransportError:
    assert exchange.finished and exchange.answer is None
    assert isinstance(exchange.error, CurlTransportError), exchange.error
    return exchange.error


# --- recorded cases ------------------------------------------------------------------------------------


def test_get_reads_the_declared_body_whole() -> None:
    exchange, sent = replay(FIXTURE["get"])
    assert sent == ["Fetch.getResponseBody"]  # Content-Length: no stream needed
    result = answer(exchange)
    assert result.status == 200
    assert json.loads(result.body)["method"] == "GET"
    assert result.headers["Content-Type"] == ["application/json; charset=utf-8"]


def test_headers_and_body_are_merged_in_at_the_request_stage() -> None:
    case = FIXTURE["post_with_headers_and_body"]
    exchange, sent = replay(case)
    assert exchange.request_stage
    assert sent == ["Fetch.continueRequest", "Fetch.getResponseBody"]
    (override,) = [
        s["out"]["params"] for s in case["steps"] if (s["out"] or {}).get("send") == "Fetch.continueRequest"
    ]
    assert {"name": "X-Custom", "value": "yes"} in override["headers"]
    assert any(h["name"].lower() == "user-agent" for h in override["headers"])  # the browser's stay
    assert base64.b64decode(override["postData"]) == b'{"hello": "world"}'
    seen = json.loads(answer(exchange).body)
    assert seen["method"] == "POST" and base64.b64decode(seen["body_b64"]) == b'{"hello": "world"}'


def test_head_has_no_body() -> None:
    exchange, _ = replay(FIXTURE["head"])
    result = answer(exchange)
    assert (result.status, result.body) == (200, b"")


def test_a_redirect_comes_back_as_it_is() -> None:
    exchange, sent = replay(FIXTURE["redirect"])
    assert sent == ["Fetch.getResponseBody"]
    result = answer(exchange)
    assert result.status == 302 and result.headers["Location"] == ["/echo?from=redirect"]


def test_an_error_status_is_an_answer_not_an_error() -> None:
    exchange, _ = replay(FIXTURE["not_found"])
    result = answer(exchange)
    assert result.status == 404 and b"Not Found" in result.body


def test_raw_headers_give_every_set_cookie() -> None:
    exchange, _ = replay(FIXTURE["multi_value_headers"])
    result = answer(exchange)
    assert result.headers["X-Multi"] == ["one", "two"]
    assert result.headers["Set-Cookie"] == ["m1=a; Path=/multi", "m2=b; Path=/multi; HttpOnly"]


def test_a_body_without_length_is_streamed() -> None:
    exchange, sent = replay(FIXTURE["chunked"])
    assert sent[0] == "Fetch.takeResponseBodyAsStream" and sent[-1] == "IO.close"
    assert set(sent[1:-1]) == {"IO.read"}
    assert answer(exchange).body == b"z" * 3000


def test_a_streamed_body_past_the_cap_stops_and_is_aborted() -> None:
    exchange, sent = replay(FIXTURE["too_big_streamed"])
    assert sent == ["Fetch.takeResponseBodyAsStream", "IO.read", "IO.close", "Fetch.failRequest"]
    error = transport_error(exchange)
    assert error.net_error_name == "ERR_FILE_TOO_BIG" and "1000 bytes" in error.message


def test_a_declared_length_past_the_cap_is_refused_unread() -> None:
    exchange, sent = replay(FIXTURE["too_big_declared"])
    assert sent == ["Fetch.failRequest"]  # never Fetch.getResponseBody
    error = transport_error(exchange)
    assert error.net_error_name == "ERR_FILE_TOO_BIG" and "16384 bytes declared" in error.message


def test_loading_failed_names_the_net_error() -> None:
    exchange, _ = replay(FIXTURE["connection_refused"])
    error = transport_error(exchange)
    assert (error.net_error_name, error.net_error) == ("ERR_CONNECTION_REFUSED", -102)
    assert FIXTURE["connection_refused"]["outcome"]["error"] == "CurlTransportError"


def test_without_an_answer_the_exchange_waits_the_timeout_is_the_shells() -> None:
    case = FIXTURE["timeout"]
    exchange, _ = replay(case)
    assert not exchange.finished and exchange.quiet_after is None  # still waiting, no clock of its own
    assert case["outcome"]["error"] == "CurlTransportError" and "1000 ms" in case["outcome"]["message"]


def test_the_fixture_has_exactly_the_cases_tested_here() -> None:
    assert set(FIXTURE) == {
        "get",
        "post_with_headers_and_body",
        "head",
        "redirect",
        "not_found",
        "multi_value_headers",
        "chunked",
        "too_big_streamed",
        "too_big_declared",
        "connection_refused",
        "timeout",
    }


# --- synthetic cases -----------------------------------------------------------------------------------


def new_exchange(**overrides: Any) -> Exchange:
    fields: dict[str, Any] = {
        "url": "http://127.0.0.1:9/x",
        "method": "GET",
        "headers": {},
        "body": None,
        "max_body_bytes": 100,
        **overrides,
    }
    return Exchange(**fields)


def response_paused(status: int = 200, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    return {
        "method": "Fetch.requestPaused",
        "params": {
            "requestId": "interception-1",
            "networkId": "net-1",
            "responseStatusCode": status,
            "responseHeaders": [{"name": k, "value": v} for k, v in (headers or {}).items()],
        },
    }


FAIL_REQUEST = Send("Fetch.failRequest", {"requestId": "interception-1", "errorReason": "Aborted"})


@pytest.fixture
def exchange() -> Exchange:
    return new_exchange()


def test_the_fetch_ending_without_an_answer_leaves_the_target_dirty(exchange: Exchange) -> None:
    assert exchange.event({"method": FETCH_ENDED}) is None
    assert exchange.quiet_after == QUIET_S
    assert exchange.quiet() is None
    assert exchange.finished and isinstance(exchange.error, Dirty)


def test_a_failure_trailing_the_fetchs_end_is_still_the_error(exchange: Exchange) -> None:
    exchange.event({"method": FETCH_ENDED})
    params = {"requestId": "net-1", "errorText": "net::ERR_NAME_NOT_RESOLVED", "canceled": False}
    assert exchange.event({"method": "Network.loadingFailed", "params": params}) is None
    assert transport_error(exchange).net_error_name == "ERR_NAME_NOT_RESOLVED"


def test_a_canceled_load_is_not_an_error(exchange: Exchange) -> None:
    params = {"requestId": "net-1", "errorText": "net::ERR_ABORTED", "canceled": True}
    assert exchange.event({"method": "Network.loadingFailed", "params": params}) is None
    assert not exchange.finished


def test_a_response_error_at_the_response_stage_is_let_through(exchange: Exchange) -> None:
    event = {"method": "Fetch.requestPaused", "params": {"requestId": "i-1", "responseErrorReason": "Failed"}}
    assert exchange.event(event) == Send("Fetch.continueRequest", {"requestId": "i-1"})
    assert exchange.reply({}) is None and not exchange.finished


def test_a_failing_continue_request_is_the_error(exchange: Exchange) -> None:
    exchange = new_exchange(headers={"X": "1"})
    paused = {"method": "Fetch.requestPaused", "params": {"requestId": "i-1", "request": {"headers": {}}}}
    assert exchange.event(paused) == Send(
        "Fetch.continueRequest", {"requestId": "i-1", "headers": [{"name": "X", "value": "1"}]}
    )
    error = CDPError("Fetch.continueRequest", "Invalid InterceptionId.")
    assert exchange.failed(error) is None
    assert exchange.finished and exchange.error is error


def test_a_failing_body_read_aborts_the_answer_then_fails(exchange: Exchange) -> None:
    assert exchange.event(response_paused(headers={"Content-Length": "5"})) == Send(
        "Fetch.getResponseBody", {"requestId": "interception-1"}
    )
    error = CDPError("Fetch.getResponseBody", "No data found for resource with given identifier")
    assert exchange.failed(error) == FAIL_REQUEST
    assert not exchange.finished
    assert exchange.failed(CDPError("Fetch.failRequest", "gone")) is None  # the abort's own failure is moot
    assert exchange.finished and exchange.error is error


def test_a_body_that_grew_past_the_cap_is_refused(exchange: Exchange) -> None:
    exchange.event(response_paused(headers={"Content-Length": "5"}))  # compressed: 5 bytes on the wire
    body = base64.b64encode(b"y" * 101).decode()
    assert exchange.reply({"body": body, "base64Encoded": True}) == FAIL_REQUEST
    assert exchange.reply({}) is None
    assert "101 bytes" in transport_error(exchange).message


def test_no_body_for_head_is_an_empty_body_but_a_lost_browser_is_an_error() -> None:
    head = new_exchange(method="HEAD")
    head.event(response_paused(headers={"Content-Length": "5"}))
    raw = {"requestId": "net-1", "headers": {"Content-Length": "5"}}
    head.event({"method": "Network.responseReceivedExtraInfo", "params": raw})
    assert head.failed(CDPError("Fetch.getResponseBody", "Can only get response body on requests")) is None
    assert answer(head) == Answer(200, {"Content-Length": ["5"]}, b"")

    lost = new_exchange(method="HEAD")
    lost.event(response_paused())
    gone = CDPDisconnected("Fetch.getResponseBody")
    assert lost.failed(gone) == FAIL_REQUEST
    assert lost.failed(CDPDisconnected("Fetch.failRequest")) is None
    assert lost.finished and lost.error is gone


def test_a_failing_stream_read_closes_the_stream_then_aborts(exchange: Exchange) -> None:
    assert exchange.event(response_paused()).method == "Fetch.takeResponseBodyAsStream"  # type: ignore[union-attr]
    assert exchange.reply({"stream": "s-1"}) == Send("IO.read", {"handle": "s-1", "size": 4 * 1024 * 1024})
    error = CDPError("IO.read", "Invalid stream handle")
    assert exchange.failed(error) == Send("IO.close", {"handle": "s-1"})
    assert exchange.reply({}) == FAIL_REQUEST
    assert exchange.reply({}) is None
    assert exchange.finished and exchange.error is error


def test_late_raw_headers_are_looked_for_after_the_body(exchange: Exchange) -> None:
    exchange.event(response_paused(headers={"Content-Length": "2", "X-Fetch": "a"}))
    assert exchange.reply({"body": "ok"}) == Drain()
    late = {"requestId": "net-1", "headers": {"Set-Cookie": "a=1\nb=2", "Content-Length": "2"}}
    unrelated = {"method": "Network.dataReceived", "params": {"requestId": "net-1"}}
    assert (
        exchange.drained([unrelated, {"method": "Network.responseReceivedExtraInfo", "params": late}]) is None
    )
    assert answer(exchange) == Answer(200, {"Set-Cookie": ["a=1", "b=2"], "Content-Length": ["2"]}, b"ok")


def test_without_raw_headers_fetchs_own_list_is_used(exchange: Exchange) -> None:
    exchange.event(response_paused(headers={"Content-Length": "2", "X-Fetch": "a"}))
    exchange.reply({"body": "ok"})
    assert exchange.drained([]) is None
    assert answer(exchange).headers == {"Content-Length": ["2"], "X-Fetch": ["a"]}
