"""Records the CDP side of real browser curl requests as fixtures for tests/agent/curl/test_exchange.py.

Run by hand (it starts a private sandbox: Xvfb, Chromium, supervisord, under the test lock):
    flock /tmp/bva-test.lock python -m tests.agent.curl.record_exchanges
Each case is a real request through CurlService against the loopback echo server; what the sans-io Exchange
was fed (events, replies, failures) and what it answered are written to exchanges.json.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from pathlib import Path
from typing import Any, ClassVar

from agent.cdp.connection import CDPConnection
from agent.curl import exchange as exchange_module
from agent.curl import service as service_module
from agent.curl.models import CurlRequest
from agent.curl.service import CurlService
from agent.errors import AgentError
from harness.sandboxes import private_sandbox
from tests.helpers.echo_server import EchoServer, closed_port

FIXTURE = Path(__file__).with_name("exchanges.json")
SMALL_CAP = 1000  # max_body_bytes of the "too big" cases


def action_json(action: exchange_module.Action) -> Any:
    if isinstance(action, exchange_module.Send):
        return {"send": action.method, "params": action.params}
    if isinstance(action, exchange_module.Drain):
        return {"drain": True}
    return None


class Recording(exchange_module.Exchange):
    traces: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.steps: list[dict[str, Any]] = []
        body = kwargs["body"]
        Recording.traces.append(
            {
                "exchange": {
                    **{k: v for k, v in kwargs.items() if k != "body"},
                    "body_b64": base64.b64encode(body).decode() if body is not None else None,
                },
                "steps": self.steps,
            }
        )

    def _step(self, kind: str, data: Any, action: exchange_module.Action) -> exchange_module.Action:
        self.steps.append({"in": kind, "data": data, "out": action_json(action)})
        return action

    def event(self, event: Any) -> exchange_module.Action:
        return self._step("event", event, super().event(event))

    def reply(self, result: Any) -> exchange_module.Action:
        return self._step("reply", result, super().reply(result))

    def failed(self, error: Exception) -> exchange_module.Action:
        data = {"error": type(error).__name__, "message": getattr(error, "message", str(error))}
        return self._step("failed", data, super().failed(error))

    def drained(self, events: Any) -> exchange_module.Action:
        events = list(events)
        return self._step("drained", events, super().drained(events))

    def quiet(self) -> exchange_module.Action:
        return self._step("quiet", None, super().quiet())


async def record() -> None:
    setattr(service_module, "Exchange", Recording)  # noqa: B010 (the shell builds its exchanges by this name)
    echo = EchoServer()
    await echo.start()
    cases: list[tuple[str, CurlRequest, int]] = [
        ("get", CurlRequest(echo.url("/echo"), "GET", 5000), 32 << 20),
        (
            "post_with_headers_and_body",
            CurlRequest(
                echo.url("/echo?q=1"), "POST", 5000, headers={"X-Custom": "yes"}, body=b'{"hello": "world"}'
            ),
            32 << 20,
        ),
        ("head", CurlRequest(echo.url("/echo"), "HEAD", 5000), 32 << 20),
        ("redirect", CurlRequest(echo.url("/redirect"), "GET", 5000), 32 << 20),
        ("not_found", CurlRequest(echo.url("/nothing-here"), "GET", 5000), 32 << 20),
        ("multi_value_headers", CurlRequest(echo.url("/multi"), "GET", 5000), 32 << 20),
        ("chunked", CurlRequest(echo.url("/chunked?bytes=3000"), "GET", 5000), 32 << 20),
        ("too_big_streamed", CurlRequest(echo.url("/chunked?bytes=3000"), "GET", 5000), SMALL_CAP),
        ("too_big_declared", CurlRequest(echo.url("/binary"), "GET", 5000), SMALL_CAP),
        ("connection_refused", CurlRequest(f"http://127.0.0.1:{closed_port()}/", "GET", 5000), 32 << 20),
        ("timeout", CurlRequest(echo.url("/slow?s=3"), "GET", 1000), 32 << 20),
    ]
    out: dict[str, Any] = {}
    with private_sandbox("bva-record-") as box:
        cdp = CDPConnection(box.cdp_url)
        runner = asyncio.get_running_loop().create_task(cdp.run(), name="record-cdp")
        try:
            await cdp.wait_connected(30)
            service = CurlService(cdp)
            try:
                for name, request, cap in cases:
                    service.max_body_bytes = cap
                    Recording.traces.clear()
                    try:
                        response = await service.request(request)
                        outcome: dict[str, Any] = {"status": response.status}
                    except AgentError as exc:
                        outcome = {"error": type(exc).__name__, "message": exc.message}
                    (trace,) = Recording.traces
                    out[name] = {**trace, "outcome": outcome}
                    print(name, outcome, len(trace["steps"]), "steps")
            finally:
                await service.close()
        finally:
            await cdp.close()
            runner.cancel()
            with contextlib.suppress(BaseException):
                await runner
    await echo.stop()
    FIXTURE.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    asyncio.run(record())
