"""Spawned processes: output streams, resume, stdin, signals, status, timeouts, many at once."""

from __future__ import annotations

import asyncio
import datetime
import uuid

import psutil
import pytest

from agent.config import Config
from agent.process.models import CommandRequest, SpawnRequest, Terminal
from agent.process.service import ProcessService
from tests.conftest import AgentClient

from .conftest import Processes, error, eventually, live, live_with_cmdline, secs


async def test_spawn_answers_at_once_and_the_stream_carries_output_then_exit(processes: Processes) -> None:
    spawned = await processes.spawn(command="echo one; sleep 0.2; echo two >&2; sleep 0.2; exit 4")
    uuid.UUID(spawned["process_id"])
    assert spawned["pid"] > 1
    started = datetime.datetime.fromisoformat(spawned["started_at"].replace("Z", "+00:00"))
    assert abs((datetime.datetime.now(datetime.UTC) - started).total_seconds()) < 60
    assert (await processes.status(spawned["process_id"]))["state"] == "running"
    collected = await processes.output(spawned["process_id"])
    assert collected.data("stdout") == b"one\n"
    assert collected.data("stderr") == b"two\n"
    assert collected.exit == {"event": "exit", "exit_code": 4, "timed_out": False}
    ids = [i for i in collected.ids if isinstance(i, int)]
    assert len(ids) == len(collected.ids) and ids == sorted(ids) and len(set(ids)) == len(ids)
    status = await processes.status(spawned["process_id"])
    assert status == {"state": "exited", "exit_code": 4, "cpu_pct": 0.0, "mem_bytes": 0, "timed_out": False}


async def test_every_subscriber_gets_the_whole_output_from_the_start(processes: Processes) -> None:
    spawned = await processes.spawn(command="for i in 1 2 3 4; do echo line$i; sleep 0.15; done")
    pid = spawned["process_id"]
    early = processes.stream(pid)
    async with early:
        await early.until_output(b"line2\n")
        # later subscribers, while it still runs and after it ended, still get everything from line1
        late = await asyncio.gather(processes.output(pid), processes.output(pid))
        await early.until_exit()
    after_exit = await processes.output(pid)
    expected = b"line1\nline2\nline3\nline4\n"
    for collected in [early.collected, *late, after_exit]:
        assert collected.data() == expected
        assert collected.exit is not None and collected.exit["exit_code"] == 0


async def test_last_event_id_resumes_without_loss_or_repeats(processes: Processes) -> None:
    spawned = await processes.spawn(command="for i in 1 2 3 4 5 6; do echo part$i; sleep 0.1; done")
    pid = spawned["process_id"]
    first = processes.stream(pid)
    async with first:
        await first.until_output(b"part3\n")
    seen = first.collected
    last_id = seen.ids[-1]
    assert isinstance(last_id, int)
    rest = await processes.output(pid, last_event_id=last_id)
    assert seen.data() + rest.data() == b"".join(b"part%d\n" % i for i in range(1, 7))
    assert all(isinstance(i, int) and i > last_id for i in rest.ids)
    # resuming after the end gives nothing but the end
    end_id = rest.ids[-1]
    assert isinstance(end_id, int)
    tail = await processes.output(pid, last_event_id=end_id - 1)
    assert tail.data() == b"" and tail.exit is not None


async def test_a_bad_last_event_id_is_400(agent: AgentClient, processes: Processes) -> None:
    spawned = await processes.spawn(command="true")
    reply = await agent.get(
        f"/process/{spawned['process_id']}/stdout/stream", headers={"Last-Event-ID": "yesterday"}
    )
    assert "Last-Event-ID" in error(reply, 400)


async def test_an_interactive_shell_driven_through_stdin(processes: Processes) -> None:
    spawned = await processes.spawn(command="sh")
    pid = spawned["process_id"]
    async with processes.stream(pid) as stream:
        assert await processes.stdin(pid, "echo hello $((1+2))\n") == len("echo hello $((1+2))\n")
        await stream.until_output(b"hello 3\n")
        await processes.stdin(pid, "echo oops >&2; read line; echo got:$line\n")
        await stream.until(lambda c: c.data("stderr") == b"oops\n")
        await processes.stdin(pid, "typed line\n")
        await stream.until_output(b"got:typed line\n")
        await processes.stdin(pid, "exit 5\n")
        assert (await stream.until_exit())["exit_code"] == 5
    assert "has exited" in error(
        await processes.agent.post(f"/process/{pid}/stdin", {"data_b64": "eA=="}), 400
    )


