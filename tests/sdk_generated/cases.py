"""The SDK's generated test cases for the resources of issue 14, as data.

Stainless generates, for every SDK method, `test_method_X` (required parameters),
`test_method_X_with_all_params`, `test_raw_response_X`, `test_streaming_response_X` and
`test_path_params_X`, all with the same placeholder data (`id_or_name="htzv5orfit78e1m2biiifpbv"`,
`tool_ref="x"`, `input={"foo": "bar"}`, `source="source"`, integers at their minimum). The data of the
`webmcp` and `webmcp.custom_tools` cases is that of the SDK repository's generated tests (the newest stored
copies; no checkout tagged 0.131 was available, the mirror's tags stop at 0.94); the `repl` and `curl` cases
follow the same generator rules from the installed 0.131 SDK's signatures and the spec. The SDK's tests are
not copied: their shapes are re-run by test_generated.py.

Where the generated data cannot be valid for a real browser, `rejects` names the 4xx (and Error code) a real
agent answers; the mock server the SDK's suite uses answers the spec's example instead. A 5xx is never a pass.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from kernel.types import BrowserCurlResponse, BrowserReplResult
from kernel.types.browsers import InvocationResult, ToolsResponse
from kernel.types.browsers.webmcp import CustomToolsResponse

SESSION = "htzv5orfit78e1m2biiifpbv"


@dataclasses.dataclass(frozen=True)
class Case:
    resource: str  # attribute path from the client, e.g. "browsers.webmcp.custom_tools"
    method: str
    required: dict[str, Any]
    all_params: dict[str, Any] | None  # None: the method has no optional parameters
    returns: type[Any] | None  # None: the method returns None (204)
    schema: str | None  # our spec's schema of a 200 answer (None: 204)
    rejects: tuple[int, str] | None = None  # why a real agent refuses the generated data (status, code)
    # Path parameters the generated test_path_params_X empties one at a time (each raises ValueError).
    path_params: tuple[str, ...] = ("id_or_name",)

    @property
    def id(self) -> str:
        return f"{self.resource.removeprefix('browsers').lstrip('.') or 'browsers'}.{self.method}"


CASES = [
    # REPL: "code" is valid JavaScript that throws (ReferenceError): 200 success false, runtime kept.
    Case(
        "browsers",
        "repl",
        {"id_or_name": SESSION, "code": "code"},
        {"id_or_name": SESSION, "code": "code", "reset": True, "timeout_sec": 1},
        BrowserReplResult,
        "BrowserReplResult",
    ),
    # curl: "url" is not an http(s) URL: 400 (the SDK's mock would answer its example).
    Case(
        "browsers",
        "curl",
        {"id_or_name": SESSION, "url": "url"},
        {
            "id_or_name": SESSION,
            "url": "url",
            "body": "body",
            "headers": {"foo": "string"},
            "method": "GET",
            "response_encoding": "utf8",
            "timeout_ms": 1000,
        },
        BrowserCurlResponse,
        "BrowserCurlResult",
        rejects=(400, "bad_request"),
    ),
    Case(
        "browsers.webmcp",
        "list_tools",
        {"id_or_name": SESSION},
        {"id_or_name": SESSION, "exclude_custom": True},
        ToolsResponse,
        "WebmcpToolsResponse",
    ),
    # "x" is no tool_ref from a listing: 400 (nothing runs).
    Case(
        "browsers.webmcp",
        "invoke_tool",
        {"id_or_name": SESSION, "input": {"foo": "bar"}, "tool_ref": "x"},
        {"id_or_name": SESSION, "input": {"foo": "bar"}, "tool_ref": "x", "timeout_sec": 1},
        InvocationResult,
        "WebmcpInvocationResult",
        rejects=(400, "bad_request"),
    ),
    Case(
        "browsers.webmcp.custom_tools",
        "list",
        {"id_or_name": SESSION},
        None,
        CustomToolsResponse,
        "WebmcpCustomToolsResponse",
    ),
    # "source" is an expression that throws (ReferenceError) when checked: 400, nothing added.
    Case(
        "browsers.webmcp.custom_tools",
        "add",
        {"id_or_name": SESSION, "namespace": "namespace", "source": "source"},
        {
            "id_or_name": SESSION,
            "namespace": "namespace",
            "source": "source",
            "force_overwrite_namespace": True,
        },
        CustomToolsResponse,
        "WebmcpCustomToolsResponse",
        rejects=(400, "bad_request"),
    ),
    # No such custom tool: 404.
    Case(
        "browsers.webmcp.custom_tools",
        "remove",
        {"id": "ct_n10b9798ad53ecc4y69z31e1", "id_or_name": SESSION},
        None,
        None,
        None,
        rejects=(404, "not_found"),
        path_params=("id_or_name", "id"),
    ),
]
