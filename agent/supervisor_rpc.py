"""supervisord's XML-RPC interface over its unix socket: the programs of the VM (xvfb, chromium, agent).

One client for every capability that asks supervisord something (program logs, restarting Chromium for
extensions). xmlrpc is blocking, so each call runs in a worker thread with its own connection.
"""

from __future__ import annotations

import asyncio
import dataclasses
import xmlrpc.client
from pathlib import Path
from typing import Any

from supervisor.xmlrpc import SupervisorTransport

from .errors import NotFound, Unavailable

# supervisord's fault codes (supervisor/xmlrpc.py Faults) that mean "no such program".
_BAD_NAME = 10


@dataclasses.dataclass(frozen=True)
class ProgramInfo:
    name: str
    state: str  # RUNNING, STARTING, STOPPED, BACKOFF, EXITED, FATAL, …
    pid: int
    stdout_logfile: str
    stderr_logfile: str
    exit_status: int
    start: int  # unix time it last started (0 if never)

    @classmethod
    def from_rpc(cls, info: dict[str, Any]) -> ProgramInfo:
        return cls(
            name=str(info["name"]),
            state=str(info["statename"]),
            pid=int(info["pid"]),
            stdout_logfile=str(info.get("stdout_logfile", "")),
            stderr_logfile=str(info.get("stderr_logfile", "")),
            exit_status=int(info.get("exitstatus", 0)),
            start=int(info.get("start", 0)),
        )


class Supervisor:
    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path

    def _proxy(self) -> Any:
        transport = SupervisorTransport(None, None, f"unix://{self.socket_path}")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)

    async def _call(self, method: str, *args: Any) -> Any:
        def call() -> Any:
            target = self._proxy()
            for part in method.split("."):
                target = getattr(target, part)
            return target(*args)

        try:
            return await asyncio.to_thread(call)
        except xmlrpc.client.Fault as fault:
            if fault.faultCode == _BAD_NAME:
                raise NotFound(f"supervisord has no program {args[0] if args else ''!r}") from None
            raise Unavailable(f"supervisord refused {method}: {fault.faultString}") from None
        except OSError as exc:
            raise Unavailable(f"supervisord is not reachable at {self.socket_path}: {exc}") from None

    async def programs(self) -> list[ProgramInfo]:
        return [ProgramInfo.from_rpc(info) for info in await self._call("supervisor.getAllProcessInfo")]

    async def program(self, name: str) -> ProgramInfo:
        return ProgramInfo.from_rpc(await self._call("supervisor.getProcessInfo", name))

    async def stop(self, name: str) -> None:
        await self._call("supervisor.stopProcess", name, True)

    async def start(self, name: str) -> None:
        await self._call("supervisor.startProcess", name, True)

    async def restart(self, name: str) -> None:
        """Stop (waiting for it to end) and start again (waiting until supervisord calls it running)."""
        info = await self.program(name)
        if info.state in ("RUNNING", "STARTING", "BACKOFF"):
            await self.stop(name)
        await self.start(name)
