"""POST /playwright/execute: user code with `page`, `context`, `browser`, run by warm Node workers.

A worker (`worker.mjs`) is a Node process from the python `playwright` wheel (its bundled Node and
playwright-core: no npm, no browser download) that stays connected to Chromium over CDP between calls, so a
call costs a pipe round trip plus what the code does, not a Node start and a CDP handshake.

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

import asyncio
import collections
import contextlib
import dataclasses
import datetime
import itertools
import json
import logging
import os
import re
import signal
from pathlib import Path
from typing import Any

from ..cdp.connection import CDPConnection, CDPDisconnected, CDPError
from ..errors import BadRequest, Conflict, InternalError, NotFound, Unavailable
from ..tasks import TaskGroup

log = logging.getLogger(__name__)

DEFAULT_EXECUTOR = "default"
EXECUTOR_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
WORKER_SCRIPT = Path(__file__).with_name("worker.mjs")
_REPLY_LIMIT = 512 * 1024 * 1024  # one answer line (a returned value can be large)
_TABS_AND_PAGES = [{"type": "tab", "exclude": False}, {"type": "page", "exclude": False}, {"exclude": True}]
_PAGES = [{"type": "page", "exclude": False}, {"exclude": True}]


def bundled_driver() -> tuple[Path, Path]:
    """The Node binary and playwright-core's ESM entry inside the python `playwright` wheel."""
    import playwright

    driver = Path(playwright.__file__).parent / "driver"
    return driver / "node", driver / "package" / "index.mjs"


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class ExecutorGone(Exception):
    """The executor was deleted (or the agent stops) while a call waited for it."""


def _gone(reason: str) -> dict[str, Any]:
    return {"success": False, "error": f"the executor was {reason}", "stdout": "", "stderr": ""}


class WorkerGone(Exception):
    """The worker process exited (or was killed) before answering."""


class Worker:
    """One Node process running worker.mjs; requests on its stdin, answers on a pipe of their own."""

    def __init__(self, node: Path, core: Path, endpoint: str, name: str, temp_dir: Path | None) -> None:
        self.node, self.core, self.endpoint, self.name = node, core, endpoint, name
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
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
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


