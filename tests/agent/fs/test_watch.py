"""Directory watches over real inotify: event types, recursion, resume, several at once, freeing them."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import aiohttp

from agent.fs.atomic import AtomicFile, is_temp_name, temp_name
from agent.sandbox import Sandbox
from tests.agent.fs.conftest import FsClient, agent_pid, error, event_stream, has, matches
from tests.conftest import AgentClient


async def start(agent: AgentClient, path: Path | str, recursive: bool | None = None) -> str:
    body: dict[str, Any] = {"path": str(path)}
    if recursive is not None:
        body["recursive"] = recursive
    reply = await agent.post("/fs/watch", body)
    assert reply.status == 201, reply
    watch_id: str = reply.json()["watch_id"]
    assert isinstance(watch_id, str) and watch_id
    return watch_id


async def stop(agent: AgentClient, watch_id: str) -> None:
    # As the SDK sends it: Content-Type JSON, empty body.
    reply = await agent.request(
        "DELETE", f"/fs/watch/{watch_id}", headers={"Content-Type": "application/json"}, data=b""
    )
    assert (reply.status, reply.body) == (204, b""), reply


async def inotify_fds_become(pid: int, wanted: int) -> int:
    """The agent's inotify fd count once it is `wanted` (a watch's thread closes its fd as it ends)."""
    count = inotify_fds(pid)
    for _ in range(200):
        if count == wanted:
            break
        await asyncio.sleep(0.05)
        count = inotify_fds(pid)
    return count


async def settled_inotify_fds(pid: int) -> int:
    """The count once it has not changed for a moment (watches of earlier tests finish closing)."""
    last = inotify_fds(pid)
    for _ in range(40):
        await asyncio.sleep(0.05)
        now = inotify_fds(pid)
        if now == last:
            break
        last = now
    return last


def inotify_fds(pid: int) -> int:
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:inotify":
                count += 1
        except OSError:
            continue
    return count


async def test_every_event_type_arrives(
    agent: AgentClient, http: aiohttp.ClientSession, workdir: Path, sandbox: Sandbox
) -> None:
    (workdir / "existing.txt").write_bytes(b"x")
    (workdir / "old-dir").mkdir()
    watch_id = await start(agent, workdir)
    url = f"{sandbox.agent_url}/fs/watch/{watch_id}/events"
    async with event_stream(http, url) as events:
        (workdir / "new.txt").write_bytes(b"hello")
        await events.wait_for(has("CREATE", workdir / "new.txt", is_dir=False))
        with (workdir / "existing.txt").open("ab") as f:
            f.write(b"more")
        await events.wait_for(has("WRITE", workdir / "existing.txt", is_dir=False))
        os.rename(workdir / "existing.txt", workdir / "renamed.txt")
        await events.wait_for(has("CREATE", workdir / "renamed.txt"))
        await events.wait_for(has("RENAME", workdir / "existing.txt", is_dir=False))
        os.unlink(workdir / "new.txt")
        await events.wait_for(has("DELETE", workdir / "new.txt", is_dir=False))
        (workdir / "made").mkdir()
        await events.wait_for(has("CREATE", workdir / "made", is_dir=True))
        os.rename(workdir / "old-dir", workdir / "new-dir")
        await events.wait_for(has("RENAME", workdir / "old-dir", is_dir=True))
        os.rmdir(workdir / "made")
        await events.wait_for(has("DELETE", workdir / "made", is_dir=True))
        for _, event in events.frames:
            matches("FileSystemEvent", event)
            assert event["name"] == Path(event["path"]).name
        ids = [event_id for event_id, _ in events.frames]
        assert ids == list(range(1, len(ids) + 1))  # an id: on every frame, in order
        # A rename is RENAME on the old path, then CREATE on the new one; nothing says DELETE for it.
        kinds = [(e["type"], Path(e["path"]).name) for e in events.events]
        assert kinds.index(("RENAME", "existing.txt")) < kinds.index(("CREATE", "renamed.txt"))
        assert ("DELETE", "existing.txt") not in kinds
    await stop(agent, watch_id)


async def test_recursive_and_not(
    agent: AgentClient, http: aiohttp.ClientSession, workdir: Path, sandbox: Sandbox
) -> None:
    (workdir / "sub").mkdir()
    flat = await start(agent, workdir)
    deep = await start(agent, workdir, recursive=True)
    async with (
        event_stream(http, f"{sandbox.agent_url}/fs/watch/{flat}/events") as flat_events,
        event_stream(http, f"{sandbox.agent_url}/fs/watch/{deep}/events") as deep_events,
    ):
        (workdir / "sub" / "nested.txt").write_bytes(b"x")
        (workdir / "sub" / "newdir").mkdir()
        await deep_events.wait_for(has("CREATE", workdir / "sub" / "newdir", is_dir=True))
        (workdir / "sub" / "newdir" / "deeper.txt").write_bytes(b"y")  # a directory made after the start
        await deep_events.wait_for(has("CREATE", workdir / "sub" / "newdir" / "deeper.txt"))
        await deep_events.wait_for(has("CREATE", workdir / "sub" / "nested.txt"))
        (workdir / "marker").write_bytes(b"")
        await flat_events.wait_for(has("CREATE", workdir / "marker"))
        assert not [e for e in flat_events.events if "/sub/" in e["path"]]
    await stop(agent, flat)
    await stop(agent, deep)


async def test_events_before_the_stream_opens_and_resume_with_last_event_id(
    agent: AgentClient, http: aiohttp.ClientSession, workdir: Path, sandbox: Sandbox
) -> None:
    watch_id = await start(agent, workdir)
    url = f"{sandbox.agent_url}/fs/watch/{watch_id}/events"
    (workdir / "early.txt").write_bytes(b"x")  # before anyone listens: kept in the buffer
    async with event_stream(http, url) as first:
        await first.wait_for(has("CREATE", workdir / "early.txt"))
        (workdir / "second.txt").write_bytes(b"x")
        await first.wait_for(has("CREATE", workdir / "second.txt"))
        seen = list(first.frames)
    last_id = seen[-1][0]
    assert last_id is not None
    # While nobody listens, more happens; a reconnecting client misses none of it and gets nothing twice.
    for name in ("third.txt", "fourth.txt"):
        (workdir / name).write_bytes(b"x")
        await asyncio.sleep(0.1)
    async with event_stream(http, url, last_event_id=last_id) as resumed:
        await resumed.wait_for(has("CREATE", workdir / "fourth.txt"))
        assert resumed.frames[0][0] == last_id + 1
        assert [Path(e["path"]).name for e in resumed.events] == ["third.txt", "fourth.txt"]
    async with event_stream(http, url, last_event_id=0) as replay:
        await replay.wait_for(lambda events: len(events) == 4)
        assert [Path(e["path"]).name for e in replay.events] == [
            "early.txt",
            "second.txt",
            "third.txt",
            "fourth.txt",
        ]
    bad = await agent.get(f"/fs/watch/{watch_id}/events", headers={"Last-Event-ID": "abc"})
    assert "Last-Event-ID" in error(bad, 400)
    await stop(agent, watch_id)


async def test_several_watches_and_stopping_frees_them(
    agent: AgentClient, http: aiohttp.ClientSession, workdir: Path, sandbox: Sandbox
) -> None:
    pid = agent_pid(sandbox)
    before = await settled_inotify_fds(pid)
    dirs = [workdir / f"d{i}" for i in range(5)]
    for directory in dirs:
        directory.mkdir()
    ids = [await start(agent, directory) for directory in dirs]
    assert len(set(ids)) == len(ids)
    assert await inotify_fds_become(pid, before + len(ids)) == before + len(ids)
    async with (
        event_stream(http, f"{sandbox.agent_url}/fs/watch/{ids[0]}/events") as first,
        event_stream(http, f"{sandbox.agent_url}/fs/watch/{ids[3]}/events") as fourth,
    ):
        (dirs[3] / "only-here").write_bytes(b"x")
        (dirs[0] / "only-there").write_bytes(b"x")
        await fourth.wait_for(has("CREATE", dirs[3] / "only-here"))
        await first.wait_for(has("CREATE", dirs[0] / "only-there"))
        assert [Path(e["path"]).name for e in fourth.events] == ["only-here"]
        await stop(agent, ids[3])
        await asyncio.wait_for(fourth.ended.wait(), 10)  # a stopped watch ends its streams
    for watch_id in ids[:3] + ids[4:]:
        await stop(agent, watch_id)
    assert await inotify_fds_become(pid, before) == before
    assert "no watch" in error(await agent.get(f"/fs/watch/{ids[3]}/events"), 404)
    again = await agent.request("DELETE", f"/fs/watch/{ids[3]}", headers={"Content-Type": "application/json"})
    assert "no watch" in error(again, 404)


async def test_watch_errors(fs: FsClient, workdir: Path) -> None:
    agent = fs.agent
    (workdir / "file").write_bytes(b"x")
    assert "no such file" in error(await agent.post("/fs/watch", {"path": f"{workdir}/missing"}), 404)
    assert "not a directory" in error(await agent.post("/fs/watch", {"path": f"{workdir}/file"}), 400)
    assert "absolute" in error(await agent.post("/fs/watch", {"path": "relative"}), 400)
    assert "outside" in error(await agent.post("/fs/watch", {"path": "/etc"}), 403)
    assert "unknown field" in error(await agent.post("/fs/watch", {"path": str(workdir), "depth": 2}), 400)
    assert "no watch" in error(await agent.get("/fs/watch/not-a-watch/events"), 404)


async def test_watched_directory_removed(
    agent: AgentClient, http: aiohttp.ClientSession, workdir: Path, sandbox: Sandbox
) -> None:
    target = workdir / "doomed"
    target.mkdir()
    (target / "f").write_bytes(b"x")
    watch_id = await start(agent, target, recursive=True)
    async with event_stream(http, f"{sandbox.agent_url}/fs/watch/{watch_id}/events") as events:
        shutil.rmtree(target)
        await events.wait_for(has("DELETE", target / "f", is_dir=False))
        await events.wait_for(has("DELETE", target, is_dir=True))
    await stop(agent, watch_id)


async def test_the_agents_own_temp_files_never_show(
    agent: AgentClient, fs: FsClient, http: aiohttp.ClientSession, workdir: Path, sandbox: Sandbox
) -> None:
    (workdir / "sub").mkdir()
    (workdir / "source.txt").write_bytes(b"moved")
    flat = await start(agent, workdir)
    deep = await start(agent, workdir, recursive=True)
    async with (
        event_stream(http, f"{sandbox.agent_url}/fs/watch/{flat}/events") as flat_events,
        event_stream(http, f"{sandbox.agent_url}/fs/watch/{deep}/events") as deep_events,
    ):
        # write_file goes through `.<name>.<random>.part` and a rename: only the target shows.
        # Each step waits for both streams: a recursive watch reports in batches, and a CREATE and a WRITE of
        # one file in the same batch would be one change (the CI caught that under load).
        assert (await fs.write(workdir / "new.txt", b"first")).status == 201
        await flat_events.wait_for(has("CREATE", workdir / "new.txt", is_dir=False))
        await deep_events.wait_for(has("CREATE", workdir / "new.txt", is_dir=False))
        assert (await fs.write(workdir / "new.txt", b"second, replacing the first")).status == 201
        await flat_events.wait_for(has("WRITE", workdir / "new.txt", is_dir=False))
        await deep_events.wait_for(has("WRITE", workdir / "new.txt", is_dir=False))
        assert (await fs.write(workdir / "sub" / "deep.txt", b"x")).status == 201
        await deep_events.wait_for(has("CREATE", workdir / "sub" / "deep.txt", is_dir=False))
        # A rename by someone else over an existing file is still a RENAME + CREATE.
        os.rename(workdir / "source.txt", workdir / "new.txt")
        await flat_events.wait_for(has("RENAME", workdir / "source.txt"))
        (workdir / "marker").mkdir()  # after everything above in the event order
        await flat_events.wait_for(has("CREATE", workdir / "marker"))
        await deep_events.wait_for(has("CREATE", workdir / "marker"))
        assert [(e["type"], e["name"]) for e in flat_events.events] == [
            ("CREATE", "new.txt"),
            ("WRITE", "new.txt"),
            ("RENAME", "source.txt"),
            ("CREATE", "new.txt"),
            ("CREATE", "marker"),
        ]
        assert [(e["type"], e["name"]) for e in deep_events.events] == [
            ("CREATE", "new.txt"),
            ("WRITE", "new.txt"),
            ("CREATE", "deep.txt"),
            ("RENAME", "source.txt"),
            ("CREATE", "new.txt"),
            ("CREATE", "marker"),
        ]
    await stop(agent, flat)
    await stop(agent, deep)


def test_one_predicate_names_the_temp_files() -> None:
    assert is_temp_name(temp_name("report.txt"))
    with tempfile.TemporaryDirectory() as directory:
        written = AtomicFile(os.path.join(directory, "a.b"), None, fsync=False)
        assert is_temp_name(os.path.basename(written.temp_path))
        written.discard()
    assert is_temp_name(".unzip-k2_9xq0a.part")
    assert not is_temp_name("report.txt.part")
    assert not is_temp_name(".report.txt")
    assert not is_temp_name(".report.part")
