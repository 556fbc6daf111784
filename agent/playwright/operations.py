"""The Playwright operations, transport-independent: typed request → PlaywrightService → response model."""

from __future__ import annotations

from typing import Any

from ..operation import Operation
from ..services import Services
from . import PLAYWRIGHT_KEY, models


async def _execute(services: Services, req: models.ExecutePlaywrightRequest) -> dict[str, Any]:
    return await services.get(PLAYWRIGHT_KEY).execute(req.code, req.timeout_sec, req.executor)


async def _list_executors(services: Services, req: models.ListPlaywrightExecutorsRequest) -> dict[str, Any]:
    return {"executors": await services.get(PLAYWRIGHT_KEY).list_executors()}


async def _delete_executor(services: Services, req: models.DeletePlaywrightExecutorRequest) -> None:
    await services.get(PLAYWRIGHT_KEY).delete(req.name, close_tab=req.close_tab)


async def _repl(services: Services, req: models.ReplRequest) -> dict[str, Any]:
    return await services.get(PLAYWRIGHT_KEY).run_repl(req.code, reset=req.reset, timeout_s=req.timeout_sec)


EXECUTE = Operation("executePlaywrightCode", models.ExecutePlaywrightRequest, _execute)
LIST_EXECUTORS = Operation("listPlaywrightExecutors", models.ListPlaywrightExecutorsRequest, _list_executors)
# 204 with an empty body.
DELETE_EXECUTOR = Operation(
    "deletePlaywrightExecutor", models.DeletePlaywrightExecutorRequest, _delete_executor, status=204
)

REPL = Operation("executeBrowserRepl", models.ReplRequest, _repl)

OPERATIONS: tuple[Operation[Any], ...] = (EXECUTE, LIST_EXECUTORS, DELETE_EXECUTOR, REPL)
