"""A loopback HTTP server for the CDP-plane tests: echoes requests, sets cookies, serves bytes and pages."""

from __future__ import annotations

import asyncio
import base64
import html
import socket
from typing import Any

from aiohttp import web

BINARY = bytes(range(256)) * 64  # every byte value, 16 KiB


def closed_port() -> int:
    """A loopback port nobody listens on (not one of Chromium's restricted ports)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class EchoServer:
    def __init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.seen: list[dict[str, Any]] = []  # every /echo request, in order

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base + path

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/echo", self._echo)
        app.router.add_get("/cookies/set", self._set_cookies)
        app.router.add_get("/binary", self._binary)
        app.router.add_get("/multi", self._multi)
        app.router.add_get("/redirect", self._redirect)
        app.router.add_get("/chunked", self._chunked)
        app.router.add_get("/slow", self._slow)
        app.router.add_get("/page", self._page)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _echo(self, request: web.Request) -> web.Response:
        body = await request.read()
        seen = {
            "method": request.method,
            "path": request.path,
            "query": dict(request.query),
            "headers": [[k, v] for k, v in request.headers.items()],
            "body_b64": base64.b64encode(body).decode(),
            "cookies": dict(request.cookies),
        }
        self.seen.append(seen)
        return web.json_response(seen)

    async def _set_cookies(self, request: web.Request) -> web.Response:
        value = request.query.get("v", "1")
        response = web.Response(
            text=f"<!doctype html><title>cookies {html.escape(value)}</title>"
            "<script>window.__ready = true</script>",
            content_type="text/html",
        )
        response.set_cookie("visible", f"v{value}", path="/")
        response.set_cookie("secret", f"s{value}", path="/", httponly=True, samesite="Strict")
        return response

    async def _binary(self, request: web.Request) -> web.Response:
        return web.Response(body=BINARY, content_type="application/octet-stream")

    async def _multi(self, request: web.Request) -> web.Response:
        response = web.Response(text="multi")
        response.headers.add("X-Multi", "one")
        response.headers.add("X-Multi", "two")
        response.headers.add("Set-Cookie", "m1=a; Path=/multi")
        response.headers.add("Set-Cookie", "m2=b; Path=/multi; HttpOnly")
        return response

    async def _redirect(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("/echo?from=redirect")

    async def _chunked(self, request: web.Request) -> web.StreamResponse:
        remaining = int(request.query.get("bytes", "1000"))
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        chunk = b"z" * 262144
        while remaining > 0:
            await response.write(chunk[:remaining])
            remaining -= len(chunk)
        await response.write_eof()
        return response

    async def _slow(self, request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("s", "10")))
        return web.Response(text="late")

    async def _page(self, request: web.Request) -> web.Response:
        title = html.escape(request.query.get("title", "page"))
        return web.Response(
            text=f"<!doctype html><title>{title}</title><h1 id=h>{title}</h1>"
            "<script>window.__ready = true</script>",
            content_type="text/html",
        )
