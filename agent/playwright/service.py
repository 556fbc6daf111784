"""POST /playwright/execute: user code with `page`, `context`, `browser`, run by warm Node workers.

The parts: `node.py` (the Node worker processes), `executors.py` (executors and their workers' lifecycle),
`tabs.py` (which tab `page` binds to); this facade runs calls through them.

Executors (SDK 0.131's `executor` field): every call runs in an executor, a worker of its own. Calls on one
executor run one at a time, in arrival order; calls on different executors run concurrently. `default`
(also calls without a name) binds `page` to the tab the user sees (the most recently active tab; a new tab if
there is none). A named executor (at most `max_executors` of them; one more is a 409) owns a background tab
that it opens on its first call and again whenever that tab was closed.

Timeouts: the agent kills the worker's whole process group when `timeout_sec` runs out (the only way to stop
code that never yields, `while (true) {}`), answers `success: false`, and starts a fresh worker at once so
the next call is warm again. A worker that dies is replaced the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..cdp.connection import CDPConnection
from ..errors import NotFound, Unavailable
from ..timefmt import rfc3339
from .executors import DEFAULT_EXECUTOR, Executor, ExecutorGone, Executors, gone_result, now
from .node import Worker, WorkerGone, bundled_driver
from .repl import Repl
from .tabs import Tabs

__all__ = ["PlaywrightService", "bundled_driver"]  # bench/cdp.py takes the bundled driver from here


class PlaywrightService:
    def __init__(
        self,
        cdp: CDPConnection,
        *,
        endpoint: str,
        node: str = "",
        max_executors: int = 8,
        start_timeout_s: float = 30.0,
        connect_wait_s: float = 10.0,
        temp_dir: Path | None = None,
        idle_detach_s: float = 0.0,
    ) -> None:
        bundled_node, self.core = bundled_driver()
        self.idle_detach_s = idle_detach_s
        self.node = Path(node) if node else bundled_node
        self.cdp = cdp
        self.endpoint = endpoint
        self.start_timeout_s = start_timeout_s
        self.temp_dir = temp_dir
        self.executors = Executors(self._start_worker, max_executors=max_executors)
        self.tabs = Tabs(cdp, connect_wait_s=connect_wait_s)
        self.repl = Repl(self._start_repl_worker, self.tabs)
        self._closed = False

    def warm_up(self) -> None:
        """Start the default worker now, so the first call does not pay the Node start."""
        self.executors.prewarm(self.executors.default)

    def status(self) -> dict[str, Any]:
        return {"executors": len(self.executors.items), "workers": self.executors.workers()}

    async def _start_worker(self, name: str) -> Worker:
        worker = Worker(
            self.node, self.core, self.endpoint, name, self.temp_dir, idle_detach_s=self.idle_detach_s
        )
        await worker.start(self.start_timeout_s)
        return worker

    async def _start_repl_worker(self) -> Worker:
        # --expose-internals: the REPL rewrites top-level await with Node's own internal/repl/await. No idle
        # disconnect (idle_detach_s 0): the REPL's bindings may hold the connection's objects.
        worker = Worker(self.node, self.core, self.endpoint, "repl", self.temp_dir, ("--expose-internals",))
        await worker.start(self.start_timeout_s)
        return worker

    async def run_repl(self, code: str, *, reset: bool, timeout_s: int) -> dict[str, Any]:
        if self._closed:
            raise Unavailable("the agent is shutting down")
        return await self.repl.run(code, reset=reset, timeout_s=timeout_s)

    # --- calls ---------------------------------------------------------------------------------------------

    async def execute(self, code: str, timeout_s: int, executor_name: str | None = None) -> dict[str, Any]:
        if self._closed:
            raise Unavailable("the agent is shutting down")
        executor = self.executors.get_or_create(executor_name or DEFAULT_EXECUTOR)
        async with executor.lock:
            # A call that was waiting (or running) when its executor was deleted fails, as a running one does.
            if executor.gone:
                return gone_result(executor.gone)
            executor.busy = True
            executor.last_used_at = now()
            restarts = executor.restarts
            try:
                return await self._run(executor, code, timeout_s, restarts)
            except ExecutorGone as exc:
                return gone_result(str(exc))
            finally:
                executor.busy = False

    async def _run(self, executor: Executor, code: str, timeout_s: int, restarts: int) -> dict[str, Any]:
        worker = await self.executors.worker(executor)
        target_id, created = await self.tabs.bind(seen=executor.pinned, owned=executor.target_id)
        if not executor.pinned:
            executor.target_id = target_id
        tab = {"target_id": target_id, "created": created}
        request = {"code": code, "target_id": target_id, "timeout_ms": timeout_s * 1000}
        try:
            reply = await worker.call(request, timeout_s)
        except TimeoutError:
            await self.executors.replace(executor)
            return {
                "success": False,
                "error": f"execution timed out after {timeout_s} s (the executor's worker was restarted)",
                "stdout": "",
                "stderr": "",
                "tab": tab,
            }
        except WorkerGone as exc:
            tail = worker.tail()
            await self.executors.replace(executor)
            if executor.gone or executor.restarts != restarts:
                reason = executor.gone or "restarted"
                return {"success": False, "error": f"the executor was {reason}", "tab": tab}
            return {"success": False, "error": f"the Playwright worker died: {exc} ({tail})", "tab": tab}
        except BaseException:
            # The client went away (or the agent stops) while code runs: nobody can wait for it, and it
            # must not keep driving the browser.
            await self.executors.replace(executor)
            raise
        out: dict[str, Any] = {
            "success": bool(reply.get("success")),
            "stdout": str(reply.get("stdout", "")),
            "stderr": str(reply.get("stderr", "")),
            "tab": tab,
        }
        if "result" in reply:
            out["result"] = reply["result"]
        if reply.get("error"):
            out["error"] = str(reply["error"])
        return out

    # --- executors -----------------------------------------------------------------------------------------

    async def list_executors(self) -> list[dict[str, Any]]:
        urls = await self.tabs.urls()
        out = []
        for executor in self.executors.items.values():
            item: dict[str, Any] = {
                "name": executor.name,
                "busy": executor.busy,
                "created_at": rfc3339(executor.created_at),
                "last_used_at": rfc3339(executor.last_used_at),
            }
            if executor.target_id is not None:
                item["target_id"] = executor.target_id
                if executor.target_id in urls:
                    item["url"] = urls[executor.target_id]
            out.append(item)
        return out

    async def delete(self, name: str, *, close_tab: bool) -> None:
        executor = self.executors.items.get(name)
        if executor is None:
            raise NotFound(f"no executor named {name!r}")
        if executor.pinned:
            # The default executor is restarted: the running call fails, later ones get a new worker.
            executor.restarts += 1
            await self.executors.replace(executor)
            return
        await self.executors.remove(executor)
        if close_tab and executor.target_id is not None:
            await self.tabs.close(executor.target_id)

    async def close(self) -> None:
        self._closed = True
        await self.repl.close()
        await self.executors.close()
        for executor in self.executors.items.values():
            if not executor.pinned and executor.target_id is not None:
                await self.tabs.close(executor.target_id, timeout=2)