@dataclasses.dataclass
class Executor:
    name: str
    pinned: bool = False  # the default executor: never removed, owns no tab
    created_at: datetime.datetime = dataclasses.field(default_factory=_now)
    last_used_at: datetime.datetime = dataclasses.field(default_factory=_now)
    busy: bool = False
    target_id: str | None = None
    worker: Worker | None = None
    starting: asyncio.Task[Worker] | None = None
    gone: str | None = None  # why calls on it fail (deleted, shut down)
    restarts: int = 0
    lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)


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
    ) -> None:
        bundled_node, self.core = bundled_driver()
        self.node = Path(node) if node else bundled_node
        self.cdp = cdp
        self.endpoint = endpoint
        self.max_executors = max_executors
        self.start_timeout_s = start_timeout_s
        self.connect_wait_s = connect_wait_s
        self.temp_dir = temp_dir
        self.executors: dict[str, Executor] = {DEFAULT_EXECUTOR: Executor(DEFAULT_EXECUTOR, pinned=True)}
        self._tasks = TaskGroup("playwright")
        self._closed = False
        self._tab_pages: dict[str, str] = {}  # tab target id → its page target id

    def warm_up(self) -> None:
        """Start the default worker now, so the first call does not pay the Node start."""
        self._prewarm(self.executors[DEFAULT_EXECUTOR])

    def status(self) -> dict[str, Any]:
        return {
            "executors": len(self.executors),
            "workers": sum(1 for e in self.executors.values() if e.worker is not None and e.worker.alive),
        }

    # --- workers -------------------------------------------------------------------------------------------

    async def _start_worker(self, name: str) -> Worker:
        worker = Worker(self.node, self.core, self.endpoint, name, self.temp_dir)
        await worker.start(self.start_timeout_s)
        return worker

    def _prewarm(self, executor: Executor) -> None:
        if self._closed or executor.gone or executor.starting is not None:
            return
        if executor.worker is not None and executor.worker.alive:
            return
        executor.starting = self._tasks.spawn(
            self._start_worker(executor.name), name=f"worker-{executor.name}"
        )

    async def _worker(self, executor: Executor) -> Worker:
        if executor.worker is not None and executor.worker.alive:
            return executor.worker
        if executor.worker is not None:
            await executor.worker.kill()
            executor.worker = None
        self._prewarm(executor)
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

    async def _replace(self, executor: Executor) -> None:
        worker, executor.worker = executor.worker, None
        if worker is not None:
            await worker.kill()
        self._prewarm(executor)

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

    # --- tabs ----------------------------------------------------------------------------------------------

    async def _tab(self, executor: Executor) -> tuple[str, bool]:
        """The target `page` binds to, and whether this call opened it."""
        try:
            await self.cdp.wait_connected(self.connect_wait_s)
            targets = await self.cdp.send("Target.getTargets", {"filter": _TABS_AND_PAGES})
            infos: list[dict[str, Any]] = targets["targetInfos"]
            pages = {str(t["targetId"]) for t in infos if t.get("type") == "page" and not t.get("subtype")}
            if executor.pinned:
                seen = await self._seen_page(infos, pages)
                if seen is not None:
                    return seen, False
                created = await self.cdp.send("Target.createTarget", {"url": "about:blank"})
                return str(created["targetId"]), True
            if executor.target_id is not None and executor.target_id in pages:
                return executor.target_id, False
            # A background tab: the tab the user sees (and that `default` uses) stays in front.
            created = await self.cdp.send("Target.createTarget", {"url": "about:blank", "background": True})
            executor.target_id = str(created["targetId"])
            return executor.target_id, True
        except CDPDisconnected as exc:
            raise Unavailable(f"Chromium is not reachable: {exc.message}") from None
        except CDPError as exc:
            raise InternalError(f"cannot find a tab for the code: {exc}") from None

    async def _seen_page(self, infos: list[dict[str, Any]], pages: set[str]) -> str | None:
        """The page target of the tab the user sees: the active tab of a window (Chromium reports
        `embedderData.tabActive` on tab targets), else the most recently active page."""
        for info in infos:
            if info.get("type") != "tab" or not (info.get("embedderData") or {}).get("tabActive"):
                continue
            tab = str(info["targetId"])
            page = self._tab_pages.get(tab)
            if page is None or page not in pages:
                page = await self._page_of_tab(tab)
            if page is not None and page in pages:
                self._tab_pages[tab] = page
                return page
        # No tab strip (headless) or a tab in flux: /json/list lists the most recently active first.
        for target in await self.cdp.targets_by_activity():
            if target.get("type") == "page" and str(target.get("id")) in pages:
                return str(target["id"])
        return None

    async def _page_of_tab(self, tab: str) -> str | None:
        # A browser session of its own: autoAttachRelated replaces the auto-attach settings of the
        # session it runs on, and the shared connection's browser session belongs to everyone.
        session = (await self.cdp.send("Target.attachToBrowserTarget"))["sessionId"]
        try:
            async with self.cdp.events(session) as events:
                await self.cdp.send(
                    "Target.autoAttachRelated",
                    {"targetId": tab, "waitForDebuggerOnStart": False, "filter": _PAGES},
                    session_id=session,
                )
                # Chromium reports the attachment before its reply; wait a little in case it did not.
                while True:
                    try:
                        event = await asyncio.wait_for(events.get(), 0.2)
                    except TimeoutError:
                        return None
                    info = event.get("params", {}).get("targetInfo", {})
                    attached = event.get("method") == "Target.attachedToTarget"
                    if attached and info.get("type") == "page" and not info.get("subtype"):
                        return str(info["targetId"])
        finally:
            with contextlib.suppress(CDPError, TimeoutError):
                await self.cdp.send("Target.detachFromTarget", {"sessionId": session}, timeout=5)

    # --- calls ---------------------------------------------------------------------------------------------

    def _executor(self, name: str) -> Executor:
        if not EXECUTOR_NAME.match(name):
            raise BadRequest(f"field 'executor' must match {EXECUTOR_NAME.pattern}, got {name!r}")
        executor = self.executors.get(name)
        if executor is not None:
            return executor
        named = [n for n in self.executors if n != DEFAULT_EXECUTOR]
        if len(named) >= self.max_executors:
            raise Conflict(
                f"named executor limit ({self.max_executors}) reached ({', '.join(named)}); delete one with "
                "DELETE /playwright/executors/{name}"
            )
        executor = self.executors[name] = Executor(name)
        return executor

    async def execute(
        self, code: str, timeout_s: int = 60, executor_name: str | None = None
    ) -> dict[str, Any]:
        if self._closed:
            raise Unavailable("the agent is shutting down")
        executor = self._executor(executor_name or DEFAULT_EXECUTOR)
        async with executor.lock:
            # A call that was waiting (or running) when its executor was deleted fails, as a running one does.
            if executor.gone:
                return _gone(executor.gone)
            executor.busy = True
            executor.last_used_at = _now()
            restarts = executor.restarts
            try:
                return await self._run(executor, code, timeout_s, restarts)
            except ExecutorGone as exc:
                return _gone(str(exc))
            finally:
                executor.busy = False

    async def _run(self, executor: Executor, code: str, timeout_s: int, restarts: int) -> dict[str, Any]:
        worker = await self._worker(executor)
        target_id, created = await self._tab(executor)
        tab = {"target_id": target_id, "created": created}
        request = {"code": code, "target_id": target_id, "timeout_ms": timeout_s * 1000}
        try:
            reply = await worker.call(request, timeout_s)
        except TimeoutError:
            await self._replace(executor)
            return {
                "success": False,
                "error": f"execution timed out after {timeout_s} s (the executor's worker was restarted)",
                "stdout": "",
                "stderr": "",
                "tab": tab,
            }
        except WorkerGone as exc:
            tail = worker.tail()
            await self._replace(executor)
            if executor.gone or executor.restarts != restarts:
                reason = executor.gone or "restarted"
                return {"success": False, "error": f"the executor was {reason}", "tab": tab}
            return {"success": False, "error": f"the Playwright worker died: {exc} ({tail})", "tab": tab}
        except BaseException:
            # The client went away (or the agent stops) while code runs: nobody can wait for it, and it
            # must not keep driving the browser.
            await self._replace(executor)
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
        urls: dict[str, str] = {}
        with contextlib.suppress(CDPError):
            urls = {str(t.get("id")): str(t.get("url", "")) for t in await self.cdp.targets_by_activity()}
        out = []
        for executor in self.executors.values():
            item: dict[str, Any] = {
                "name": executor.name,
                "busy": executor.busy,
                "created_at": executor.created_at.isoformat().replace("+00:00", "Z"),
                "last_used_at": executor.last_used_at.isoformat().replace("+00:00", "Z"),
            }
            if executor.target_id is not None:
                item["target_id"] = executor.target_id
                if executor.target_id in urls:
                    item["url"] = urls[executor.target_id]
            out.append(item)
        return out

    async def delete(self, name: str, close_tab: bool = True) -> None:
        executor = self.executors.get(name)
        if executor is None:
            raise NotFound(f"no executor named {name!r}")
        if executor.pinned:
            # The default executor is restarted: the running call fails, later ones get a new worker.
            executor.restarts += 1
            await self._replace(executor)
            return
        del self.executors[name]
        executor.gone = "deleted"
        worker, executor.worker = executor.worker, None
        if worker is not None:
            await worker.kill()
        async with executor.lock:  # let a running call unwind first
            pass
        await self._discard_starting(executor)
        if close_tab and executor.target_id is not None:
            with contextlib.suppress(CDPError, TimeoutError):
                await self.cdp.send("Target.closeTarget", {"targetId": executor.target_id}, timeout=5)

    async def close(self) -> None:
        self._closed = True
        for executor in self.executors.values():
            executor.gone = "shut down"
            worker, executor.worker = executor.worker, None
            if worker is not None:
                await worker.kill()
        for executor in self.executors.values():
            await self._discard_starting(executor)
        await self._tasks.close()
        for executor in self.executors.values():
            if not executor.pinned and executor.target_id is not None:
                with contextlib.suppress(CDPError, TimeoutError):
                    await self.cdp.send("Target.closeTarget", {"targetId": executor.target_id}, timeout=2)
