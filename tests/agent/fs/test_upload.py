"""POST /fs/upload: multipart files[i][dest_path] + files[i][file], streamed; all arrive or none is."""

from __future__ import annotations

import io
import os
import stat
import zipfile
from pathlib import Path

import aiohttp
import pytest

from tests.agent.fs.conftest import FsClient, error, exists, names, sha256
from tests.conftest import Reply


async def post_form(fs: FsClient, fields: list[tuple[str, str | bytes]]) -> Reply:
    form = aiohttp.FormData()
    for name, value in fields:
        if isinstance(value, bytes):
            form.add_field(name, value, filename="blob.bin", content_type="application/octet-stream")
        else:
            form.add_field(name, value)
    return await fs.agent.post("/fs/upload", data=form)


async def test_upload_pairs_by_index_with_destinations_first(fs: FsClient, workdir: Path) -> None:
    """What the SDK sends: every dest_path part, then every file part."""
    blobs = [os.urandom(n) for n in (0, 10, 5 * 1024 * 1024 + 3)]
    dests = [workdir / "one.bin", workdir / "sub" / "dir" / "two.bin", workdir / "three.bin"]
    (workdir / "three.bin").write_bytes(b"old")
    os.chmod(workdir / "three.bin", 0o600)
    fields: list[tuple[str, str | bytes]] = [(f"files[{i}][dest_path]", str(d)) for i, d in enumerate(dests)]
    # File parts in another order than their indexes: pairing is by index.
    fields += [(f"files[{i}][file]", blobs[i]) for i in (2, 0, 1)]
    reply = await post_form(fs, fields)
    assert (reply.status, reply.body) == (201, b""), reply
    for dest, blob in zip(dests, blobs, strict=True):
        assert sha256(dest.read_bytes()) == sha256(blob)
    assert stat.S_IMODE((workdir / "one.bin").stat().st_mode) == 0o644
    assert stat.S_IMODE((workdir / "three.bin").stat().st_mode) == 0o600  # a replaced file keeps its mode
    assert [n for n in names(workdir) + names(workdir / "sub" / "dir") if n.startswith(".")] == []


async def test_upload_file_before_its_destination(fs: FsClient, workdir: Path) -> None:
    reply = await post_form(
        fs, [("files[0][file]", b"first"), ("files[0][dest_path]", f"{workdir}/late.txt")]
    )
    assert reply.status == 201, reply
    assert (workdir / "late.txt").read_bytes() == b"first"


async def test_upload_other_field_spellings(fs: FsClient, workdir: Path) -> None:
    fields: list[tuple[str, str | bytes]] = [
        ("files[][dest_path]", f"{workdir}/a"),
        ("files[][dest_path]", f"{workdir}/b"),
        ("files[][file]", b"A"),
        ("files[][file]", b"B"),
    ]
    assert (await post_form(fs, fields)).status == 201
    assert ((workdir / "a").read_bytes(), (workdir / "b").read_bytes()) == (b"A", b"B")
    assert (await post_form(fs, [("dest_path", f"{workdir}/c"), ("file", b"C")])).status == 201
    assert (workdir / "c").read_bytes() == b"C"
    assert (
        await post_form(fs, [("files[0].dest_path", f"{workdir}/d"), ("files[0].file", b"D")])
    ).status == 201
    assert (workdir / "d").read_bytes() == b"D"


