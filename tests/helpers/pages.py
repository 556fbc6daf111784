"""A loopback web server with a page that records every input event it receives."""

from __future__ import annotations

import itertools

from aiohttp import web

RECORDER_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>recorder</title>
<style>
  html, body { margin: 0; padding: 0; background: #ffffff; }
  #spacer { width: 6000px; height: 6000px; }
  #t { position: absolute; left: 100px; top: 100px; width: 600px; height: 40px; font-size: 20px; }
  #red { position: absolute; left: 800px; top: 100px; width: 200px; height: 200px; background: #ff0000; }
  #blue { position: absolute; left: 1020px; top: 100px; width: 100px; height: 100px; background: #0000ff; }
  #white { position: absolute; left: 100px; top: 400px; width: 400px; height: 300px; background: #ffffff; }
</style></head>
<body>
<div id="spacer"></div>
<input id="t" autocomplete="off" spellcheck="false">
<div id="red"></div><div id="blue"></div><div id="white"></div>
<script>
  window.__events = [];
  const kinds = ["mousedown", "mouseup", "click", "dblclick", "contextmenu", "auxclick", "mousemove",
                 "keydown", "keyup", "wheel", "paste", "copy"];
  function record(e) {
    window.__events.push({
      type: e.type, x: e.screenX, y: e.screenY, cx: e.clientX, cy: e.clientY, button: e.button,
      buttons: e.buttons, key: e.key, code: e.code, ctrl: e.ctrlKey, shift: e.shiftKey, alt: e.altKey,
      meta: e.metaKey, dx: e.deltaX, dy: e.deltaY, detail: e.detail, repeat: e.repeat, t: performance.now(),
    });
  }
  for (const kind of kinds) document.addEventListener(kind, record, true);
  // Keep the page put: no context menu, no back/forward navigation from the side buttons.
  document.addEventListener("contextmenu", (e) => e.preventDefault());
  for (const kind of ["mousedown", "mouseup", "auxclick"]) {
    document.addEventListener(kind, (e) => { if (e.button === 3 || e.button === 4) e.preventDefault(); });
  }
  window.__ready = true;
</script>
</body></html>
"""


class PageServer:
    def __init__(self) -> None:
        self._counter = itertools.count()
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/recorder", self._recorder)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _recorder(self, request: web.Request) -> web.Response:
        return web.Response(text=RECORDER_HTML, content_type="text/html")

    def url(self, path: str = "/recorder") -> str:
        # A fresh query each time so every test gets a new document.
        return f"http://127.0.0.1:{self.port}{path}?n={next(self._counter)}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