async def test_eof_on_stdin_ends_a_reader(processes: Processes) -> None:
    spawned = await processes.spawn(command="wc", args=["-c"])
    pid = spawned["process_id"]
    await processes.stdin(pid, b"x" * 100_000)
    await processes.stdin(pid, b"y" * 23, eof=True)
    collected = await processes.output(pid)
    assert collected.data().strip() == b"100023"
    assert collected.exit is not None and collected.exit["exit_code"] == 0


async def test_stdin_after_eof_is_400(processes: Processes) -> None:
    spawned = await processes.spawn(command="sleep 5")
    pid = spawned["process_id"]
    await processes.stdin(pid, b"", eof=True)
    assert "closed" in error(await processes.agent.post(f"/process/{pid}/stdin", {"data_b64": "eA=="}), 400)
    await processes.kill(pid, "KILL")


async def test_bad_base64_is_400(processes: Processes) -> None:
    spawned = await processes.spawn(command="cat")
    pid = spawned["process_id"]
    assert "base64" in error(await processes.agent.post(f"/process/{pid}/stdin", {"data_b64": "%%%"}), 400)
    await processes.kill(pid)


@pytest.mark.parametrize(("signal_name", "code"), [("TERM", 143), ("KILL", 137), ("INT", 130), ("HUP", 129)])
async def test_kill_sends_the_signal(processes: Processes, signal_name: str, code: int) -> None:
    spawned = await processes.spawn(command="sleep", args=["300"])
    await processes.kill(spawned["process_id"], signal_name)
    status = await processes.wait_exited(spawned["process_id"])
    assert status["exit_code"] == code


async def test_kill_reaches_grandchildren_and_their_own_sessions(processes: Processes) -> None:
    spawned = await processes.spawn(
        command=f"sleep {secs(1241)} & setsid sleep {secs(1242)} & sleep {secs(1243)} & wait"
    )
    await eventually(
        lambda: all(live_with_cmdline("sleep", secs(n)) for n in (1241, 1242, 1243)), 10, "sleeps started"
    )
    tree = psutil.Process(spawned["pid"]).children(recursive=True)
    assert len(tree) >= 3
    await processes.kill(spawned["process_id"], "TERM")
    status = await processes.wait_exited(spawned["process_id"])
    assert status["exit_code"] == 143
    await eventually(
        lambda: not any(live_with_cmdline("sleep", secs(n)) for n in (1241, 1242, 1243)),
        10,
        "every sleep gone",
    )
    assert not any(live(p.pid) for p in tree)


async def test_kill_after_exit_is_harmless(processes: Processes) -> None:
    spawned = await processes.spawn(command="true")
    await processes.wait_exited(spawned["process_id"])
    await processes.kill(spawned["process_id"], "KILL")


async def test_status_measures_cpu_and_memory_of_the_tree(processes: Processes) -> None:
    # The busy loop runs in a grandchild: the parent shell itself is idle.
    spawned = await processes.spawn(command="sh -c 'while :; do :; done' & wait")
    pid = spawned["process_id"]
    try:
        status = await processes.status(pid)
        assert status["state"] == "running" and "exit_code" not in status
        assert status["mem_bytes"] > 100_000
        # measured, not a constant: a spinning shell shows
        await asyncio.sleep(0.3)
        status = await processes.status(pid)
        assert status["cpu_pct"] > 5.0, status
    finally:
        await processes.kill(pid, "KILL")
    idle = await processes.spawn(command="sleep 30")
    try:
        await asyncio.sleep(0.2)
        assert (await processes.status(idle["process_id"]))["cpu_pct"] < 50.0
    finally:
        await processes.kill(idle["process_id"], "KILL")


async def test_spawn_timeout_ends_the_group(processes: Processes) -> None:
    spawned = await processes.spawn(
        command=f"echo begun; sleep {secs(1244)} & sleep {secs(1244)}", timeout_sec=1
    )
    collected = await processes.output(spawned["process_id"])
    assert collected.data() == b"begun\n"
    assert collected.exit == {"event": "exit", "exit_code": 124, "timed_out": True}
    status = await processes.status(spawned["process_id"])
    assert status["timed_out"] is True and status["exit_code"] == 124
    await eventually(lambda: not live_with_cmdline("sleep", secs(1244)), 5, f"every sleep {secs(1244)} gone")


