"""The OpenAPI contract, loaded once: request validation middleware and GET /spec.yaml, /spec.json.

Every route the app registers must be an operation of `agent/openapi.yaml` (checked at start-up), so the
middleware can validate the path parameters, the query and a JSON body of every request before a handler
runs. Handlers read the validated body with `json_body(request)`.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from importlib import resources
from typing import Any

import yaml
from aiohttp import web
from aiohttp.typedefs import Middleware
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from .errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

SPEC_URI = "urn:browser-vm-agent:openapi"
# Accepted on every route and never validated here: the SDK calls the VM directly as <base_url>/X?jwt=….
ALWAYS_ALLOWED_QUERY = frozenset({"jwt"})
_BODY_KEY = "agent.json_body"
_ARGS_KEY = "agent.args"
_HTTP_METHODS = ("get", "put", "post", "delete", "patch", "options")

_format_checker = FormatChecker()


@_format_checker.checks("uuid", raises=ValueError)
def _is_uuid(value: object) -> bool:
    if not isinstance(value, str):
        return True
    uuid.UUID(value)
    return True


@dataclasses.dataclass(frozen=True)
class Parameter:
    name: str
    location: str
    required: bool
    schema: dict[str, Any]
    validator: Draft202012Validator


@dataclasses.dataclass(frozen=True)
class Operation:
    method: str
    path: str
    operation_id: str
    parameters: tuple[Parameter, ...]
    body_content_types: tuple[str, ...]
    body_required: bool
    body_validator: Draft202012Validator | None
    body_schema: dict[str, Any] | None = None

    @property
    def takes_json(self) -> bool:
        return self.body_validator is not None


class Spec:
    """The parsed document plus one compiled validator per schema that requests use."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.document: dict[str, Any] = yaml.safe_load(text)
        self.json_text = json.dumps(self.document, indent=2)
        resource = Resource.from_contents(self.document, default_specification=DRAFT202012)
        self._registry: Registry[Any] = Registry().with_resource(SPEC_URI, resource)
        self.operations: dict[tuple[str, str], Operation] = {}
        for path, item in self.document.get("paths", {}).items():
            for method in _HTTP_METHODS:
                if method in item:
                    op = self._operation(path, method.upper(), item[method], item.get("parameters", []))
                    self.operations[(op.method, op.path)] = op

    @classmethod
    def load(cls) -> Spec:
        return cls(resources.files("agent").joinpath("openapi.yaml").read_text(encoding="utf-8"))

    def validator(self, schema: Mapping[str, Any]) -> Draft202012Validator:
        return Draft202012Validator(
            self._rebase(schema), registry=self._registry, format_checker=_format_checker
        )

    def schema_validator(self, name: str) -> Draft202012Validator:
        """A validator for `#/components/schemas/<name>`."""
        return self.validator({"$ref": f"#/components/schemas/{name}"})

    def _rebase(self, schema: Mapping[str, Any]) -> dict[str, Any]:
        # Local refs ("#/components/...") inside a fragment must point into the whole document.
        def walk(node: Any) -> Any:
            if isinstance(node, dict):
                return {
                    k: (SPEC_URI + v if k == "$ref" and isinstance(v, str) and v.startswith("#") else walk(v))
                    for k, v in node.items()
                }
            if isinstance(node, list):
                return [walk(v) for v in node]
            return node

        result: dict[str, Any] = walk(dict(schema))
        return result

    def _operation(
        self, path: str, method: str, op: dict[str, Any], shared: list[dict[str, Any]]
    ) -> Operation:
        params: list[Parameter] = []
        for raw in [*shared, *op.get("parameters", [])]:
            raw = self._deref(raw)
            if raw.get("in") not in ("query", "path"):
                continue
            schema = raw.get("schema", {})
            params.append(
                Parameter(raw["name"], raw["in"], bool(raw.get("required")), schema, self.validator(schema))
            )
        body = self._deref(op.get("requestBody", {}))
        content: dict[str, Any] = body.get("content", {})
        json_schema = content.get("application/json", {}).get("schema")
        validator = self.validator(json_schema) if json_schema is not None else None
        if not content:
            # Operations without a body (get_mouse_position, clipboard/read) still get `{}` or an empty
            # body from the SDK; any field in it is unknown.
            validator = self.validator({"type": "object", "additionalProperties": False})
        return Operation(
            method=method,
            path=path,
            operation_id=op.get("operationId", f"{method} {path}"),
            parameters=tuple(params),
            body_content_types=tuple(content),
            body_required=bool(body.get("required")),
            body_validator=validator,
            body_schema=json_schema,
        )

    def with_defaults(self, schema: Mapping[str, Any] | None, instance: object) -> object:
        """`instance` (already valid) with the spec's `default`s filled in where a property is absent,
        at every depth (objects, arrays, `$ref`, `allOf`). The instance is copied, never changed."""
        if schema is None:
            return instance
        node = self._deref(dict(schema))
        for part in node.get("allOf", ()):
            instance = self.with_defaults(part, instance)
        if isinstance(instance, dict):
            out = dict(instance)
            properties: dict[str, Any] = node.get("properties", {})
            for name, sub in properties.items():
                sub = self._deref(sub)
                if name in out:
                    out[name] = self.with_defaults(sub, out[name])
                elif "default" in sub:
                    out[name] = copy.deepcopy(sub["default"])
            extra = node.get("additionalProperties")
            if isinstance(extra, dict):
                for name in out.keys() - properties.keys():
                    out[name] = self.with_defaults(extra, out[name])
            return out
        if isinstance(instance, list) and isinstance(node.get("items"), dict):
            return [self.with_defaults(node["items"], item) for item in instance]
        if isinstance(instance, float) and instance.is_integer() and _integer_only(node):
            # JSON Schema counts 177.0 as an integer, Python code does not (struct, range, ioctl):
            # a handler must get the int it was promised.
            return int(instance)
        return instance

    def _deref(self, node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            target: Any = self.document
            for part in node["$ref"].lstrip("#/").split("/"):
                target = target[part]
            node = target
        return node


# --- turning jsonschema errors into messages that name the field ---------------------------------------


def field_path(parts: Iterable[str | int], prefix: str = "") -> str:
    out = prefix
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def describe(error: ValidationError, prefix: str = "") -> str:
    where = field_path(error.absolute_path, prefix)
    kind = error.validator
    value: Any = error.validator_value
    instance: Any = error.instance
    schema: Any = error.schema
    if kind == "additionalProperties":
        extra = sorted(set(instance) - set(schema.get("properties", {})))
        names = ", ".join(field_path([name], where) for name in extra)
        return f"unknown field{'s' if len(extra) > 1 else ''}: {names}"
    if kind == "required":
        missing = [name for name in value if name not in instance]
        return "missing required field: " + ", ".join(field_path([name], where) for name in missing)
    subject = f"field '{where}'" if where else "request body"
    if kind == "type":
        return f"{subject} must be of type {value}, got {_json_type(instance)}"
    if kind == "enum":
        return f"{subject} must be one of {', '.join(map(str, value))}, got {instance!r}"
    if kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        op = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}[kind]
        return f"{subject} must be {op} {value}, got {instance!r}"
    if kind in ("minItems", "maxItems"):
        bound = "at least" if kind == "minItems" else "at most"
        return f"{subject} must have {bound} {value} items, got {len(instance)}"
    if kind in ("minLength", "maxLength"):
        bound = "at least" if kind == "minLength" else "at most"
        return f"{subject} must be {bound} {value} characters long"
    if kind == "pattern":
        return f"{subject} must match {value}, got {instance!r}"
    if kind == "format":
        return f"{subject} must be a valid {value}, got {instance!r}"
    return f"{subject}: {error.message}"


