"""POST /process/exec with real processes: output, exit codes, env, cwd, users, timeouts, caps."""

from __future__ import annotations

import asyncio
import os
import pathlib
import pwd
import tempfile

import pytest

from agent.config import Config
from agent.errors import BadRequest
from agent.process.models import CommandRequest
from agent.process.service import ProcessService
from tests.conftest import AgentClient

from .conftest import TEST_GROUP, Processes, error, eventually, live_with_cmdline, secs, unb64


async def test_a_shell_command_line_runs_through_sh(processes: Processes) -> None:
    result = await processes.exec(command="echo out; echo err >&2; exit 3")
    assert result["exit_code"] == 3
    assert unb64(result["stdout_b64"]) == b"out\n"
    assert unb64(result["stderr_b64"]) == b"err\n"
    assert result["timed_out"] is False
    assert result["stdout_truncated"] is False and result["stderr_truncated"] is False


async def test_a_command_with_args_runs_directly_without_a_shell(processes: Processes) -> None:
    result = await processes.exec(command="printf", args=["%s|%s", "$HOME", "a b; echo no"])
    assert result["exit_code"] == 0
    assert unb64(result["stdout_b64"]) == b"$HOME|a b; echo no"


async def test_binary_output_survives(processes: Processes) -> None:
    result = await processes.exec(command="printf '\\000\\377\\001'")
    assert unb64(result["stdout_b64"]) == b"\x00\xff\x01"


async def test_env_is_merged_over_the_agents_environment(processes: Processes) -> None:
    result = await processes.exec(
        command='echo "$GREETING|$DISPLAY|$PATH"', env={"GREETING": "hé there", "PATH": "/usr/bin:/bin"}
    )
    greeting, display, path = unb64(result["stdout_b64"]).decode().strip().split("|")
    assert greeting == "hé there"
    assert display.startswith(":")  # inherited from the agent
    assert path == "/usr/bin:/bin"


async def test_cwd(processes: Processes) -> None:
    with tempfile.TemporaryDirectory() as where:
        real = os.path.realpath(where)  # noqa: ASYNC240 (a test; no disk access to speak of)
        result = await processes.exec(command="pwd", cwd=where)
        assert unb64(result["stdout_b64"]).decode().strip() == real
        result = await processes.exec(command="/bin/pwd", args=["-P"], cwd=where)
        assert unb64(result["stdout_b64"]).decode().strip() == real


async def test_duration_is_measured(processes: Processes) -> None:
    result = await processes.exec(command="sleep 0.3")
    assert result["duration_ms"] >= 300
    fast = await processes.exec(command="true", args=[])
    assert fast["exit_code"] == 0 and fast["duration_ms"] >= 0


async def test_as_user_runs_with_the_users_uid_groups_and_home(
    processes: Processes, test_user: pwd.struct_passwd
) -> None:
    result = await processes.exec(
        command='id -u; id -g; id -Gn; echo "$HOME|$USER|$LOGNAME|$SHELL"; cd ~ && pwd',
        as_user=test_user.pw_name,
    )
    assert result["exit_code"] == 0, unb64(result["stderr_b64"])
    uid, gid, groups, identity, home = unb64(result["stdout_b64"]).decode().splitlines()
    assert int(uid) == test_user.pw_uid
    assert int(gid) == test_user.pw_gid
    assert TEST_GROUP in groups.split()
    assert "root" not in groups.split()
    assert identity == f"{test_user.pw_dir}|{test_user.pw_name}|{test_user.pw_name}|/bin/bash"
    assert home == test_user.pw_dir
    # by uid too, and the user's env can still be overridden by the request
    result = await processes.exec(
        command="id -u; echo $HOME", as_user=str(test_user.pw_uid), env={"HOME": "/x"}
    )
    assert unb64(result["stdout_b64"]).decode().split() == [str(test_user.pw_uid), "/x"]
    # the user cannot do root's things
    result = await processes.exec(command="cat", args=["/etc/shadow"], as_user=test_user.pw_name)
    assert result["exit_code"] != 0
    assert b"Permission denied" in unb64(result["stderr_b64"])


async def test_as_root(processes: Processes) -> None:
    result = await processes.exec(command="id -u; echo $HOME; echo $USER", as_root=True)
    assert unb64(result["stdout_b64"]).decode().split() == ["0", pwd.getpwuid(0).pw_dir, "root"]


async def test_timeout_kills_the_whole_group_and_keeps_the_output(processes: Processes) -> None:
    result = await processes.exec(
        command=f"echo started; echo oops >&2; sleep {secs(1234)} & sleep {secs(1234)}", timeout_sec=1
    )
    assert result["timed_out"] is True
    assert result["exit_code"] == 124
    assert unb64(result["stdout_b64"]) == b"started\n"
    assert unb64(result["stderr_b64"]) == b"oops\n"
    assert result["duration_ms"] >= 1000
    # the background sleep went too, not only the shell
    await eventually(lambda: not live_with_cmdline("sleep", secs(1234)), 5, f"every sleep {secs(1234)} gone")