async def test_a_child_writing_100_mib_with_no_reader_does_not_block(processes: Processes) -> None:
    spawned = await processes.spawn(command="head -c 104857600 /dev/zero; echo done >&2")
    status = await processes.wait_exited(spawned["process_id"], timeout=60)
    assert status["exit_code"] == 0
    collected = await processes.output(spawned["process_id"])
    # The buffer kept the newest output only (bounded by bytes), and the stream still ends properly.
    assert 0 < len(collected.data("stdout")) <= Config().process_buffer_bytes
    assert collected.data("stderr") == b"done\n"
    first_id = collected.ids[0]
    assert isinstance(first_id, int) and first_id > 1


async def test_a_hundred_concurrent_spawns(processes: Processes) -> None:
    spawned = await asyncio.gather(
        *(processes.spawn(command="echo", args=[f"n{i}"], env={"N": str(i)}) for i in range(100))
    )
    assert len({s["process_id"] for s in spawned}) == 100
    assert len({s["pid"] for s in spawned}) == 100
    outputs = await asyncio.gather(*(processes.output(s["process_id"]) for s in spawned))
    for i, collected in enumerate(outputs):
        assert collected.data() == f"n{i}\n".encode()
        assert collected.exit is not None and collected.exit["exit_code"] == 0


async def test_unknown_and_malformed_ids(agent: AgentClient) -> None:
    unknown = str(uuid.uuid4())
    for method, path, body in [
        ("GET", "status", None),
        ("GET", "stdout/stream", None),
        ("POST", "stdin", {"data_b64": ""}),
        ("POST", "kill", {"signal": "TERM"}),
        ("POST", "resize", {"rows": 10, "cols": 10}),
        ("GET", "attach", None),
    ]:
        reply = await agent.request(method, f"/process/{unknown}/{path}", json=body)
        assert unknown in error(reply, 404)
        reply = await agent.request(method, f"/process/not-a-uuid/{path}", json=body)
        assert "uuid" in error(reply, 400)


async def test_spawn_client_mistakes_are_400(agent: AgentClient) -> None:
    assert "command not found" in error(
        await agent.post("/process/spawn", {"command": "nope-xyz", "args": ["1"]}), 400
    )
    assert "rows" in error(
        await agent.post("/process/spawn", {"command": "sh", "allocate_tty": True, "rows": 0}), 400
    )
    assert "signal" in error(await agent.post(f"/process/{uuid.uuid4()}/kill", {"signal": "STOP"}), 400)


# --- the service in process: retention and shutdown --------------------------------------------------


async def test_exited_processes_are_forgotten_after_the_retention() -> None:
    service = ProcessService(Config(process_retention_s=0.3))
    await service.start()
    try:
        spawned = await service.spawn(SpawnRequest(CommandRequest("true"), None))
        managed = service.get(spawned.process_id)
        await asyncio.wait_for(managed.finished.wait(), 10)
        assert service.get(spawned.process_id) is managed  # still there right after the exit
        await eventually(lambda: len(service) == 0, 10, "the process is forgotten")
    finally:
        await service.close()


async def test_closing_the_service_ends_every_childs_group() -> None:
    service = ProcessService(Config(process_kill_grace_s=0.5))
    await service.start()
    commands = [
        SpawnRequest(CommandRequest(f"sleep {secs(1251)} & sleep {secs(1251)}"), None),
        SpawnRequest(CommandRequest(f"trap '' TERM; sleep {secs(1252)} & wait"), None),  # ignores SIGTERM
        SpawnRequest(CommandRequest("bash", ("--norc", "-i")), Terminal()),  # ignores SIGTERM too
        SpawnRequest(CommandRequest(f"sleep {secs(1253)}"), Terminal()),
    ]
    spawned = [await service.spawn(c) for c in commands]
    exec_task = asyncio.get_running_loop().create_task(service.exec(CommandRequest(f"sleep {secs(1254)}")))
    await eventually(
        lambda: all(live_with_cmdline("sleep", secs(n)) for n in (1251, 1252, 1253, 1254)), 10, "all started"
    )
    pids = [s.pid for s in spawned]
    await service.close()
    exec_result = await exec_task
    assert exec_result.exit_code == 143
    for pid in pids:
        assert not live(pid)
    for n in (1251, 1252, 1253, 1254):
        assert not live_with_cmdline("sleep", secs(n))
    assert "shutting down" in str(await _spawn_error(service))


async def _spawn_error(service: ProcessService) -> Exception:
    try:
        await service.spawn(SpawnRequest(CommandRequest("true"), None))
    except Exception as exc:
        return exc
    raise AssertionError("spawn after close worked")
