"""Executors: every call runs in one, a warm worker of its own; `default` plus at most `max_executors` named.

Calls on one executor run one at a time (its lock), in arrival order. Each executor's worker is started in
the background as soon as it is known (and again right after it was killed or died), so a call finds it warm.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import re
from collections.abc import Callable, Coroutine
from typing import Any

from ..errors import BadRequest, Conflict, InternalError
from ..tasks import TaskGroup
from .node import Worker, WorkerGone

DEFAULT_EXECUTOR = "default"
EXECUTOR_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class ExecutorGone(Exception):
    """The executor was deleted (or the agent stops) while a call waited for it."""


def gone_result(reason: str) -> dict[str, Any]:
    return {"success": False, "error": f"the executor was {reason}", "stdout": "", "stderr": ""}


@dataclasses.dataclass
class Executor:
    name: str
    pinned: bool = False  # the default executor: never removed, owns no tab
    created_at: datetime.datetime = dataclasses.field(default_factory=now)
    last_used_at: datetime.datetime = dataclasses.field(default_factory=now)
    busy: bool = False
    target_id: str | None = None
    worker: Worker | None = None
    starting: asyncio.Task[Worker] | None = None
    gone: str | None = None  # why calls on it fail (deleted, shut down)
    restarts: int = 0
    lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)


class Executors:
    def __init__(
        self, start_worker: Callable[[str], Coroutine[Any, Any, Worker]], *, max_executors: int
    ) -> None:
        self._start_worker = start_worker
        self.max_executors = max_executors
        self.items: dict[str, Executor] = {DEFAULT_EXECUTOR: Executor(DEFAULT_EXECUTOR, pinned=True)}
        self._tasks = TaskGroup("playwright")
        self._closed = False

    @property
    def default(self) -> Executor:
        return self.items[DEFAULT_EXECUTOR]

    def workers(self) -> int:
        return sum(1 for e in self.items.values() if e.worker is not None and e.worker.alive)

    def get_or_create(self, name: str) -> Executor:
        if not EXECUTOR_NAME.match(name):
            raise BadRequest(f"field 'executor' must match {EXECUTOR_NAME.pattern}, got {name!r}")
        executor = self.items.get(name)
        if executor is not None:
            return executor
        named = [n for n in self.items if n != DEFAULT_EXECUTOR]
        if len(named) >= self.max_executors:
            raise Conflict(
                f"named executor limit ({self.max_executors}) reached ({', '.join(named)}); delete one with "
                "DELETE /playwright/executors/{name}"
            )
        executor = self.items[name] = Executor(name)
        return executor

    # --- workers ------------------------------------------------------------------------------------------

    def prewarm(self, executor: Executor) -> None:
        if self._closed or executor.gone or executor.starting is not None:
            return
        if executor.worker is not None and executor.worker.alive:
            return
        executor.starting = self._tasks.spawn(
            self._start_worker(executor.name), name=f"worker-{executor.name}"
        )

    async def worker(self, executor: Executor) -> Worker:
        """The executor's running worker (the one starting in the background, or a new one)."""
        if executor.worker is not None and executor.worker.alive:
            return executor.worker
        if executor.worker is not None:
            await executor.worker.kill()
            executor.worker = None
        self.prewarm(executor)
        starting = executor.starting
        if starting is None:  # deleted, or the agent is stopping
            raise ExecutorGone(executor.gone or "shut down")
        try:
            worker = await asyncio.shield(starting)
        except WorkerGone as exc:
            raise InternalError(f"cannot start a Playwright worker: {exc}") from None
        except asyncio.CancelledError:
            if starting.cancelled() and executor.gone:  # deleted while its worker was starting
                raise ExecutorGone(executor.gone) from None
            raise
        finally:
            if executor.starting is starting and starting.done():
                executor.starting = None
        if executor.gone:
            await worker.kill()
            raise ExecutorGone(executor.gone)
        executor.worker = worker
        return worker

    async def replace(self, executor: Executor) -> None:
        """Kill the executor's worker and start a fresh one in the background."""
        worker, executor.worker = executor.worker, None
        if worker is not None:
            await worker.kill()
        self.prewarm(executor)

    async def _discard_starting(self, executor: Executor) -> None:
        """Stop a worker that is still starting for an executor that no longer wants it."""
        starting, executor.starting = executor.starting, None
        if starting is None:
            return
        if not starting.done():
            starting.cancel()  # Worker.start kills its process when cancelled
        with contextlib.suppress(BaseException):
            await starting
        if starting.done() and not starting.cancelled() and starting.exception() is None:
            await starting.result().kill()

    async def _stop(self, executor: Executor, reason: str) -> None:
        executor.gone = reason
        worker, executor.worker = executor.worker, None
        if worker is not None:
            await worker.kill()

    # --- removal ------------------------------------------------------------------------------------------

    async def remove(self, executor: Executor) -> None:
        """Delete a named executor: its worker is killed, a running call fails, the name is free again."""
        del self.items[executor.name]
        await self._stop(executor, "deleted")
        async with executor.lock:  # let a running call unwind first
            pass
        await self._discard_starting(executor)

    async def close(self) -> None:
        self._closed = True
        for executor in self.items.values():
            await self._stop(executor, "shut down")
        for executor in self.items.values():
            await self._discard_starting(executor)
        await self._tasks.close()