def _integer_only(schema: Mapping[str, Any]) -> bool:
    kind = schema.get("type")
    kinds = set(kind) if isinstance(kind, list) else {kind}
    return "integer" in kinds and "number" not in kinds


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def check(validator: Draft202012Validator, instance: object, prefix: str = "") -> None:
    """Raise BadRequest naming the first offending field (all of them in `details`)."""
    try:
        found = list(validator.iter_errors(instance))
    except RecursionError:
        raise BadRequest(f"{prefix or 'request body'} is nested too deeply") from None
    errors = sorted(found, key=lambda e: (len(e.absolute_path), str(e.path)))
    if not errors:
        return
    # The deepest error says most; prefer it, but report every one.
    best = max(errors, key=lambda e: len(e.absolute_path))
    messages = [describe(e, prefix) for e in errors]
    raise BadRequest(
        describe(best, prefix),
        details=[{"code": "invalid_input", "message": m} for m in messages] if len(messages) > 1 else None,
    )


def _coerce(raw: str, schema: Mapping[str, Any]) -> object:
    kind = schema.get("type")
    try:
        if kind == "integer" and re.fullmatch(r"[+-]?\d+", raw):
            return int(raw)
        if kind == "number":
            return float(raw)
        if kind == "boolean" and raw.lower() in ("true", "false", "1", "0"):
            return raw.lower() in ("true", "1")
    except ValueError:
        pass
    return raw


def _free_form(param: Parameter) -> bool:
    """A query parameter of type object (style form, explode): it stands for any other query parameter."""
    return param.location == "query" and param.schema.get("type") == "object"


