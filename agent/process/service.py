"""Processes: exec (run to the end), spawn (pipes or a PTY) with a bounded output buffer, stdin, signals.

Every child's output is drained continuously into memory (a capped buffer for exec, a bounded EventBuffer
for spawn), so a child never blocks because nobody reads it. Each spawned process has one owned task that
waits for it, enforces its timeout, drains what is left, closes its fds and appends the exit event; a
reaper task forgets exited processes after `process_retention_s`. Stopping the service ends every child's
process group (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import signal
import termios
import time
import uuid
from collections.abc import AsyncGenerator, Iterator
from typing import cast

from ..config import Config
from ..errors import AtCapacity, BadRequest, NotFound, Unavailable
from ..events import Publish, no_publish
from ..procgroup import descendants, signal_group, signal_tree, terminate
from ..sse import EventBuffer
from ..tasks import TaskGroup
from .launch import (
    SIGNALS,
    Child,
    Closed,
    FdReader,
    Launch,
    exit_code_of,
    find_setsid,
    needs_identity,
    prepare,
    resolve_identity,
    set_winsize,
    start,
    tree_usage,
)
from .models import (
    TIMEOUT_EXIT_CODE,
    CommandRequest,
    ExecResult,
    ExitEvent,
    OutputChunk,
    SpawnRequest,
    SpawnResult,
    StatusReport,
    StreamItem,
    StreamName,
    Terminal,
    item_size,
)

log = logging.getLogger(__name__)

# Output already in the buffer is sent in frames of up to this many bytes (fewer, larger SSE events).
MAX_FRAME_BYTES = 512 * 1024
# cpu_pct compares two samples of the tree's CPU time: the previous status call's, when it is between
# these ages, else a fresh pair taken CPU_SAMPLE_S apart.
CPU_SAMPLE_S = 0.1
CPU_SAMPLE_MAX_AGE_S = 10.0


class CappedSink:
    """Keeps the first `cap` bytes written to it and counts the rest."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.data = bytearray()
        self.truncated = False

    def add(self, chunk: bytes) -> None:
        room = self.cap - len(self.data)
        if room > 0:
            self.data += chunk[:room]
        if len(chunk) > room:
            self.truncated = True


