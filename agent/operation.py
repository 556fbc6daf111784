"""The transport-independent operation core: operationId + validated request → service → response model.

Each spec operation a capability serves is an `Operation`: its operationId, the typed request it takes (a
dataclass whose fields are the operation's parameters and body fields, built from what validation checked,
with the spec's defaults applied) and `run(services, request)`, which returns the response model. The HTTP
layer is a thin adapter over it (`json_route` for JSON-in/JSON-out operations; routes with binary bodies,
streams or multipart build the same typed request with `typed_request`), and the control link calls
`Operations.call` with the same validation and the same errors.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar, Union, get_args, get_origin, get_type_hints

from aiohttp import web

from .errors import BadRequest, NotFound
from .services import Services
from .spec import SPEC_KEY, Spec, check, validated_args
from .spec import Operation as SpecOperation

Req = TypeVar("Req")
T = TypeVar("T")


def json_name(field: dataclasses.Field[Any]) -> str:
    """The JSON name of a request field (`field(metadata={"json": "from"})` where it is not a Python name)."""
    name: str = field.metadata.get("json", field.name)
    return name


_HINTS: dict[type[Any], dict[str, Any]] = {}


def _hints(cls: type[Any]) -> dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = get_type_hints(cls)
    return hints


def _convert(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        options = [arg for arg in get_args(hint) if arg is not type(None)]
        return _convert(options[0], value) if len(options) == 1 else value
    if origin is list and isinstance(value, list):
        (item,) = get_args(hint) or (Any,)
        return [_convert(item, v) for v in value]
    if origin is tuple and isinstance(value, list):
        args = get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v) for v in value)
        return tuple(_convert(a, v) for a, v in zip(args, value, strict=False))
    if dataclasses.is_dataclass(hint) and isinstance(hint, type) and isinstance(value, Mapping):
        return build(hint, value)
    return value


def build(cls: type[T], data: Mapping[str, Any]) -> T:
    """A typed request from validated data: nested dataclasses, lists and optionals are built too. Fields
    absent from `data` keep their dataclass default (None for optional fields without a spec default)."""
    hints = _hints(cls)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        name = json_name(field)
        if name in data:
            values[field.name] = _convert(hints[field.name], data[name])
    return cls(**values)


def to_json(result: object) -> Any:
    """A response model as JSON data: `to_json()` if it has one, dataclasses as dicts, the rest as is."""
    method = getattr(result, "to_json", None)
    if callable(method):
        return method()
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        return {
            json_name(f): to_json(getattr(result, f.name))
            for f in dataclasses.fields(result)
            if getattr(result, f.name) is not None
        }
    if isinstance(result, list | tuple):
        return [to_json(item) for item in result]
    if isinstance(result, dict):
        return {key: to_json(value) for key, value in result.items()}
    return result


@dataclasses.dataclass(frozen=True)
class Operation(Generic[Req]):
    operation_id: str
    request: type[Req]
    run: Callable[[Services, Req], Awaitable[Any]]
    # The HTTP status of a success (the body is to_json(result); None is an empty body).
    status: int = 200


class Operations:
    """Every operation the capabilities serve, by operationId; the one entry point for non-HTTP callers."""

    def __init__(self, spec: Spec, services: Services, operations: Iterable[Operation[Any]]) -> None:
        self.spec = spec
        self.services = services
        self._by_id: dict[str, Operation[Any]] = {}
        for op in operations:
            if op.operation_id in self._by_id:
                raise RuntimeError(f"operation {op.operation_id!r} declared twice")
            if self._spec_operation(op.operation_id) is None:
                raise RuntimeError(f"operation {op.operation_id!r} is not in agent/openapi.yaml")
            self._by_id[op.operation_id] = op

    def __contains__(self, operation_id: str) -> bool:
        return operation_id in self._by_id

    def ids(self) -> list[str]:
        return sorted(self._by_id)

    def get(self, operation_id: str) -> Operation[Any]:
        return self._by_id[operation_id]

    def _spec_operation(self, operation_id: str) -> SpecOperation | None:
        for op in self.spec.operations.values():
            if op.operation_id == operation_id:
                return op
        return None

    def validate(self, operation_id: str, args: Mapping[str, Any]) -> dict[str, Any]:
        """Check transport-independent arguments (parameters and body fields in one mapping, JSON-typed) as
        the HTTP middleware checks a request, and apply the spec's defaults."""
        spec_op = self._spec_operation(operation_id)
        if spec_op is None:
            raise NotFound(f"no operation {operation_id!r}")
        names = {p.name for p in spec_op.parameters}
        values: dict[str, Any] = {}
        for param in spec_op.parameters:
            if param.name not in args:
                if param.required:
                    raise BadRequest(f"missing required {param.location} parameter: {param.name}")
                if "default" in param.schema:
                    values[param.name] = param.schema["default"]
                continue
            check(param.validator, args[param.name], prefix=param.name)
            values[param.name] = args[param.name]
        body = {k: v for k, v in args.items() if k not in names}
        if spec_op.body_validator is not None:
            check(spec_op.body_validator, body)
            body = typing.cast(dict[str, Any], self.spec.with_defaults(spec_op.body_schema, body))
        elif body:
            raise BadRequest("unknown fields: " + ", ".join(sorted(body)))
        return {**body, **values}

    async def call(self, operation_id: str, args: Mapping[str, Any]) -> Any:
        """Validate, build the typed request, run: the response model as JSON data."""
        op = self._by_id.get(operation_id)
        if op is None:
            raise NotFound(f"operation {operation_id!r} cannot be called here")
        request = build(op.request, self.validate(operation_id, args))
        return to_json(await op.run(self.services, request))


OPERATIONS_KEY = web.AppKey("operations", Operations)
SERVICES_KEY = web.AppKey("services", Services)


def services_of(request: web.Request) -> Services:
    return request.app[SERVICES_KEY]


def typed_request(request: web.Request, cls: type[T]) -> T:
    """The typed request of an HTTP request (validated by the spec middleware, defaults applied)."""
    return build(cls, validated_args(request))


def json_handler(op: Operation[Any]) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The HTTP adapter of a JSON operation: typed request → run → JSON (or empty) response."""

    async def handler(request: web.Request) -> web.StreamResponse:
        result = await op.run(request.app[SERVICES_KEY], typed_request(request, op.request))
        if result is None:
            return web.Response(status=op.status)
        return web.json_response(to_json(result), status=op.status)

    return handler


def json_route(method: str, path: str, op: Operation[Any]) -> web.RouteDef:
    return web.route(method, path, json_handler(op))


def spec_of(request: web.Request) -> Spec:
    return request.app[SPEC_KEY]