def check_parameters(op: Operation, request: web.Request) -> dict[str, object]:
    """Validate the query and path parameters; their values, coerced to the schema's types, defaults
    applied (absent optional parameters without a default are left out)."""
    known = {p.name for p in op.parameters if p.location == "query"}
    unknown = sorted(set(request.query) - known - ALWAYS_ALLOWED_QUERY)
    if unknown and not any(_free_form(p) for p in op.parameters):
        raise BadRequest("unknown query parameter: " + ", ".join(unknown))
    values: dict[str, object] = {}
    for param in op.parameters:
        if _free_form(param):
            continue  # the other query parameters, as they came: the handler's (e.g. /curl/raw's target's)
        source: Mapping[str, str] = request.query if param.location == "query" else request.match_info
        if param.name not in source:
            if param.required:
                raise BadRequest(f"missing required {param.location} parameter: {param.name}")
            if "default" in param.schema:
                values[param.name] = copy.deepcopy(param.schema["default"])
            continue
        value = _coerce(source[param.name], param.schema)
        check(param.validator, value, prefix=param.name)
        values[param.name] = value
    return values


# --- the middleware ----------------------------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SPEC_KEY = web.AppKey("spec", Spec)


def operation_for(request: web.Request) -> Operation | None:
    spec = request.app[SPEC_KEY]
    route = request.match_info.route
    resource = route.resource
    if resource is None:
        return None
    return spec.operations.get((request.method, resource.canonical))


def is_json_type(content_type: str) -> bool:
    """`application/json` or a `+json` type (parameters such as charset are already stripped by aiohttp)."""
    return content_type == "application/json" or (
        content_type.startswith("application/") and content_type.endswith("+json")
    )


async def _read_json(request: web.Request, op: Operation, limit: int) -> object:
    # A web page can send a "simple" cross-origin request (text/plain, a form, a typeless Blob) without a
    # CORS preflight: JSON routes take only JSON, so such a request is refused before anything is read.
    # An empty body (whatever its type: some clients label even that) means "no fields".
    has_type = "Content-Type" in request.headers
    ctype = request.content_type if has_type else ""
    if has_type and not is_json_type(ctype) and request.content_length != 0 and request.can_read_body:
        raise UnsupportedMediaType(f"unsupported Content-Type {ctype!r}; send application/json")
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"request body is larger than {limit} bytes")
    raw = bytearray()
    while chunk := await request.content.read(65536):
        raw += chunk
        if len(raw) > limit:
            raise PayloadTooLarge(f"request body is larger than {limit} bytes")
    if not raw.strip():
        if op.body_required and op.body_content_types:
            raise BadRequest("request body is required (a JSON object)")
        return {}
    if not is_json_type(ctype):
        raise UnsupportedMediaType(
            f"unsupported Content-Type {ctype!r}; send application/json"
            if has_type
            else "a request body needs Content-Type: application/json"
        )
    try:
        # Strict UTF-8 (a BOM is allowed): json.loads(bytes) would pass encoded surrogates through.
        return json.loads(bytes(raw).decode("utf-8-sig"))
    except RecursionError:
        raise BadRequest("request body is nested too deeply") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None


def validation_middleware(max_json_body: int) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        op = operation_for(request)
        if op is not None:
            args = check_parameters(op, request)
            if op.body_validator is not None:
                body = await _read_json(request, op, max_json_body)
                check(op.body_validator, body)
                body = request.app[SPEC_KEY].with_defaults(op.body_schema, body)
                assert isinstance(body, dict)
                request[_BODY_KEY] = body
                args = {**body, **args}
            request[_ARGS_KEY] = args
        return await handler(request)

    return middleware


def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON body, already validated against the operation's schema, defaults applied."""
    body: dict[str, Any] = request.get(_BODY_KEY, {})
    return body


def validated_args(request: web.Request) -> dict[str, Any]:
    """Path and query parameters and JSON body fields of the request, validated, defaults applied."""
    args: dict[str, Any] = request.get(_ARGS_KEY, {})
    return args


def unspecified_routes(app: web.Application, spec: Spec) -> list[str]:
    """Routes the app serves that the spec does not describe (should be none)."""
    missing = []
    for route in app.router.routes():
        if route.method in ("HEAD", "*") or route.resource is None:
            continue
        if (route.method, route.resource.canonical) not in spec.operations:
            missing.append(f"{route.method} {route.resource.canonical}")
    return missing


async def get_spec_yaml(request: web.Request) -> web.Response:
    return web.Response(text=request.app[SPEC_KEY].text, content_type="application/yaml")


async def get_spec_json(request: web.Request) -> web.Response:
    return web.Response(text=request.app[SPEC_KEY].json_text, content_type="application/json")


def routes() -> list[web.RouteDef]:
    return [web.get("/spec.yaml", get_spec_yaml), web.get("/spec.json", get_spec_json)]
