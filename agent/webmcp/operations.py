"""The WebMCP operations, transport-independent: typed request → WebmcpService → response model."""

from __future__ import annotations

from typing import Any

from ..operation import Operation
from ..services import Services
from . import WEBMCP_KEY, models


async def _list_tools(services: Services, req: models.ListToolsRequest) -> dict[str, Any]:
    return {"tools": await services.get(WEBMCP_KEY).list_tools(exclude_custom=req.exclude_custom)}


async def _invoke(services: Services, req: models.InvokeToolRequest) -> dict[str, Any]:
    return await services.get(WEBMCP_KEY).invoke(req.tool_ref, req.input, timeout_s=req.timeout_sec)


async def _list_custom(services: Services, req: models.ListCustomToolsRequest) -> dict[str, Any]:
    return {"tools": services.get(WEBMCP_KEY).custom_tools()}


async def _add_custom(services: Services, req: models.AddCustomToolsRequest) -> dict[str, Any]:
    service = services.get(WEBMCP_KEY)
    added = await service.add_custom(req.namespace, req.source, overwrite=req.force_overwrite_namespace)
    return {"tools": added}


async def _delete_custom(services: Services, req: models.DeleteCustomToolRequest) -> None:
    services.get(WEBMCP_KEY).delete_custom(req.id)


LIST_TOOLS = Operation("listWebmcpTools", models.ListToolsRequest, _list_tools)
INVOKE = Operation("invokeWebmcpTool", models.InvokeToolRequest, _invoke)
LIST_CUSTOM = Operation("listWebmcpCustomTools", models.ListCustomToolsRequest, _list_custom)
ADD_CUSTOM = Operation("addWebmcpCustomTools", models.AddCustomToolsRequest, _add_custom)
DELETE_CUSTOM = Operation(
    "deleteWebmcpCustomTool", models.DeleteCustomToolRequest, _delete_custom, status=204
)

OPERATIONS: tuple[Operation[Any], ...] = (LIST_TOOLS, INVOKE, LIST_CUSTOM, ADD_CUSTOM, DELETE_CUSTOM)
