"""PTY-backed processes: size, resizes (SIGWINCH), interactive shells over SSE + stdin and the WebSocket."""

from __future__ import annotations

import json
import pwd
from collections.abc import Callable

import aiohttp

from tests.conftest import AgentClient

from .conftest import Collected, Processes, attached, error


async def test_a_pty_reports_the_size_it_was_given(processes: Processes) -> None:
    spawned = await processes.spawn(command="stty size; tput cols; tty", allocate_tty=True, rows=33, cols=111)
    collected = await processes.output(spawned["process_id"])
    lines = collected.data().decode().split("\r\n")
    assert lines[:2] == ["33 111", "111"]
    assert lines[2].startswith("/dev/pts/")
    assert collected.data("stderr") == b""  # a PTY's output is all stdout
    assert collected.exit is not None and collected.exit["exit_code"] == 0


async def test_default_size_and_term(processes: Processes) -> None:
    spawned = await processes.spawn(command='stty size; echo "$TERM"', allocate_tty=True)
    collected = await processes.output(spawned["process_id"])
    assert collected.data() == b"24 80\r\nxterm-256color\r\n"


async def test_a_pty_as_another_user(processes: Processes, test_user: pwd.struct_passwd) -> None:
    spawned = await processes.spawn(
        command="id -u; stty size; tty >/dev/null && echo has-tty", as_user=test_user.pw_name,
        allocate_tty=True, rows=7, cols=77,
    )  # fmt: skip
    collected = await processes.output(spawned["process_id"])
    assert collected.data() == f"{test_user.pw_uid}\r\n7 77\r\nhas-tty\r\n".encode()


async def test_the_program_follows_a_resize(processes: Processes) -> None:
    spawned = await processes.spawn(
        command="trap 'echo winch; stty size; tput cols' WINCH; echo ready; while :; do sleep 0.05; done",
        allocate_tty=True,
        rows=20,
        cols=70,
    )
    pid = spawned["process_id"]
    async with processes.stream(pid) as stream:
        await stream.until_output(b"ready")
        await processes.resize(pid, 50, 150)
        await stream.until_output(b"winch\r\n50 150\r\n150\r\n")
        await processes.resize(pid, 10, 40)
        await stream.until_output(b"10 40\r\n40\r\n")
        await processes.kill(pid, "KILL")
        assert (await stream.until_exit())["exit_code"] == 137


async def test_a_process_without_a_pty_cannot_be_resized_or_attached(
    agent: AgentClient, processes: Processes
) -> None:
    spawned = await processes.spawn(command="sleep 30")
    pid = spawned["process_id"]
    assert "no PTY" in error(await agent.post(f"/process/{pid}/resize", {"rows": 10, "cols": 10}), 400)
    assert "no PTY" in error(await agent.get(f"/process/{pid}/attach"), 400)
    assert "rows" in error(await agent.post(f"/process/{pid}/resize", {"rows": 0, "cols": 10}), 400)
    await processes.kill(pid, "KILL")


async def test_interactive_bash_through_stdin_and_the_stream(processes: Processes) -> None:
    spawned = await processes.spawn(
        command="bash", args=["--norc", "--noprofile", "-i"], allocate_tty=True, env={"PS1": "$ "}
    )
    pid = spawned["process_id"]

    def prompt_after(mark: bytes) -> Callable[[Collected], bool]:
        # bash is back at its prompt (reading the next line) after `mark`
        return lambda c: mark in c.data() and b"$ " in c.data()[c.data().rindex(mark) :]

    async with processes.stream(pid) as stream:
        # Each step waits for what it needs: input sent while bash switches terminal modes can be lost.
        await stream.until(lambda c: b"$ " in c.data())
        await processes.stdin(pid, "echo pty-$((6*7)); [ -t 0 ] && echo is-a-tty\n")
        await stream.until_output(b"pty-42\r\nis-a-tty\r\n")
        # Ctrl-C interrupts the foreground job, the shell survives. The job says when it is running (in
        # the foreground, the terminal set up for it): the echo of the typed line comes before that.
        await processes.stdin(pid, "sh -c 'echo sleeping-$((3*3)); exec sleep 100'\n")
        await stream.until_output(b"sleeping-9\r\n")
        await processes.stdin(pid, b"\x03")
        await stream.until(prompt_after(b"sleeping-9\r\n"))
        await processes.stdin(pid, "echo after-int\n")
        await stream.until_output(b"after-int\r\n")
        await stream.until(prompt_after(b"after-int\r\n"))
        await processes.stdin(pid, "exit 0\n")
        assert (await stream.until_exit())["exit_code"] == 0


