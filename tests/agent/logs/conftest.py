"""Helpers for the /logs tests: a fresh directory in the sandbox's fs root, the stream URL, LogEvent checks.

The test sandbox confines /fs (and so `source=path`) to `<state dir>/fs`; supervisord's program logs are in
`<state dir>/logs`, outside it.
"""

from __future__ import annotations

import datetime
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from agent.sandbox import Sandbox
from agent.spec import Spec, check

SPEC = Spec.load()
LOG_EVENT = SPEC.schema_validator("LogEvent")
ERROR = SPEC.schema_validator("Error")


@pytest.fixture
def workdir(sandbox: Sandbox) -> Path:
    directory = sandbox.state_dir / "fs" / f"logs-{uuid.uuid4().hex[:10]}"
    directory.mkdir(parents=True)
    return directory


def stream_url(sandbox: Sandbox, **params: Any) -> str:
    query = {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in params.items()}
    return f"{sandbox.agent_url}/logs/stream?{urlencode(query)}"


def messages(events: list[dict[str, Any]]) -> list[str]:
    """The events' messages, each event checked against the spec's LogEvent."""
    out = []
    for event in events:
        check(LOG_EVENT, event)
        assert event["event"] == "log"
        stamp = datetime.datetime.fromisoformat(event["timestamp"])
        assert stamp.utcoffset() == datetime.timedelta(0)
        out.append(event["message"])
    return out
