"""The supervisord XML-RPC client against the session sandbox's real supervisord."""

from __future__ import annotations

import pytest

from agent.errors import NotFound, Unavailable
from agent.sandbox import Sandbox
from agent.supervisor_rpc import Supervisor


async def test_lists_the_vm_programs_with_their_logs(sandbox: Sandbox) -> None:
    supervisor = Supervisor(sandbox.state_dir / "supervisor.sock")
    programs = {p.name: p for p in await supervisor.programs()}
    assert {"xvfb", "chromium", "agent"} <= set(programs)
    assert programs["chromium"].state == "RUNNING" and programs["chromium"].pid > 0
    assert programs["chromium"].stdout_logfile.endswith("chromium.log")
    assert (await supervisor.program("agent")).pid == programs["agent"].pid


async def test_an_unknown_program_is_not_found_and_a_missing_socket_unavailable(sandbox: Sandbox) -> None:
    with pytest.raises(NotFound, match="nope"):
        await Supervisor(sandbox.state_dir / "supervisor.sock").program("nope")
    with pytest.raises(Unavailable):
        await Supervisor(sandbox.state_dir / "no.sock").programs()