async def test_a_bad_upload_replaces_nothing(fs: FsClient, workdir: Path) -> None:
    (workdir / "existing.txt").write_bytes(b"before")
    (workdir / "a-dir").mkdir()
    good: list[tuple[str, str | bytes]] = [
        ("files[0][dest_path]", f"{workdir}/existing.txt"),
        ("files[0][file]", b"after"),
    ]
    cases: list[tuple[list[tuple[str, str | bytes]], int, str]] = [
        ([*good, ("files[1][dest_path]", f"{workdir}/lonely.txt")], 400, "no file"),
        ([*good, ("files[1][file]", b"orphan")], 400, "no dest_path"),
        (
            [*good, ("files[1][dest_path]", f"{workdir}/a-dir"), ("files[1][file]", b"x")],
            400,
            "is a directory",
        ),
        ([*good, ("files[1][dest_path]", "relative.txt"), ("files[1][file]", b"x")], 400, "absolute"),
        ([*good, ("files[1][dest_path]", "/etc/agent-evil"), ("files[1][file]", b"x")], 403, "outside"),
        (
            [*good, ("files[1][dest_path]", f"{workdir}/existing.txt"), ("files[1][file]", b"x")],
            400,
            "another",
        ),
        ([*good, ("files[0][dest_path]", f"{workdir}/again.txt")], 400, "twice"),
        ([*good, ("files[1][colour]", "red")], 400, "unexpected form field"),
        ([*good, ("something", "else")], 400, "unexpected form field"),
    ]
    for fields, status, words in cases:
        assert words in error(await post_form(fs, fields), status), fields
        assert (workdir / "existing.txt").read_bytes() == b"before"
        assert names(workdir) == ["a-dir", "existing.txt"]
    assert not exists("/etc/agent-evil")
    empty = aiohttp.FormData(default_to_multipart=True)
    assert "no files" in error(await fs.agent.post("/fs/upload", data=empty), 400)
    assert "multipart" in error(await fs.agent.post("/fs/upload", {"files": []}), 400)


# --- malformed multipart bodies (built by hand: aiohttp's client never sends them) ---

BOUNDARY = "agent-test-boundary"
BAD_PART_HEADERS = {
    "no colon": b'Content-Disposition form-data; name="x"',
    "space in the name": b"Bad Name: value",
    "NUL in the value": b"X-Thing: a\x00b",
    "folded line": b" folded: value",
    "too long": b"X-Long: " + b"a" * 9000,
}


def raw_part(headers: list[bytes], content: bytes) -> bytes:
    return (
        b"--"
        + BOUNDARY.encode()
        + b"\r\n"
        + b"".join(h + b"\r\n" for h in headers)
        + b"\r\n"
        + content
        + b"\r\n"
    )


def field(name: str, content: bytes, filename: str | None = None) -> bytes:
    disposition = f'Content-Disposition: form-data; name="{name}"'
    if filename is not None:
        disposition += f'; filename="{filename}"'
    return raw_part([disposition.encode()], content)


async def post_raw(fs: FsClient, route: str, parts: list[bytes]) -> Reply:
    body = b"".join(parts) + b"--" + BOUNDARY.encode() + b"--\r\n"
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    return await fs.agent.post(route, data=body, headers=headers)


def small_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("inside.txt", b"zipped")
    return buffer.getvalue()


@pytest.mark.parametrize("case", sorted(BAD_PART_HEADERS))
async def test_a_malformed_part_header_is_a_400_and_writes_nothing(
    fs: FsClient, workdir: Path, case: str
) -> None:
    bad = raw_part([b'Content-Disposition: form-data; name="files[1][file]"', BAD_PART_HEADERS[case]], b"x")
    first, second = workdir / "first.bin", workdir / "second.bin"
    good = [
        field("files[0][dest_path]", str(first).encode()),
        field("files[1][dest_path]", str(second).encode()),
        field("files[0][file]", os.urandom(3 * 1024 * 1024), "a.bin"),  # read (and staged) before the bad one
    ]
    for parts in ([bad, *good], [*good, bad]):
        assert "malformed multipart" in error(await post_raw(fs, "/fs/upload", parts), 400)
        assert names(workdir) == []  # no file, no staging leftovers

    dest = workdir / "unzipped"
    zipped = [field("dest_path", str(dest).encode()), field("zip_file", small_zip(), "a.zip")]
    bad_zip = raw_part([b'Content-Disposition: form-data; name="zip_file"', BAD_PART_HEADERS[case]], b"x")
    for parts in ([bad_zip], [zipped[0], bad_zip], [*zipped, bad_zip]):
        assert "malformed multipart" in error(await post_raw(fs, "/fs/upload_zip", parts), 400)
        assert not exists(dest)
        assert names(workdir) == []

    # The agent is fine afterwards, and the same routes still work.
    assert (await fs.agent.get("/health")).status == 200
    assert (await post_raw(fs, "/fs/upload", [*good, field("files[1][file]", b"two", "b.bin")])).status == 201
    assert second.read_bytes() == b"two"
    assert (await post_raw(fs, "/fs/upload_zip", zipped)).status == 201
    assert (dest / "inside.txt").read_bytes() == b"zipped"
