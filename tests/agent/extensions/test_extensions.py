"""POST /extensions against a sandbox of this module's own (installing restarts its Chromium).

The test extension is built here: an MV3 manifest with a content script that retitles every page and a
service worker (whose target the agent waits for), zipped in memory.
"""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

from agent.sandbox import Sandbox
from agent.supervisor_rpc import Supervisor
from harness.sandboxes import private_sandbox
from tests.helpers.echo_server import EchoServer
from tests.helpers.sdk import SESSION_ID, sdk_client


def extension_zip(title: str, *, top_folder: str = "", manifest: dict[str, Any] | None = None) -> bytes:
    manifest = manifest or {
        "manifest_version": 3,
        "name": f"retitle {title}",
        "version": "1.0",
        "background": {"service_worker": "worker.js"},
        "content_scripts": [{"matches": ["<all_urls>"], "js": ["content.js"], "run_at": "document_idle"}],
    }
    files = {
        "manifest.json": json.dumps(manifest),
        "content.js": f"document.title = {json.dumps(title)};",
        "worker.js": "self.addEventListener('install', () => {});",
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(f"{top_folder}/{name}" if top_folder else name, text)
    return buffer.getvalue()


def no_manifest_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("content.js", "document.title = 'never';")
    return buffer.getvalue()


def form(*extensions: tuple[str, bytes]) -> aiohttp.FormData:
    """The multipart body as the SDK sends it: every name first, then every archive."""
    data = aiohttp.FormData()
    for name, _ in extensions:
        data.add_field("extensions[][name]", name)
    for name, body in extensions:
        data.add_field("extensions[][zip_file]", body, filename=f"{name}.zip", content_type="application/zip")
    return data


@pytest.fixture(scope="module")
def box() -> Iterator[Sandbox]:
    with private_sandbox("agent-test-extensions-") as sandbox:
        yield sandbox


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        yield session


async def upload(
    http: aiohttp.ClientSession, box: Sandbox, data: aiohttp.FormData | aiohttp.MultipartWriter
) -> tuple[int, dict[str, Any]]:
    async with http.post(box.agent_url + "/extensions", data=data) as response:
        body = await response.read()
        return response.status, json.loads(body) if body else {}


async def chromium_pid(box: Sandbox) -> int:
    return (await Supervisor(box.config.supervisor_socket).program("chromium")).pid


async def page_title(http: aiohttp.ClientSession, box: Sandbox, url: str, expect_prefix: str) -> str:
    # The content script runs at document_idle: wait (briefly) for its title, then say what the page has.
    code = (
        f"await page.goto({json.dumps(url)});"
        f"await page.waitForFunction(p => document.title.startsWith(p), {json.dumps(expect_prefix)},"
        " {timeout: 5000}).catch(() => {});"
        "return await page.title();"
    )
    async with http.post(box.agent_url + "/playwright/execute", json={"code": code}) as response:
        reply = await response.json()
    assert response.status == 200 and reply["success"] is True, reply
    title: str = reply["result"]
    return title


async def installed(http: aiohttp.ClientSession, box: Sandbox) -> list[str]:
    async with http.get(box.agent_url + "/health") as response:
        report = await response.json()
    names: list[str] = report["extensions"]["installed"]
    return names


async def extension_targets(http: aiohttp.ClientSession, box: Sandbox) -> list[str]:
    async with http.get(box.cdp_url + "/json/list") as response:
        targets = await response.json()
    return [t["url"] for t in targets if t["url"].startswith("chrome-extension://")]


async def cdp_generation(http: aiohttp.ClientSession, box: Sandbox) -> int:
    async with http.get(box.agent_url + "/health") as response:
        cdp = (await response.json()).get("cdp", {})
        return int(cdp["generation"]) if response.status == 200 and cdp.get("connected") else 0


async def wait_for_generation(http: aiohttp.ClientSession, box: Sandbox, above: int) -> None:
    for _ in range(300):
        if await cdp_generation(http, box) > above:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the agent never reconnected to Chromium")


async def test_an_extension_is_loaded_replaced_and_survives_restarts(
    box: Sandbox, http: aiohttp.ClientSession, echo_server: EchoServer
) -> None:
    url = echo_server.url("/page?title=plain")
    assert await page_title(http, box, url, "ext:") == "plain"
    pid = await chromium_pid(box)

    status, body = await upload(http, box, form(("retitle", extension_zip("ext: one", top_folder="build"))))
    assert status == 201, body
    # The answer came after the restart, with the extension's service worker already listed.
    assert await chromium_pid(box) != pid
    assert any(u.endswith("/worker.js") for u in await extension_targets(http, box))
    assert await installed(http, box) == ["retitle"]
    assert await page_title(http, box, url, "ext:") == "ext: one"

    # The same name again replaces it.
    status, body = await upload(http, box, form(("retitle", extension_zip("ext: two"))))
    assert status == 201, body
    assert await installed(http, box) == ["retitle"]
    assert await page_title(http, box, url, "ext:") == "ext: two"

    # Loaded on every start of Chromium, not only the one after the upload.
    generation = await cdp_generation(http, box)
    output = box.supervisorctl("restart", "chromium")
    assert "started" in output, output
    await wait_for_generation(http, box, above=generation)
    assert await page_title(http, box, url, "ext:") == "ext: two"


@pytest.mark.parametrize(
    ("archive", "message"),
    [
        (no_manifest_zip(), "no manifest.json at its root or in its one top folder"),
        (b"this is not a zip", "not a valid zip archive"),
        # Chromium would stop its start-up at a dialog for this one: it is refused before any restart.
        (extension_zip("x", manifest={"manifest_version": 3, "version": "1"}), "Chromium cannot load it"),
    ],
    ids=["no-manifest", "not-a-zip", "manifest-chromium-refuses"],
)
async def test_a_bad_archive_is_400_and_nothing_changes(
    box: Sandbox, http: aiohttp.ClientSession, archive: bytes, message: str
) -> None:
    before = await installed(http, box)
    pid = await chromium_pid(box)
    good = extension_zip("ext: good")
    status, body = await upload(http, box, form(("good-one", good), ("broken", archive)))
    assert status == 400, body
    assert body["code"] == "bad_request" and message in body["message"] and "'broken'" in body["message"]
    assert await chromium_pid(box) == pid  # Chromium was not restarted
    assert await installed(http, box) == before  # not even the good one of the same request
    assert not (box.state_dir / "extensions" / "good-one").exists()
    assert not list(box.state_dir.glob(".extensions-incoming-*"))  # no staging left behind


NAME, ZIP = "extensions[][name]", "extensions[][zip_file]"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ([(NAME, "a/b"), (ZIP, b"x")], "must match ^[a-zA-Z0-9._-]{1,255}$"),
        ([(NAME, ".."), (ZIP, b"x")], "is not a folder name"),
        ([(NAME, "a"), (NAME, "b"), (ZIP, b"x")], "every extension needs a name and a zip_file"),
        ([(NAME, "a"), (NAME, "a"), (ZIP, b"x"), (ZIP, b"y")], "more than once"),
        ([("files[0][file]", b"x")], "unexpected form field"),
        ([], "missing required field: extensions"),
    ],
    ids=["pattern", "dot-dot", "unpaired", "duplicate", "foreign-field", "empty"],
)  # fmt: skip
async def test_a_malformed_form_is_400(
    box: Sandbox, http: aiohttp.ClientSession, fields: list[tuple[str, str | bytes]], message: str
) -> None:
    pid = await chromium_pid(box)
    writer = aiohttp.MultipartWriter("form-data")
    for name, value in fields:
        part = writer.append(value)
        if isinstance(value, bytes):
            part.set_content_disposition("form-data", name=name, filename="x.zip")
        else:
            part.set_content_disposition("form-data", name=name)
    status, body = await upload(http, box, writer)
    assert status == 400, body
    assert body["code"] == "bad_request" and message in body["message"], body
    assert await chromium_pid(box) == pid


async def test_the_sdk_loads_extensions(box: Sandbox, echo_server: EchoServer) -> None:
    client, transport = sdk_client(box.agent_url)
    async with client:
        await client.browsers.load_extensions(
            SESSION_ID,
            extensions=[
                {
                    "name": "from-sdk",
                    "zip_file": ("from-sdk.zip", extension_zip("ext: sdk"), "application/zip"),
                }
            ],
        )
    assert ("POST", "/extensions", 201) in transport.seen
    async with aiohttp.ClientSession() as http:
        assert "from-sdk" in await installed(http, box)


async def test_concurrent_uploads_run_one_after_the_other(
    box: Sandbox, http: aiohttp.ClientSession, echo_server: EchoServer
) -> None:
    first, second = await asyncio.gather(
        upload(http, box, form(("first", extension_zip("ext: first")))),
        upload(http, box, form(("second", extension_zip("ext: second")))),
    )
    assert first[0] == 201 and second[0] == 201, (first, second)
    names = await installed(http, box)
    assert "first" in names and "second" in names
    async with http.get(box.agent_url + "/health") as response:
        report = (await response.json())["extensions"]
    assert report["installing"] is False
