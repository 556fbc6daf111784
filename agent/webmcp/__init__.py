"""WebMCP: tools that pages register (navigator.modelContext) and custom tools added through the API,
listed with an opaque tool_ref and invoked in their document (GET /webmcp/tools, POST /webmcp/invoke,
GET|POST /webmcp/custom-tools, DELETE /webmcp/custom-tools/{id})."""

from ..services import Key
from .service import WebmcpService

WEBMCP_KEY = Key("webmcp", WebmcpService)

__all__ = ["WEBMCP_KEY"]
