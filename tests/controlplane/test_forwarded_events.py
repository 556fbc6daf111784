"""Events the agent forwards to the control plane, each from the real thing and each found in the CP's SQLite
store: a spawned process that exits, a recording stopped, an extension installed, and telemetry (a page's
console.log) once the CP's CFG enables its category."""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent.sandbox import Sandbox
from controlplane.gateway import Gateway
from harness.cdp import PageSession
from harness.controlplane import linked_sandbox, wait_for

Linked = tuple[Gateway, Sandbox, Path]


@pytest.fixture(scope="module")
async def linked() -> AsyncIterator[Linked]:
    async with linked_sandbox() as triple:
        gw = triple[0]
        await wait_for(lambda: "agent-1" in gw.agents and gw.agents["agent-1"].welcomed, 60, "HELLO")
        yield triple


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        yield session


def stored(gw: Gateway, kind: str) -> list[dict[str, Any]]:
    return gw.store.events("agent-1", kind=kind, limit=10_000)


async def post(http: aiohttp.ClientSession, box: Sandbox, path: str, **kw: Any) -> tuple[int, Any]:
    async with http.post(box.agent_url + path, **kw) as response:
        body = await response.read()
        return response.status, json.loads(body) if body else None


async def test_a_process_exit_is_forwarded(linked: Linked, http: aiohttp.ClientSession) -> None:
    gw, box, _ = linked
    status, spawned = await post(
        http, box, "/process/spawn", json={"command": "sh", "args": ["-c", "exit 3"]}
    )
    assert status == 200, spawned
    pid = spawned["process_id"]

    def exited() -> list[dict[str, Any]]:
        return [e for e in stored(gw, "process.exited") if e["data"]["process_id"] == pid]

    (event,) = await wait_for(exited, 20, "the process.exited event in the store")
    assert event["data"]["exit_code"] == 3 and event["data"]["timed_out"] is False


async def test_a_finished_recording_is_forwarded(linked: Linked, http: aiohttp.ClientSession) -> None:
    gw, box, _ = linked
    status, started = await post(http, box, "/replays", json={})
    assert status == 201, started
    replay_id = started["replay_id"]
    await asyncio.sleep(1.0)  # a second of video, so that the file has frames
    status, _ = await post(http, box, f"/replays/{replay_id}/stop")
    assert status == 200

    def finished() -> list[dict[str, Any]]:
        return [e for e in stored(gw, "replay.finished") if e["data"]["replay_id"] == replay_id]

    (event,) = await wait_for(finished, 30, "the replay.finished event in the store")
    assert event["data"]["end_reason"] == "stopped" and event["data"]["size_bytes"] > 0


def extension_zip() -> bytes:
    manifest = {
        "manifest_version": 3,
        "name": "forwarded",
        "version": "1.0",
        "background": {"service_worker": "worker.js"},
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("manifest.json", json.dumps(manifest))
        archive.writestr("worker.js", "self.addEventListener('install', () => {});")
    return buffer.getvalue()


async def test_an_installed_extension_is_forwarded(linked: Linked, http: aiohttp.ClientSession) -> None:
    gw, box, _ = linked
    data = aiohttp.FormData()
    data.add_field("extensions[][name]", "forwarded-ext")
    data.add_field(
        "extensions[][zip_file]", extension_zip(), filename="x.zip", content_type="application/zip"
    )
    status, body = await post(http, box, "/extensions", data=data)
    assert status in (200, 201, 204), body
    (event,) = await wait_for(lambda: stored(gw, "extensions.installed"), 30, "extensions.installed")
    assert event["data"]["names"] == ["forwarded-ext"] and "forwarded-ext" in event["data"]["installed"]
    # Chromium restarted to load it: wait for its DevTools to be back before the next test uses a page.
    await wait_for(lambda: box.health()[0] == 200, 60, "Chromium back after the install")


async def test_telemetry_is_forwarded_per_the_cps_cfg(linked: Linked) -> None:
    gw, box, _ = linked
    page = await PageSession.open(box.cdp_url)
    try:
        # Before any CFG nothing of telemetry goes to the CP, though api_call (control, on by default) events
        # of the earlier tests' calls are in the agent's own buffer.
        assert not [e for e in gw.store.events("agent-1", limit=10_000) if e["kind"].startswith("telemetry")]
        gw.configure("agent-1", 1, {"browser": {"console": {"enabled": True}}})
        await wait_for(
            lambda: gw.agents["agent-1"].health.get("link", {}).get("applied_config_version") == 1,
            20,
            "the CFG applied (reported in a heartbeat)",
        )

        def console(marker: str) -> list[dict[str, Any]]:
            return [e for e in stored(gw, "telemetry.console") if marker in json.dumps(e["data"])]

        # The monitor enables the Runtime domain when console turns on: log until one arrives.
        async def logged() -> bool:
            await page.evaluate("console.log('forwarded-marker')")
            return bool(console("forwarded-marker"))

        await wait_for(logged, 30, "a telemetry.console event in the store")
        event = console("forwarded-marker")[0]["data"]
        assert event["type"] == "console_log" and event["category"] == "console"
        # The CP serves what it stored on /browsers/{id}/telemetry/events (kind telemetry.*).
        assert any(
            "forwarded-marker" in json.dumps(r["data"]) for r in gw.store.telemetry_page("agent-1", 0, 1000)
        )
        # Turning capture off (the SDK's enabled: false) stops the forwarding.
        gw.configure("agent-1", 2, {"enabled": False})
        await wait_for(
            lambda: gw.agents["agent-1"].health.get("link", {}).get("applied_config_version") == 2,
            20,
            "CFG 2",
        )
        before = len(stored(gw, "telemetry.console"))
        await page.evaluate("console.log('after-off')")
        # api_call events of the health probe go through the same path: nothing telemetry arrives.
        await wait_for(lambda: box.health()[0] == 200, 10)
        assert not console("after-off") and len(stored(gw, "telemetry.console")) == before
    finally:
        await page.close()
