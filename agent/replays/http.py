"""Routes /replays, /replays/{replay_id} (the file, with Range), its /stop and its /view page."""

from __future__ import annotations

import html
from typing import Any

from aiohttp import web

from ..config import Config
from ..operation import json_route, services_of, to_json, typed_request
from . import REPLAYS_KEY
from . import operations as ops
from .models import ReplayIdRequest


def _absolute(request: web.Request, data: dict[str, Any]) -> dict[str, Any]:
    """replay_view_url as an absolute URL for this client: its scheme and Host, a proxy's
    X-Forwarded-Prefix (the control plane's /browsers/{id}), and its ?jwt= (a browser sends no header)."""
    url = request.url.origin().with_path(
        request.headers.get("X-Forwarded-Prefix", "").rstrip("/") + data["replay_view_url"]
    )
    jwt = request.query.get("jwt")
    if jwt:
        url = url.with_query(jwt=jwt)
    return {**data, "replay_view_url": str(url)}


async def start(request: web.Request) -> web.Response:
    result = await ops.START.run(services_of(request), typed_request(request, ops.START.request))
    return web.json_response(_absolute(request, to_json(result)), status=ops.START.status)


async def list_replays(request: web.Request) -> web.Response:
    result = await ops.LIST.run(services_of(request), typed_request(request, ops.LIST.request))
    return web.json_response([_absolute(request, item) for item in to_json(result)])


async def download(request: web.Request) -> web.StreamResponse:
    service = services_of(request).get(REPLAYS_KEY)
    rec = service.get(typed_request(request, ReplayIdRequest).replay_id)
    if rec.running:
        return web.Response(status=202, headers={"Retry-After": str(service.retry_after(rec))})
    # FileResponse: Content-Length, Range (206) and If-Range, sendfile; video/mp4 from the name.
    return web.FileResponse(
        rec.video, headers={"Content-Disposition": f'inline; filename="{rec.meta.replay_id}.mp4"'}
    )


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Replay {id}</title>
<style>body{{margin:0;background:#111;color:#ccc;font:14px sans-serif}}video{{display:block;width:100%;
max-height:95vh;background:#000}}p{{margin:8px}}</style></head>
<body><video controls autoplay muted src="{src}"></video>
<p>Replay {id}{state}</p></body></html>
"""


async def view(request: web.Request) -> web.Response:
    service = services_of(request).get(REPLAYS_KEY)
    rec = service.get(typed_request(request, ReplayIdRequest).replay_id)
    # Relative to /replays/{id}/view, so it works behind a path-prefixing proxy; the query carries a jwt.
    src = f"../{rec.meta.replay_id}" + (f"?{request.query_string}" if request.query_string else "")
    state = " (still recording: reload when it is stopped)" if rec.running else ""
    body = PAGE.format(id=html.escape(rec.meta.replay_id), src=html.escape(src), state=state)
    return web.Response(text=body, content_type="text/html")


def routes(config: Config) -> list[web.RouteDef]:
    return [
        web.post("/replays", start),
        web.get("/replays", list_replays, allow_head=False),
        web.get("/replays/{replay_id}", download, allow_head=False),
        json_route("POST", "/replays/{replay_id}/stop", ops.STOP),
        web.get("/replays/{replay_id}/view", view, allow_head=False),
    ]