class ManagedProcess:
    """A spawned child: its fds, its output buffer and what is known about its end."""

    def __init__(self, process_id: str, child: Child, tty: Terminal | None, buffer_bytes: int) -> None:
        self.id = process_id
        self.child = child
        self.pid = child.pid
        self.pgid = child.pid  # its own session, so its own group
        self.tty = tty
        self.started_at = datetime.datetime.now(datetime.UTC)
        self.exit_code: int | None = None
        self.timed_out = False
        self.exited_at: float | None = None  # time.monotonic()
        self.buffer: EventBuffer[StreamItem] = EventBuffer(
            max_items=max(1024, buffer_bytes // 16), max_bytes=buffer_bytes, size=item_size
        )
        self.outputs_done = asyncio.Event()
        self.finished = asyncio.Event()
        self.write_lock = asyncio.Lock()
        self.cpu_sample: tuple[float, float] | None = None  # (monotonic time, tree CPU seconds)
        self._loop = asyncio.get_running_loop()
        self._readers: list[FdReader] = []
        self._open_outputs = len(child.outputs)
        self._stdin: int | None = child.stdin
        self._writable: asyncio.Future[None] | None = None

    @property
    def running(self) -> bool:
        return self.exit_code is None

    @property
    def stdin_open(self) -> bool:
        return self._stdin is not None

    def start_reading(self) -> None:
        for stream, fd in self.child.outputs.items():

            def sink(data: bytes, stream: StreamName = stream) -> None:
                if not self.buffer.closed:
                    self.buffer.append(OutputChunk(stream, data))

            self._readers.append(FdReader(fd, sink, self._output_ended))

    def _output_ended(self) -> None:
        self._open_outputs -= 1
        if self._open_outputs <= 0:
            self.outputs_done.set()

    async def write(self, data: bytes, deadline: float) -> int:
        """Write to stdin until all is taken or `deadline` (loop time) passes; returns the count."""
        view = memoryview(data)
        written = 0
        while written < len(data):
            fd = self._stdin
            if fd is None:
                raise Closed()
            try:
                written += os.write(fd, view[written:])
                continue
            except BlockingIOError:
                pass
            remaining = deadline - self._loop.time()
            if remaining <= 0:
                break
            self._writable = self._loop.create_future()
            self._loop.add_writer(fd, self._wake_writer)
            try:
                await asyncio.wait_for(asyncio.shield(self._writable), remaining)
            except TimeoutError:
                break
            finally:
                if self._stdin == fd:
                    self._loop.remove_writer(fd)
                self._writable = None
        return written

    def _wake_writer(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def send_eof(self) -> None:
        """A pipe's reader gets end-of-file; a PTY's line discipline gets its EOF character."""
        fd = self._stdin
        if fd is None:
            return
        if self.child.master is not None:
            veof = termios.tcgetattr(fd)[6][termios.VEOF]
            os.write(fd, veof if isinstance(veof, bytes) else bytes([veof]))
            return
        self._close_stdin()
        os.close(fd)

    def _close_stdin(self) -> None:
        fd = self._stdin
        if fd is None:
            return
        self._stdin = None
        self._loop.remove_writer(fd)
        self._wake_writer()

    def finish(self) -> None:
        """Close every fd (once), append the exit event when the exit is known, end the streams."""
        if self.finished.is_set():
            return
        for reader in self._readers:
            reader.stop()
        stdin = self._stdin
        self._close_stdin()
        fds = set(self.child.outputs.values())
        if stdin is not None:
            fds.add(stdin)
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        if self.exited_at is None:
            self.exited_at = time.monotonic()
        if not self.buffer.closed:
            if self.exit_code is not None:
                self.buffer.append(ExitEvent(self.exit_code, self.timed_out))
            self.buffer.close()
        self.finished.set()


class ProcessService:
    def __init__(self, config: Config, publish: Publish = no_publish) -> None:
        self.config = config
        self._publish = publish  # the event bus (agent/events.py): exits are forwarded to the CP
        self._procs: dict[str, ManagedProcess] = {}
        self._execs: dict[int, Child] = {}
        self._tasks = TaskGroup("process")
        self._setsid: str | None = None
        self._closing = False
        self._launching = 0  # exec/spawn calls past the cap check whose child is not counted yet

    async def start(self) -> None:
        self._setsid = await asyncio.to_thread(find_setsid)
        if self._setsid is None:
            log.warning("setsid(1) not found: spawn with allocate_tty will fail")
        interval = min(5.0, max(0.05, self.config.process_retention_s / 10))
        self._tasks.spawn(self._reap_loop(interval), name="reaper")

    def __len__(self) -> int:
        return len(self._procs)

    @property
    def tasks(self) -> TaskGroup:
        """Owned tasks (per-connection helpers too): cancelled and awaited when the service closes."""
        return self._tasks

    def _check_open(self) -> None:
        if self._closing:
            raise Unavailable("the agent is shutting down")

    def alive(self) -> int:
        """Children of the API alive now: running spawned processes and /process/exec calls in flight."""
        return len(self._execs) + sum(1 for managed in self._procs.values() if managed.running)

    @contextlib.contextmanager
    def _slot(self) -> Iterator[None]:
        """One of `process_max_alive` places for a new child, held while it is being started (after
        that the child itself counts): one more is 503 at_capacity with Retry-After."""
        cap = self.config.process_max_alive
        if cap and self.alive() + self._launching >= cap:
            raise AtCapacity(
                f"too many processes alive (at most {cap}, AGENT_PROCESS_MAX_ALIVE); "
                "kill one or retry when one has ended"
            )
        self._launching += 1
        try:
            yield
        finally:
            self._launching -= 1

    async def _prepare(self, req: CommandRequest, *, tty: bool) -> Launch:
        identity = await asyncio.to_thread(resolve_identity, req) if needs_identity(req) else None
        return prepare(req, identity, tty=tty, setsid=self._setsid)

    # --- exec ------------------------------------------------------------------------------------------

    async def exec(self, req: CommandRequest) -> ExecResult:
        """Run to the end (or the timeout); the output so far is returned either way."""
        self._check_open()
        with self._slot():
            launch = await self._prepare(req, tty=False)
            started = time.perf_counter()
            child = await start(launch, stdin_pipe=False, tty=None)
            self._execs[child.pid] = child
        cap = self.config.process_exec_output_cap
        sinks = {"stdout": CappedSink(cap), "stderr": CappedSink(cap)}
        drained = asyncio.Event()
        open_outputs = [2]

        def ended() -> None:
            open_outputs[0] -= 1
            if open_outputs[0] == 0:
                drained.set()

        readers = [FdReader(fd, sinks[name].add, ended) for name, fd in child.outputs.items()]
        timed_out = False
        try:
            try:
                returncode = await asyncio.wait_for(child.process.wait(), req.timeout_sec)
            except TimeoutError:
                timed_out = True
                await self._terminate(child)
                returncode = await child.process.wait()
            # Children the command left behind may still hold its pipes: take what they write for a
            # moment, not forever.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(drained.wait(), self.config.process_drain_s)
            duration_ms = round((time.perf_counter() - started) * 1000)
        finally:
            for reader in readers:
                reader.stop()
            for fd in child.outputs.values():
                os.close(fd)
            del self._execs[child.pid]
            if child.process.returncode is None:
                # Cancelled (the client went away, the agent stops): nothing may outlive the request, not
                # even what left the group. No grace: nobody waits for the output any more.
                if self._closing:
                    signal_group(child.pid, signal.SIGKILL)
                else:
                    self._tasks.spawn(self._terminate(child, grace=0.0), name=f"exec-kill-{child.pid}")
        return ExecResult(
            exit_code=TIMEOUT_EXIT_CODE if timed_out else exit_code_of(returncode),
            stdout=bytes(sinks["stdout"].data),
            stderr=bytes(sinks["stderr"].data),
            duration_ms=duration_ms,
            timed_out=timed_out,
            stdout_truncated=sinks["stdout"].truncated,
            stderr_truncated=sinks["stderr"].truncated,
        )

    # --- spawn and the process table -------------------------------------------------------------------

    async def spawn(self, req: SpawnRequest) -> SpawnResult:
        self._check_open()
        with self._slot():
            launch = await self._prepare(req.command, tty=req.tty is not None)
            child = await start(launch, stdin_pipe=True, tty=req.tty)
            managed = ManagedProcess(str(uuid.uuid4()), child, req.tty, self.config.process_buffer_bytes)
            self._procs[managed.id] = managed
        managed.start_reading()
        self._tasks.spawn(self._supervise(managed, req.command.timeout_sec), name=f"proc-{managed.id[:8]}")
        return SpawnResult(managed.id, managed.pid, managed.started_at)

    def get(self, process_id: str) -> ManagedProcess:
        try:
            key = str(uuid.UUID(process_id))
        except ValueError:
            raise BadRequest(f"process_id must be a UUID, got {process_id!r}") from None
        managed = self._procs.get(key)
        if managed is None:
            raise NotFound(f"no process {key} (unknown, or exited and forgotten)")
        return managed

    async def _supervise(self, managed: ManagedProcess, timeout: int | None) -> None:
        process = managed.child.process
        try:
            try:
                returncode = await asyncio.wait_for(process.wait(), timeout)
            except TimeoutError:
                managed.timed_out = True
                await self._terminate(managed.child)
                returncode = await process.wait()
            managed.exit_code = TIMEOUT_EXIT_CODE if managed.timed_out else exit_code_of(returncode)
            managed.exited_at = time.monotonic()
            self._publish(
                "process.exited",
                {
                    "process_id": managed.id,
                    "pid": managed.pid,
                    "exit_code": managed.exit_code,
                    "timed_out": managed.timed_out,
                },
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(managed.outputs_done.wait(), self.config.process_drain_s)
        finally:
            managed.finish()

    async def _terminate(self, child: Child, grace: float | None = None) -> None:
        """End the child's group and its strays (agent/procgroup.py): SIGTERM, the grace, SIGKILL."""
        grace = self.config.process_kill_grace_s if grace is None else grace
        await terminate(child.pid, lambda: child.process.returncode is not None, grace)

    async def _reap_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.forget_expired()

    def forget_expired(self) -> None:
        now = time.monotonic()
        retention = self.config.process_retention_s
        for process_id, managed in list(self._procs.items()):
            if (
                managed.finished.is_set()
                and managed.exited_at is not None
                and now - managed.exited_at >= retention
            ):
                del self._procs[process_id]

    # --- the routes' operations ------------------------------------------------------------------------

    async def status(self, managed: ManagedProcess) -> StatusReport:
        if not managed.running:
            return StatusReport("exited", managed.exit_code, 0.0, 0, managed.timed_out)
        previous = managed.cpu_sample
        now, cpu, rss = await asyncio.to_thread(tree_usage, managed.pid)
        if previous is None or not CPU_SAMPLE_S <= now - previous[0] <= CPU_SAMPLE_MAX_AGE_S:
            previous = (now, cpu)
            await asyncio.sleep(CPU_SAMPLE_S)
            now, cpu, rss = await asyncio.to_thread(tree_usage, managed.pid)
        managed.cpu_sample = (now, cpu)
        # 100 = one core fully busy (as top and psutil count); the tree can use more than one core.
        pct = max(0.0, (cpu - previous[1]) / max(now - previous[0], 1e-6) * 100)
        if not managed.running:  # it ended while we measured
            return StatusReport("exited", managed.exit_code, 0.0, 0, managed.timed_out)
        return StatusReport("running", None, round(pct, 1), rss, False)

    async def write_stdin(self, managed: ManagedProcess, data: bytes, *, eof: bool = False) -> int:
        if not managed.running or managed.finished.is_set():
            raise BadRequest(f"process {managed.id} has exited; its stdin is closed")
        if not managed.stdin_open:
            raise BadRequest(f"the stdin of process {managed.id} is closed (eof was sent)")
        async with managed.write_lock:
            deadline = asyncio.get_running_loop().time() + self.config.process_stdin_timeout_s
            try:
                written = await managed.write(data, deadline)
                if eof and written == len(data):
                    managed.send_eof()
            except Closed:
                raise BadRequest(f"process {managed.id} exited while its stdin was written") from None
            except (BrokenPipeError, ConnectionResetError):
                raise BadRequest(f"process {managed.id} closed its stdin") from None
            except OSError as exc:  # EIO: a PTY whose every slave fd is closed
                raise BadRequest(f"cannot write to process {managed.id}: {exc.strerror}") from None
        return written

    async def kill(self, managed: ManagedProcess, signal_name: str) -> None:
        sig = SIGNALS[signal_name]
        if managed.running:
            # The group, plus descendants that left it (a shell's job-control groups, setsid children).
            strays = await asyncio.to_thread(descendants, managed.pid)
            signal_tree(managed.pgid, sig, strays)
        else:
            signal_group(managed.pgid, sig)  # what it left behind in its group, if anything

    def resize(self, managed: ManagedProcess, rows: int, cols: int) -> None:
        if managed.tty is None or managed.child.master is None:
            raise BadRequest(
                f"process {managed.id} has no PTY (spawn it with allocate_tty: true); "
                "only a PTY can be resized"
            )
        if managed.finished.is_set():
            raise BadRequest(f"process {managed.id} has exited; its terminal is closed")
        # The kernel sends SIGWINCH to the terminal's foreground process group.
        set_winsize(managed.child.master, rows, cols)
        managed.tty = Terminal(rows, cols)

    async def batches(
        self, managed: ManagedProcess, after: int = 0
    ) -> AsyncGenerator[tuple[int, StreamItem], None]:
        """The buffer after `after`, live: consecutive chunks of one stream already there are merged (the
        id is that of the last one, so resuming from it loses nothing); ends after the exit event."""
        buffer = managed.buffer
        cursor = after
        while True:
            # follow() is an async generator: close it here, not whenever it is collected.
            follower = cast(AsyncGenerator[tuple[int, StreamItem], None], buffer.follow(cursor))
            try:
                seq, item = await anext(follower)
            except StopAsyncIteration:
                return
            finally:
                await follower.aclose()
            if isinstance(item, OutputChunk):
                parts = [item.data]
                size = len(item.data)
                for next_seq, next_item in buffer.since(seq):
                    if (
                        not isinstance(next_item, OutputChunk)
                        or next_item.stream != item.stream
                        or size + len(next_item.data) > MAX_FRAME_BYTES
                    ):
                        break
                    parts.append(next_item.data)
                    size += len(next_item.data)
                    seq = next_seq
                if len(parts) > 1:
                    item = OutputChunk(item.stream, b"".join(parts))
            cursor = seq
            yield seq, item

    # --- shutdown --------------------------------------------------------------------------------------

    async def end_execs(self) -> None:
        """The agent is stopping: no new commands; running execs are ended (SIGTERM, then SIGKILL after
        min(process_kill_grace_s, 1 s)) so that their requests answer with what they have (exit 143) while
        the server still waits for in-flight requests, instead of being cut off."""
        self._closing = True
        children = list(self._execs.values())
        grace = min(self.config.process_kill_grace_s, 1.0)
        await asyncio.gather(*(self._terminate(c, grace) for c in children), return_exceptions=True)

    async def close(self) -> None:
        """End every child's process group, reap them, close every fd, stop the tasks."""
        self._closing = True
        children = [m.child for m in self._procs.values() if m.running] + list(self._execs.values())
        grace = min(self.config.process_kill_grace_s, 1.0)
        results = await asyncio.gather(*(self._terminate(c, grace) for c in children), return_exceptions=True)
        for child, result in zip(children, results, strict=True):
            if isinstance(result, BaseException):
                log.error("ending process %d failed", child.pid, exc_info=result)
        for child in children:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(child.process.wait(), 2.0)
        # The supervisors see their processes end and finish on their own; give them a moment.
        pending = [m.finished.wait() for m in self._procs.values()]
        if pending:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*pending), self.config.process_drain_s + 0.5)
        await self._tasks.close()
        for managed in self._procs.values():
            managed.finish()
