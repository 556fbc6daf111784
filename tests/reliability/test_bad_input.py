"""Hostile input (issue 13, item 5): each is a clear 4xx with the spec's Error body, and the agent is
healthy after. Requests that must reach the server byte for byte (dot segments, oversized heads) go over a
raw socket."""

from __future__ import annotations

import asyncio
import io
import json
import os
import zipfile
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent.sandbox import Sandbox
from tests.reliability.conftest import MAX_EXTRACT_BYTES

pytestmark = pytest.mark.timeout(120)


class Answer:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def __repr__(self) -> str:
        return f"<Answer {self.status} {self.body[:300]!r}>"


def assert_error(answer: Answer, *statuses: int) -> dict[str, Any]:
    """A 4xx (one of `statuses` if given) whose body is the spec's Error {code, message}."""
    assert 400 <= answer.status < 500, answer
    if statuses:
        assert answer.status in statuses, answer
    assert answer.headers.get("content-type", "").startswith("application/json"), answer
    error = json.loads(answer.body)
    assert isinstance(error.get("code"), str) and error["code"], answer
    assert isinstance(error.get("message"), str) and error["message"], answer
    return dict(error)


@pytest.fixture(scope="module")
async def client(rbox: Sandbox) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(
        base_url=rbox.agent_url, timeout=aiohttp.ClientTimeout(total=60)
    ) as session:
        yield session


@pytest.fixture
async def healthy_after(rbox: Sandbox, client: aiohttp.ClientSession) -> AsyncIterator[None]:
    yield
    async with client.get("/health") as response:
        assert response.status == 200, await response.text()


async def call(client: aiohttp.ClientSession, method: str, path: str, **kwargs: Any) -> Answer:
    async with client.request(method, path, **kwargs) as response:
        body = await response.read()
        return Answer(response.status, {k.lower(): v for k, v in response.headers.items()}, body)


