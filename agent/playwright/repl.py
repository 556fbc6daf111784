"""POST /repl: JavaScript in one persistent Node runtime, a Playwright worker of its own (worker.mjs, "repl").

Top-level bindings live as long as that worker: until `reset`, a timeout (the worker's process group is
killed, the only way to stop code that never yields) or a crash. Each worker gets a new `repl_id`; the call
that ended one says `repl_terminated: true`, and the next call starts a fresh one (lazily). Calls run one at a
time, in arrival order (one lock). `page` is bound to the tab the user sees at the start of every call.
"""

from __future__ import annotations

import asyncio
import secrets
import string
import time
from collections.abc import Callable, Coroutine
from typing import Any

from ..errors import BadRequest, InternalError, Unavailable
from .node import Worker, WorkerGone
from .tabs import Tabs

_ALPHABET = string.ascii_lowercase + string.digits


def new_repl_id() -> str:
    """A CUID2-shaped id (a letter, then 23 lowercase base-36 characters), as the SDK documents repl_id."""
    return secrets.choice(string.ascii_lowercase) + "".join(secrets.choice(_ALPHABET) for _ in range(23))


class Repl:
    def __init__(self, start_worker: Callable[[], Coroutine[Any, Any, Worker]], tabs: Tabs) -> None:
        self._start_worker = start_worker
        self._tabs = tabs
        self._lock = asyncio.Lock()
        self._worker: Worker | None = None
        self._id: str | None = None
        self._closed = False

    def status(self) -> dict[str, Any]:
        return {"repl_id": self._id, "running": self._worker is not None and self._worker.alive}

    async def run(self, code: str, *, reset: bool, timeout_s: int) -> dict[str, Any]:
        if not code.strip() and not reset:
            raise BadRequest("field 'code' may be empty only when 'reset' is true")
        async with self._lock:
            if self._closed:
                raise Unavailable("the agent is shutting down")
            started = time.monotonic()
            if reset:
                await self._terminate()
            worker, repl_id = await self._ensure()
            if not code.strip():
                return self._answer(repl_id, started, {"success": True, "content": []})
            target_id, _ = await self._tabs.bind(seen=True, owned=None)
            request = {"kind": "repl", "code": code, "target_id": target_id, "timeout_ms": timeout_s * 1000}
            try:
                reply = await worker.call(request, timeout_s)
            except TimeoutError:
                await self._terminate()
                error = f"execution timed out after {timeout_s} s (the REPL was terminated)"
                return self._answer(repl_id, started, {"success": False, "error": error}, terminated=True)
            except WorkerGone as exc:
                tail = worker.tail()
                await self._terminate()
                error = f"the REPL process exited ({exc}): {tail}"
                return self._answer(repl_id, started, {"success": False, "error": error}, terminated=True)
            except BaseException:
                # The client went away (or the agent stops) while code runs: nobody waits for it, and it must
                # not keep driving the browser; the next call gets a fresh REPL.
                await self._terminate()
                raise
            if not worker.alive:  # it answered, then died (process.exit in the code)
                await self._terminate()
                return self._answer(repl_id, started, reply, terminated=True)
            return self._answer(repl_id, started, reply)

    def _answer(
        self, repl_id: str, started: float, reply: dict[str, Any], *, terminated: bool = False
    ) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "repl_id": repl_id,
            "success": bool(reply.get("success")),
            "content": reply.get("content") or [],
            "content_truncated": bool(reply.get("content_truncated")),
            "duration_ms": int((time.monotonic() - started) * 1000),
            "repl_terminated": terminated,
        }
        for key in ("error", "stack"):
            if reply.get(key):
                answer[key] = str(reply[key])
        return answer

    async def _ensure(self) -> tuple[Worker, str]:
        if self._worker is not None and self._worker.alive and self._id is not None:
            return self._worker, self._id
        await self._terminate()
        try:
            worker = await self._start_worker()
        except WorkerGone as exc:
            raise InternalError(f"cannot start the REPL: {exc}") from None
        self._worker, self._id = worker, new_repl_id()
        return worker, self._id

    async def _terminate(self) -> None:
        worker, self._worker, self._id = self._worker, None, None
        if worker is not None:
            await worker.kill()

    async def close(self) -> None:
        self._closed = True
        await self._terminate()
        async with self._lock:  # a running call unwinds (its worker is dead), then nothing more starts
            await self._terminate()