async def test_timeout_also_reaches_a_child_that_started_its_own_session(processes: Processes) -> None:
    result = await processes.exec(command=f"setsid sleep {secs(1235)} & sleep {secs(1236)}", timeout_sec=1)
    assert result["timed_out"] is True
    await eventually(lambda: not live_with_cmdline("sleep", secs(1235)), 5, "the setsid sleep is gone")
    assert not live_with_cmdline("sleep", secs(1236))


async def test_a_timeout_that_is_not_reached_changes_nothing(processes: Processes) -> None:
    result = await processes.exec(command="echo quick", timeout_sec=30)
    assert result["timed_out"] is False and result["exit_code"] == 0


async def test_background_children_do_not_hold_exec_forever(processes: Processes) -> None:
    result = await processes.exec(command=f"sleep {secs(1239)} & echo started")
    assert result["exit_code"] == 0 and unb64(result["stdout_b64"]) == b"started\n"
    # exec answered while the background child still runs (it asked for `&`)
    leftovers = live_with_cmdline("sleep", secs(1239))
    assert leftovers
    for proc in leftovers:
        proc.kill()


async def test_killed_by_a_signal_reports_128_plus_the_signal(processes: Processes) -> None:
    result = await processes.exec(command="kill -9 $$")
    assert result["exit_code"] == 137


async def test_null_optional_fields_are_accepted(processes: Processes) -> None:
    # The SDK sends null for Optional fields a caller sets to None.
    result = await processes.exec(command="echo ok", cwd=None, as_user=None, timeout_sec=None)
    assert unb64(result["stdout_b64"]) == b"ok\n"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"command": "no-such-command-xyz", "args": ["a"]}, "command not found"),
        ({"command": "/no/such/binary", "args": ["x"]}, "command not found"),
        ({"command": "/etc/shadow", "args": ["x"]}, "not executable"),
        ({"command": "true", "cwd": "/no/such/dir"}, "not a directory"),
        ({"command": "true", "cwd": "relative"}, "cwd"),
        ({"command": "true", "as_user": "no-such-user-xyz"}, "no such user"),
        ({"command": "true", "as_user": "root", "as_root": True}, "not both"),
        ({"command": "true", "timeout_sec": -1}, "timeout_sec"),
        ({"command": "   "}, "must not be empty"),
        ({"command": "true", "bogus": 1}, "unknown field: bogus"),
        ({"command": "true", "allocate_tty": True}, "unknown field: allocate_tty"),
        ({"command": "true", "env": {"A": 1}}, "env.A"),
        ({"args": ["x"]}, "command"),
        ({"command": "echo", "args": ["a\0b"]}, "NUL"),
        ({"command": "true", "cwd": "/tmp\0"}, "NUL"),
        ({"command": "true", "env": {"A=B": "1"}}, "invalid variable name"),
        ({"command": "echo", "args": ["x" * 200_000]}, "too long"),
    ],
)
async def test_client_mistakes_are_400(agent: AgentClient, body: dict[str, object], fragment: str) -> None:
    assert fragment in error(await agent.post("/process/exec", body), 400)


async def test_a_file_that_is_not_a_program_is_400(agent: AgentClient, tmp_path: pathlib.Path) -> None:
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"\x00\x01\x02 not a program")
    garbage.chmod(0o755)
    message = error(await agent.post("/process/exec", {"command": str(garbage), "args": ["x"]}), 400)
    assert "Exec format error" in message


# --- the service in process, with a small output cap -----------------------------------------------------


async def test_output_beyond_the_cap_is_truncated_and_says_so() -> None:
    service = ProcessService(Config(process_exec_output_cap=1000))
    await service.start()
    try:
        result = await service.exec(CommandRequest("head -c 5000000 /dev/zero; echo tail >&2"))
        assert result.exit_code == 0
        assert result.stdout == b"\0" * 1000 and result.stdout_truncated
        assert result.stderr == b"tail\n" and not result.stderr_truncated
        body = result.to_json()
        assert body["stdout_truncated"] is True
    finally:
        await service.close()


async def test_a_cancelled_exec_leaves_nothing_behind() -> None:
    """A client that goes away cancels its handler: the command's group is killed, nothing leaks."""
    service = ProcessService(Config())
    await service.start()
    try:
        command = CommandRequest(f"sleep {secs(1237)} & setsid sleep {secs(1238)} & sleep {secs(1237)}")
        task = asyncio.get_running_loop().create_task(service.exec(command))
        await eventually(
            lambda: (
                len(live_with_cmdline("sleep", secs(1237))) == 2
                and bool(live_with_cmdline("sleep", secs(1238)))
            ),
            5,
            "the sleeps started",
        )
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await eventually(
            lambda: not live_with_cmdline("sleep", secs(1237)) and not live_with_cmdline("sleep", secs(1238)),
            5,
            "every sleep gone",
        )
    finally:
        await service.close()


async def test_prepare_errors_are_client_errors() -> None:
    service = ProcessService(Config())
    await service.start()
    try:
        with pytest.raises(BadRequest):
            await service.exec(CommandRequest("true", cwd="/no/such/dir"))
    finally:
        await service.close()
