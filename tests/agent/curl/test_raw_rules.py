"""/curl/raw's pass-through rules (pure) and the exchange's streaming mode, without a browser."""

from __future__ import annotations

from agent.curl.exchange import Exchange, Send
from agent.curl.raw import request_headers, response_headers, target_url


def test_the_other_query_parameters_belong_to_the_target_byte_for_byte() -> None:
    raw = "a=1&url=http%3A%2F%2Fh%2Fp%3Fx%3D1&b=two+words&c=%2F&jwt=t&d"
    assert target_url("http://h/p?x=1", raw) == "http://h/p?x=1&a=1&b=two+words&c=%2F&d"
    assert target_url("http://h/p", "url=x&jwt=y") == "http://h/p"
    assert target_url("http://h/p", "q=1&url=x") == "http://h/p?q=1"
    assert target_url("http://h/p?", "q=1") == "http://h/p?q=1"
    assert target_url("http://h/p#frag", "q=1") == "http://h/p?q=1#frag"


def test_request_headers_drop_the_hop_the_browsers_and_the_sdks() -> None:
    headers = request_headers(
        [
            ("Host", "127.0.0.1:10001"),
            ("Content-Length", "3"),
            ("Connection", "keep-alive"),
            ("Accept-Encoding", "gzip"),
            ("User-Agent", "AsyncKernel/Python 0.131.0"),
            ("X-Stainless-Lang", "python"),
            ("x-kernel-direct-vm-request", "true"),
            ("Content-Type", "application/octet-stream"),
            ("X-Multi", "a"),
            ("x-multi", "b"),
        ]
    )
    assert headers == {"Content-Type": "application/octet-stream", "X-Multi": "a, b"}
    assert request_headers([("User-Agent", "my-bot/1")]) == {"User-Agent": "my-bot/1"}


def test_response_headers_keep_length_only_for_the_body_sent() -> None:
    plain = {"Content-Length": ["5"], "Set-Cookie": ["a=1", "b=2"], "Transfer-Encoding": ["chunked"]}
    assert response_headers(plain, keep_length=True) == [
        ("Content-Length", "5"),
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
    ]
    assert response_headers(plain, keep_length=False) == [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")]
    gzipped = {"Content-Length": ["5"], "Content-Encoding": ["gzip"], "X": ["y"]}
    assert response_headers(gzipped, keep_length=True) == [("X", "y")]  # Chromium decoded the body


def paused(status: int, headers: dict[str, str]) -> dict[str, object]:
    return {
        "method": "Fetch.requestPaused",
        "params": {
            "requestId": "interception-1",
            "networkId": "net-1",
            "responseStatusCode": status,
            "responseHeaders": [{"name": k, "value": v} for k, v in headers.items()],
        },
    }


def streaming(method: str = "GET", max_body_bytes: int = 100, raw: dict[str, str] | None = None) -> Exchange:
    exchange = Exchange(
        url="http://h/", method=method, headers={}, body=None, max_body_bytes=max_body_bytes, stream_body=True
    )
    exchange.event(
        {
            "method": "Network.responseReceivedExtraInfo",
            "params": {"requestId": "net-1", "headers": raw or {}},
        }
    )
    return exchange


def test_streaming_mode_hands_the_stream_over_even_with_a_content_length() -> None:
    exchange = streaming()
    action = exchange.event(paused(200, {"Content-Length": "50"}))
    assert action == Send("Fetch.takeResponseBodyAsStream", {"requestId": "interception-1"})
    assert exchange.reply({"stream": "io-7"}) is None
    assert exchange.finished and exchange.answer is not None and exchange.stream == "io-7"


def test_streaming_mode_reads_no_body_where_there_is_none() -> None:
    for method, status in (("HEAD", 200), ("GET", 204), ("GET", 302)):
        exchange = streaming(method)
        assert exchange.event(paused(status, {})) is None
        assert exchange.finished and exchange.answer is not None and exchange.stream is None


def test_streaming_mode_refuses_a_declared_length_over_the_cap() -> None:
    exchange = streaming(max_body_bytes=10, raw={"Content-Length": "11"})
    action = exchange.event(paused(200, {"Content-Length": "11"}))
    assert isinstance(action, Send) and action.method == "Fetch.failRequest"