async def test_eof_on_a_pty_is_its_eof_character(processes: Processes) -> None:
    # cat reads in canonical mode throughout (readline would race a ^D against its own mode switches)
    spawned = await processes.spawn(command="cat", allocate_tty=True)
    pid = spawned["process_id"]
    async with processes.stream(pid) as stream:
        await processes.stdin(pid, "abc\n")
        await stream.until_output(b"abc\r\nabc\r\n")  # the terminal's echo, then cat's copy
        await processes.stdin(pid, b"", eof=True)
        assert (await stream.until_exit())["exit_code"] == 0


async def test_interactive_shell_over_the_websocket(agent: AgentClient, processes: Processes) -> None:
    spawned = await processes.spawn(
        command="bash", args=["--norc", "--noprofile", "-i"], allocate_tty=True, rows=30, cols=100,
        env={"PS1": "$ "},
    )  # fmt: skip
    pid = spawned["process_id"]
    async with attached(agent, pid) as term:
        await term.ws.send_bytes(b"stty size\n")
        await term.until_output(b"30 100\r\n")
        # xterm.js's attach addon sends typed text as text frames
        await term.ws.send_str("echo typed-$((2+3))\n")
        await term.until_output(b"typed-5\r\n")
        await term.ws.send_str(json.dumps({"type": "resize", "rows": 45, "cols": 132}))
        await term.ws.send_bytes(b"stty size\n")
        await term.until_output(b"45 132\r\n")
        await term.ws.send_str(json.dumps({"type": "resize", "rows": 0, "cols": 1}))
        await term.until(lambda t: any(c.get("type") == "error" for c in t.controls))
        await term.ws.send_bytes(b"exit 9\n")
        await term.until(lambda t: t.closed)
        assert {"type": "exit", "exit_code": 9, "exitCode": 9, "timed_out": False} in term.controls
    assert term.ws.close_code == aiohttp.WSCloseCode.OK
    # the same output went to the SSE stream as well
    collected = await processes.output(pid)
    assert b"typed-5" in collected.data() and b"45 132" in collected.data()


async def test_attach_replays_what_the_terminal_printed_before(
    agent: AgentClient, processes: Processes
) -> None:
    spawned = await processes.spawn(command="echo before; read x; echo got-$x", allocate_tty=True)
    pid = spawned["process_id"]
    async with processes.stream(pid) as stream:
        await stream.until_output(b"before")
    async with attached(agent, pid) as first, attached(agent, pid, replay="false") as second:
        await first.until_output(b"before\r\n")
        await first.ws.send_bytes(b"hi\n")
        await first.until_output(b"got-hi\r\n")
        await second.until_output(b"got-hi\r\n")
        assert b"before" not in second.output
        for term in (first, second):
            await term.until(lambda t: t.closed)
            assert term.controls[-1]["exit_code"] == 0


async def test_attach_to_an_exited_process_replays_and_closes(
    agent: AgentClient, processes: Processes
) -> None:
    spawned = await processes.spawn(command="echo gone", allocate_tty=True)
    await processes.wait_exited(spawned["process_id"])
    async with attached(agent, spawned["process_id"]) as term:
        await term.until(lambda t: t.closed)
    assert term.output == b"gone\r\n"
    assert term.controls == [{"type": "exit", "exit_code": 0, "exitCode": 0, "timed_out": False}]


async def test_attach_without_a_websocket_handshake_is_400(agent: AgentClient, processes: Processes) -> None:
    spawned = await processes.spawn(command="sleep 30", allocate_tty=True)
    assert "WebSocket" in error(await agent.get(f"/process/{spawned['process_id']}/attach"), 400)
    await processes.kill(spawned["process_id"], "KILL")
