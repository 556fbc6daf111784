"""Node worker processes: worker.mjs run by the Node bundled in the python `playwright` wheel.

A worker stays connected to Chromium over CDP between calls (requests on its stdin, answers on a pipe of
their own), so a call costs a pipe round trip plus what the code does, not a Node start and a CDP handshake.
It runs in a process group of its own, killed whole (the only way to stop code that never yields).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import logging
import os
import signal
from pathlib import Path
from typing import Any

from ..procgroup import signal_group

log = logging.getLogger(__name__)

WORKER_SCRIPT = Path(__file__).with_name("worker.mjs")
_REPLY_LIMIT = 512 * 1024 * 1024  # one answer line (a returned value can be large)


def bundled_driver() -> tuple[Path, Path]:
    """The Node binary and playwright-core's ESM entry inside the python `playwright` wheel."""
    import playwright

    driver = Path(playwright.__file__).parent / "driver"
    return driver / "node", driver / "package" / "index.mjs"


class WorkerGone(Exception):
    """The worker process exited (or was killed) before answering."""


class Worker:
    """One Node process running worker.mjs; requests on its stdin, answers on a pipe of their own."""

    def __init__(
        self,
        node: Path,
        core: Path,
        endpoint: str,
        name: str,
        temp_dir: Path | None,
        node_args: tuple[str, ...] = (),
        idle_detach_s: float = 0.0,
    ) -> None:
        self.node, self.core, self.endpoint, self.name = node, core, endpoint, name
        self.idle_detach_s = idle_detach_s  # disconnect from Chromium after this long with no call (0: never)
        self.node_args = node_args
        self.temp_dir = temp_dir
        self.process: asyncio.subprocess.Process | None = None
        self.info: dict[str, Any] = {}
        self.output: collections.deque[str] = collections.deque(maxlen=40)  # Node's own stdout/stderr
        self._replies: asyncio.StreamReader | None = None
        self._reply_transport: asyncio.ReadTransport | None = None
        self._log_task: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        env = {
            **os.environ,
            "AGENT_PLAYWRIGHT_CORE": str(self.core),
            "AGENT_CDP_ENDPOINT": self.endpoint,
            "AGENT_PLAYWRIGHT_IDLE_DETACH_MS": str(round(self.idle_detach_s * 1000)),
        }
        if self.temp_dir is not None:
            # Playwright keeps a playwright-artifacts-* directory in TMPDIR per connection, left behind
            # when the worker is killed: keep them in the state dir, not the machine's /tmp.
            await asyncio.to_thread(os.makedirs, self.temp_dir, exist_ok=True)
            env["TMPDIR"] = str(self.temp_dir)
        read_fd, write_fd = os.pipe()
        try:
            env["AGENT_REPLY_FD"] = str(write_fd)
            self.process = await asyncio.create_subprocess_exec(
                str(self.node),
                "--no-warnings",  # stripTypeScriptTypes is "experimental" and says so on every start
                *self.node_args,
                str(WORKER_SCRIPT),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                pass_fds=(write_fd,),
                env=env,
                start_new_session=True,  # its own process group: a kill takes whatever it spawned too
            )
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        self._replies = asyncio.StreamReader(limit=_REPLY_LIMIT)
        protocol = asyncio.StreamReaderProtocol(self._replies)
        transport, _ = await loop.connect_read_pipe(lambda: protocol, os.fdopen(read_fd, "rb", buffering=0))
        self._reply_transport = transport
        self._log_task = loop.create_task(self._log_output(), name=f"playwright-worker-{self.name}-output")
        try:
            ready = await asyncio.wait_for(self._read_reply(), timeout)
        except (TimeoutError, WorkerGone, ValueError):
            await self.kill()
            raise WorkerGone(f"the Playwright worker did not start: {self.tail()}") from None
        except BaseException:  # cancelled while starting: leave no process behind
            await self.kill()
            raise
        self.info = {"node": ready.get("node"), "playwright": ready.get("playwright")}

    async def _log_output(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        while line := await self.process.stdout.readline():
            text = line.decode("utf-8", "replace").rstrip()
            self.output.append(text)
            log.debug("playwright worker %s: %s", self.name, text)

    def tail(self) -> str:
        return " | ".join(self.output) or "no output"

    async def _read_reply(self) -> dict[str, Any]:
        assert self._replies is not None
        try:
            line = await self._replies.readline()
        except (ValueError, asyncio.LimitOverrunError) as exc:
            raise WorkerGone(f"unreadable answer from the worker: {exc}") from None
        if not line:
            raise WorkerGone("the Playwright worker exited")
        reply: dict[str, Any] = json.loads(line)
        return reply

    async def call(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send one request and wait for its answer; TimeoutError after `timeout` s (the caller kills)."""
        if self.process is None or self.process.stdin is None or not self.alive:
            raise WorkerGone("the Playwright worker is not running")
        request_id = next(self._ids)
        try:
            self.process.stdin.write(json.dumps({**request, "id": request_id}).encode() + b"\n")
            await self.process.stdin.drain()
        except (ConnectionError, RuntimeError) as exc:
            raise WorkerGone(f"the Playwright worker is gone: {exc}") from None

        async def answer() -> dict[str, Any]:
            while True:
                reply = await self._read_reply()
                if reply.get("id") == request_id:
                    return reply

        return await asyncio.wait_for(answer(), timeout)

    async def kill(self) -> None:
        process = self.process
        if process is not None and process.returncode is None:
            signal_group(process.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        if process is not None:
            await process.wait()
            if process.stdin is not None:
                process.stdin.close()
        if self._reply_transport is not None:
            self._reply_transport.close()
        if self._log_task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._log_task, 1)