async def raw(rbox: Sandbox, head: bytes, body: bytes = b"") -> Answer:
    """Send exactly these bytes; read one response (Connection: close is in every head sent)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", rbox.config.port)
    try:
        writer.write(head + body)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), timeout=15)
    finally:
        writer.close()
        await writer.wait_closed()
    head_part, _, rest = data.partition(b"\r\n\r\n")
    lines = head_part.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        decoded, chunks = b"", rest
        while chunks:
            size_line, _, chunks = chunks.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                break
            decoded, chunks = decoded + chunks[:size], chunks[size + 2 :]
        rest = decoded
    return Answer(status, headers, rest)


def get_head(path: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{extra}\r\n".encode("latin-1")


# --- bodies ---


@pytest.mark.usefixtures("healthy_after")
@pytest.mark.parametrize("path", ["/computer/type", "/process/exec", "/curl", "/playwright/execute"])
async def test_a_50_mb_json_body_is_413(client: aiohttp.ClientSession, path: str) -> None:
    body = b'{"text": "' + b"a" * (50 * 1024 * 1024) + b'"}'
    try:
        answer = await call(client, "POST", path, data=body, headers={"Content-Type": "application/json"})
    except aiohttp.ClientOSError:
        pytest.fail("the agent dropped the connection instead of answering 413")
    assert_error(answer, 413)


@pytest.mark.usefixtures("healthy_after")
@pytest.mark.parametrize(
    "body",
    [
        b'{"text": ' + b"[" * 200_000 + b"]" * 200_000 + b"}",
        b'{"text": ' + b'{"a": ' * 100_000 + b"1" + b"}" * 100_000 + b"}",
        b"[" * 500_000 + b"]" * 500_000,
    ],
    ids=["arrays", "objects", "bare"],
)
async def test_deeply_nested_json_is_400(client: aiohttp.ClientSession, body: bytes) -> None:
    answer = await call(
        client, "POST", "/computer/type", data=body, headers={"Content-Type": "application/json"}
    )
    assert_error(answer, 400)


@pytest.mark.usefixtures("healthy_after")
async def test_invalid_utf8_is_400(rbox: Sandbox, client: aiohttp.ClientSession) -> None:
    for path, body in [
        ("/computer/type", b'{"text": "\xff\xfe\xc3("}'),
        ("/computer/clipboard/write", b'{"text": "\xed\xa0\x80"}'),  # an encoded surrogate
        ("/process/exec", b'\xef\xbb\xbf{"command": "\x80"}'),
    ]:
        answer = await call(client, "POST", path, data=body, headers={"Content-Type": "application/json"})
        assert_error(answer, 400)
    # In a query parameter and in a path parameter.
    root = rbox.state_dir / "fs"
    assert_error(await raw(rbox, get_head(f"/fs/read_file?path={root}/%ff%fe")))
    assert_error(await raw(rbox, get_head("/process/%ff%fe/status")))


# --- zips ---


def many_entries_zip(count: int) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for i in range(count):
            archive.writestr(f"d{i % 100}/f{i}", b"x")
    return out.getvalue()


def bomb_zip(size: int, declared: int | None = None) -> bytes:
    """One entry of `size` zero bytes, deflated (~1000:1); `declared` lies about its size in the headers."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = bytes(1024 * 1024)
    parts = [compressor.compress(block) for _ in range(size // len(block))]
    parts.append(compressor.flush())
    data = b"".join(parts)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        info = zipfile.ZipInfo("zeros.bin")
        info.compress_type = zipfile.ZIP_DEFLATED
        # writestr would recompress: write the raw deflate stream through the low-level API instead.
        info.file_size = size if declared is None else declared
        info.compress_size = len(data)
        info.CRC = zlib.crc32(bytes(0)) if declared == 0 else _crc_of_zeros(size)
        info.header_offset = out.tell()
        archive.fp.write(info.FileHeader())  # type: ignore[union-attr]
        archive.fp.write(data)  # type: ignore[union-attr]
        archive.filelist.append(info)
        archive.NameToInfo[info.filename] = info
        archive.start_dir = out.tell()
    return out.getvalue()


def _crc_of_zeros(size: int) -> int:
    crc, block = 0, bytes(1024 * 1024)
    for _ in range(size // len(block)):
        crc = zlib.crc32(block, crc)
    return crc


async def upload_zip(client: aiohttp.ClientSession, archive: bytes, dest: str) -> Answer:
    form = aiohttp.FormData()
    form.add_field("zip_file", archive, filename="a.zip", content_type="application/zip")
    form.add_field("dest_path", dest)
    return await call(client, "POST", "/fs/upload_zip", data=form)


@pytest.mark.usefixtures("healthy_after")
async def test_a_zip_of_100001_tiny_entries_is_400(rbox: Sandbox, client: aiohttp.ClientSession) -> None:
    dest = rbox.state_dir / "fs" / "many"
    archive = await asyncio.to_thread(many_entries_zip, 100_001)
    error = assert_error(await upload_zip(client, archive, str(dest)), 400)
    assert "entries" in error["message"]
    assert not dest.exists() or not any(dest.iterdir())


@pytest.mark.usefixtures("healthy_after")
@pytest.mark.parametrize("lying", [False, True], ids=["declared", "lying-header"])
async def test_a_1000_to_1_zip_bomb_is_400(rbox: Sandbox, client: aiohttp.ClientSession, lying: bool) -> None:
    size = 2 * MAX_EXTRACT_BYTES
    archive = await asyncio.to_thread(bomb_zip, size, 1024 if lying else None)
    assert size / len(archive) > 900
    dest = rbox.state_dir / "fs" / ("bomb-lying" if lying else "bomb")
    assert_error(await upload_zip(client, archive, str(dest)), 400)
    assert not dest.exists() or not any(dest.iterdir())
    assert _no_big_files(rbox.state_dir / "fs")


def _no_big_files(root: Path) -> bool:
    for folder, _, files in os.walk(root):
        for name in files:
            if os.path.getsize(os.path.join(folder, name)) > 1024 * 1024:
                return False
    return True


# --- traversal ---


@pytest.fixture(scope="module")
def escape(rbox: Sandbox) -> Path:
    """`<root>/escape` -> `/etc` (a symlink inside the fs root pointing out of it)."""
    link = rbox.state_dir / "fs" / "escape"
    if not link.is_symlink():
        link.symlink_to("/etc")
    return link


def _outside_paths(root: Path, escape: Path) -> list[str]:
    return [f"{root}/../../../etc/passwd", f"{root}/%2e%2e/%2e%2e/etc/passwd", f"{escape}/passwd"]


def _encode(path: str) -> str:
    # Keep the literal `%2e%2e` the test wants to send: it must reach the agent as a query value "%2e%2e"
    # (percent-encoded again), and also once as a plain `..` after decoding (the other two forms).
    return path.replace("%", "%25")


@pytest.mark.usefixtures("healthy_after")
async def test_fs_query_paths_cannot_leave_the_root(
    rbox: Sandbox, client: aiohttp.ClientSession, escape: Path
) -> None:
    root = rbox.state_dir / "fs"
    for outside in _outside_paths(root, escape):
        for route in ("read_file", "list_files", "file_info", "download_dir_zip"):
            target = outside if route in ("read_file", "file_info") else os.path.dirname(outside)
            answer = await raw(rbox, get_head(f"/fs/{route}?path={_encode(target)}"))
            # `%2e%2e` is a name (no such directory): 404; the others resolve outside: 403.
            assert_error(answer, 403, 404)
            if "%2e" not in target:
                assert answer.status == 403, (route, target, answer)
        # %2e%2e decoded by the URL layer (sent as such in the query) is `..`: 403 as well.
        decoded = f"{root}/%2e%2e/%2e%2e/etc/passwd"
        assert_error(await raw(rbox, get_head(f"/fs/read_file?path={decoded}")), 403)
        dir_out = os.path.dirname(outside)
        if "%2e" in outside:
            continue  # in a JSON body or a form, `%2e%2e` is a plain name: nothing to decode
        json_routes: list[tuple[str, dict[str, Any]]] = [
            ("create_directory", {"path": f"{dir_out}/agent-test-dir"}),
            ("delete_file", {"path": outside}),
            ("delete_directory", {"path": f"{dir_out}/ssl"}),
            ("set_file_permissions", {"path": outside, "mode": "0777"}),
            ("move", {"src_path": outside, "dest_path": f"{root}/stolen"}),
            ("move", {"src_path": f"{root}", "dest_path": f"{dir_out}/agent-test-moved"}),
        ]
        for route, body in json_routes:
            answer = await call(client, "PUT", f"/fs/{route}", json=body)
            assert_error(answer, 400, 403, 404)
            assert answer.status in (400, 403), (route, body, answer)
        answer = await call(client, "PUT", "/fs/write_file", params={"path": outside}, data=b"x")
        assert_error(answer, 403, 404)
        answer = await call(client, "POST", "/fs/watch", json={"path": dir_out})
        assert_error(answer, 403, 404)
        form = aiohttp.FormData()
        form.add_field("files[0][dest_path]", f"{dir_out}/agent-test-upload")
        form.add_field("files[0][file]", b"x", filename="x")
        assert_error(await call(client, "POST", "/fs/upload", data=form), 400, 403, 404)
        zipped = io.BytesIO()
        with zipfile.ZipFile(zipped, "w") as archive:
            archive.writestr("agent-test-unzipped", b"x")
        assert_error(await upload_zip(client, zipped.getvalue(), dir_out), 400, 403, 404)
        answer = await raw(rbox, get_head(f"/logs/stream?source=path&follow=false&path={_encode(outside)}"))
        assert_error(answer, 403, 404)
    assert _untouched(root)


def _untouched(root: Path) -> bool:
    return (
        Path("/etc/passwd").exists()
        and not any(Path("/etc", name).exists() for name in ("agent-test-dir", "agent-test-upload"))
        and not (root / "stolen").exists()
    )


# Every path parameter of the spec, with what to put around it.
PATH_ROUTES = [
    ("GET", "/fs/watch/{}/events"),
    ("DELETE", "/fs/watch/{}"),
    ("GET", "/process/{}/status"),
    ("GET", "/process/{}/stdout/stream"),
    ("POST", "/process/{}/stdin"),
    ("POST", "/process/{}/kill"),
    ("POST", "/process/{}/resize"),
    ("GET", "/process/{}/attach"),
    ("DELETE", "/playwright/executors/{}"),
    ("GET", "/replays/{}"),
    ("POST", "/replays/{}/stop"),
]
TRAVERSALS = ["..", "%2e%2e", "..%2F..%2F..%2Fetc%2Fpasswd", "%2e%2e%2f%2e%2e%2fhealth", "a%00b"]


@pytest.mark.usefixtures("healthy_after")
@pytest.mark.parametrize(("method", "template"), PATH_ROUTES)
async def test_path_parameters_refuse_traversal(rbox: Sandbox, method: str, template: str) -> None:
    body = b'{"data": "eA==", "signal": "TERM", "rows": 10, "cols": 10}'
    for value in TRAVERSALS:
        path = template.format(value)
        sent = body if method == "POST" else b""
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(sent)}\r\n\r\n"
        ).encode()
        answer = await raw(rbox, head, sent)
        if "/replays/" in template and answer.status == 501:
            continue  # not built yet: the 501 is an Error body too
        assert_error(answer, 400, 404)


# --- headers ---


@pytest.mark.usefixtures("healthy_after")
async def test_64_kb_headers_are_431_or_400(rbox: Sandbox) -> None:
    one_big = get_head("/health", f"X-Big: {'a' * 65536}\r\n")
    many = get_head("/health", "".join(f"X-H{i}: {'b' * 60}\r\n" for i in range(1100)))
    long_line = get_head("/health?" + "q" * 65536)
    for head in (one_big, many, long_line):
        error = assert_error(await raw(rbox, head), 400, 413, 414, 431)
        assert "aaaa" not in error["message"] and "bbbb" not in error["message"]


@pytest.mark.usefixtures("healthy_after")
async def test_a_supervisor_program_name_with_control_characters_is_404(rbox: Sandbox) -> None:
    # Found by the fuzzer: GET /logs/stream?source=supervisor&supervisor_process=%F2%BC%B5%94%19%C3%BB
    # was a 500.
    for name in ("%19x", "%F2%BC%B5%94%19%C3%BB", "a%0Ab", "%00"):
        head = get_head(f"/logs/stream?source=supervisor&follow=false&supervisor_process={name}")
        assert_error(await raw(rbox, head), 404)
