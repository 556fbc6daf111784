"""download_dir_zip (streamed) and upload_zip (checked as a whole, all or nothing, zip-slip/bomb proof)."""

from __future__ import annotations

import io
import os
import stat
import struct
import warnings
import zipfile
from pathlib import Path

import aiohttp
import pytest

from tests.agent.fs.conftest import FsClient, error, exists, names, sha256
from tests.conftest import AgentClient, Reply

# --- download_dir_zip ---


async def test_download_dir_zip_holds_the_tree(fs: FsClient, workdir: Path) -> None:
    tree = workdir / "tree"
    (tree / "sub" / "deeper").mkdir(parents=True)
    (tree / "empty").mkdir()
    blob = os.urandom(2 * 1024 * 1024)
    (tree / "sub" / "deeper" / "blob.bin").write_bytes(blob)
    (tree / "text.txt").write_text("hello " * 1000)
    (tree / "picture.png").write_bytes(b"\x89PNG" + os.urandom(5000))
    (tree / "ünïcode ✓.txt").write_text("names")
    (tree / "link").symlink_to("text.txt")
    (tree / "outside-link").symlink_to("/etc/hostname")
    os.chmod(tree / "text.txt", 0o600)
    os.mkfifo(tree / "fifo")  # skipped, as the reference service does (and never blocks the zip)

    reply = await fs.agent.get("/fs/download_dir_zip", params={"path": str(tree)})
    assert reply.status == 200, reply
    assert reply.headers["Content-Type"] == "application/zip"
    assert reply.headers.get("Transfer-Encoding") == "chunked"  # streamed as it is built
    assert 'filename="tree.zip"' in reply.headers["Content-Disposition"]
    archive = zipfile.ZipFile(io.BytesIO(reply.body))
    assert archive.testzip() is None
    names = sorted(archive.namelist())
    assert names == sorted(
        [
            "empty/", "sub/", "sub/deeper/", "sub/deeper/blob.bin", "text.txt", "picture.png",
            "ünïcode ✓.txt", "link", "outside-link",
        ]
    )  # fmt: skip
    assert sha256(archive.read("sub/deeper/blob.bin")) == sha256(blob)
    assert archive.read("text.txt") == (tree / "text.txt").read_bytes()
    assert archive.getinfo("text.txt").compress_type == zipfile.ZIP_DEFLATED
    assert archive.getinfo("picture.png").compress_type == zipfile.ZIP_STORED  # already compressed
    assert stat.S_IMODE(archive.getinfo("text.txt").external_attr >> 16) == 0o600
    for name, target in (("link", b"text.txt"), ("outside-link", b"/etc/hostname")):
        assert stat.S_ISLNK(archive.getinfo(name).external_attr >> 16)
        assert archive.read(name) == target  # the link, never what it points to


async def test_download_dir_zip_errors(fs: FsClient, workdir: Path) -> None:
    (workdir / "f").write_bytes(b"x")
    get = fs.agent.get
    assert "no such file" in error(await get("/fs/download_dir_zip", params={"path": f"{workdir}/nope"}), 404)
    assert "not a directory" in error(await get("/fs/download_dir_zip", params={"path": f"{workdir}/f"}), 400)
    assert "must match" in error(await get("/fs/download_dir_zip", params={"path": "rel"}), 400)


async def test_download_then_upload_zip_round_trips(fs: FsClient, workdir: Path) -> None:
    tree = workdir / "src"
    (tree / "a" / "b").mkdir(parents=True)
    (tree / "a" / "b" / "data.bin").write_bytes(os.urandom(100_000))
    (tree / "run.sh").write_bytes(b"#!/bin/sh\n")
    os.chmod(tree / "run.sh", 0o755)
    (tree / "link").symlink_to("a/b/data.bin")
    zipped = (await fs.agent.get("/fs/download_dir_zip", params={"path": str(tree)})).body
    reply = await upload_zip(fs.agent, workdir / "copy", zipped)
    assert (reply.status, reply.body) == (201, b"")
    copy = workdir / "copy"
    assert (copy / "a/b/data.bin").read_bytes() == (tree / "a/b/data.bin").read_bytes()
    assert stat.S_IMODE((copy / "run.sh").stat().st_mode) == 0o755
    assert os.readlink(copy / "link") == "a/b/data.bin"
    assert stat.S_IMODE(copy.stat().st_mode) == 0o755
    assert [n for n in names(workdir) if n.startswith(".")] == []  # no staging left behind


# --- upload_zip ---


Entry = tuple[str, bytes | None, int | None]


def make_zip(entries: list[Entry]) -> bytes:
    """(name, data or None for a directory, unix mode bits incl. file type or None)."""
    buffer = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        warnings.simplefilter("ignore")  # duplicate names are on purpose
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            if mode is not None:
                info.external_attr = mode << 16
            if data is None:
                info.external_attr |= 0x10
                archive.writestr(info, b"")
            else:
                archive.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def symlink(name: str, target: str) -> Entry:
    return name, target.encode(), stat.S_IFLNK | 0o777


async def upload_zip(agent: AgentClient, dest: Path | str, data: bytes, order: str = "dest-first") -> Reply:
    form = aiohttp.FormData()
    if order == "dest-first":
        form.add_field("dest_path", str(dest))
    form.add_field("zip_file", data, filename="archive.zip", content_type="application/zip")
    if order == "zip-first":
        form.add_field("dest_path", str(dest))
    return await agent.post("/fs/upload_zip", data=form)


async def test_upload_zip_merges_into_an_existing_directory(fs: FsClient, workdir: Path) -> None:
    dest = workdir / "dest"
    (dest / "keep").mkdir(parents=True)
    (dest / "keep" / "mine.txt").write_bytes(b"mine")
    (dest / "replace.txt").write_bytes(b"old")
    data = make_zip(
        [
            ("keep/", None, None),
            ("keep/theirs.txt", b"theirs", stat.S_IFREG | 0o640),
            ("replace.txt", b"new", None),
            ("new/deep/file.txt", b"deep", None),
            symlink("new/link", "deep/file.txt"),
        ]
    )
    for order in ("dest-first", "zip-first"):
        reply = await upload_zip(fs.agent, dest, data, order)
        assert (reply.status, reply.body) == (201, b""), reply
        assert (dest / "keep" / "mine.txt").read_bytes() == b"mine"
        assert (dest / "keep" / "theirs.txt").read_bytes() == b"theirs"
        assert stat.S_IMODE((dest / "keep" / "theirs.txt").stat().st_mode) == 0o640
        assert (dest / "replace.txt").read_bytes() == b"new"
        assert (dest / "new" / "link").read_bytes() == b"deep"
        assert names(dest) == ["keep", "new", "replace.txt"]


HOSTILE: dict[str, list[Entry]] = {
    "parent": [("ok.txt", b"fine", None), ("../evil.txt", b"x", None)],
    "deep-parent": [("ok.txt", b"fine", None), ("a/../../evil.txt", b"x", None)],
    "absolute": [("ok.txt", b"fine", None), ("/tmp/evil.txt", b"x", None)],
    "link-up": [("ok.txt", b"fine", None), symlink("up", "../../..")],
    "link-absolute": [("ok.txt", b"fine", None), symlink("etc", "/etc")],
    "through-link": [symlink("inner", "sub"), ("sub/", None, None), ("inner/evil.txt", b"x", None)],
    # Lexically inside (d1/d2/x), really outside: d1/d2/l is the destination itself, its parent is not.
    "link-chain": [("d1/d2/", None, None), symlink("d1/d2/l", "../.."), symlink("m", "d1/d2/l/../x")],
    "duplicate": [("a.txt", b"1", None), ("a.txt", b"2", None)],
    "file-then-dir": [("a", b"file", None), ("a/b.txt", b"x", None)],
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
async def test_hostile_archives_are_refused_whole(fs: FsClient, workdir: Path, case: str) -> None:
    dest = workdir / "dest"
    reply = await upload_zip(fs.agent, dest, make_zip(HOSTILE[case]))
    assert "nothing was extracted" in error(reply, 400)
    assert names(workdir) == []  # not even the destination directory, nor a staging one
    assert not (workdir.parent / "evil.txt").exists()


async def test_archive_may_not_write_through_an_existing_symlink(
    fs: FsClient, workdir: Path, fs_root: Path
) -> None:
    outside = fs_root.parent / "zip-outside"
    outside.mkdir(exist_ok=True)
    dest = workdir / "dest"
    dest.mkdir()
    (dest / "out").symlink_to(outside)
    (dest / "a.txt").write_bytes(b"before")
    attempts: list[list[Entry]] = [
        [("a.txt", b"after", None), ("out/evil.txt", b"x", None)],
        [("a.txt", b"after", None), symlink("sneaky", "out/x")],
    ]
    for entries in attempts:
        assert "nothing was extracted" in error(await upload_zip(fs.agent, dest, make_zip(entries)), 400)
    assert names(outside) == []
    assert (dest / "a.txt").read_bytes() == b"before"
    assert names(dest) == ["a.txt", "out"]


def patch_sizes(data: bytes, declared: int) -> bytes:
    """Make every entry claim `declared` uncompressed bytes (local headers and central directory)."""
    raw = bytearray(data)
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = raw.find(signature)
        while at != -1:
            struct.pack_into("<I", raw, at + offset, declared)
            at = raw.find(signature, at + 4)
    return bytes(raw)


async def test_zip_bomb_by_declared_size_is_refused(fs: FsClient, workdir: Path) -> None:
    bomb = patch_sizes(make_zip([("a.bin", b"\0" * 1000, None), ("b.bin", b"\0" * 1000, None)]), 0xF0000000)
    message = error(await upload_zip(fs.agent, workdir / "dest", bomb), 400)
    assert "more than" in message and "limit" in message
    assert names(workdir) == []


async def test_zip_whose_data_outgrows_its_declared_size_is_refused(fs: FsClient, workdir: Path) -> None:
    liar = patch_sizes(make_zip([("ok.txt", b"fine", None), ("big.bin", b"\0" * 1_000_000, None)]), 10)
    assert "nothing was extracted" in error(await upload_zip(fs.agent, workdir / "dest", liar), 400)
    assert names(workdir) == []


async def test_upload_zip_errors(fs: FsClient, workdir: Path) -> None:
    agent = fs.agent
    assert "not a valid zip" in error(await upload_zip(agent, workdir / "d", b"this is not a zip"), 400)
    (workdir / "file").write_bytes(b"x")
    good = make_zip([("a.txt", b"a", None)])
    assert "not a directory" in error(await upload_zip(agent, workdir / "file", good), 400)
    assert "absolute" in error(await upload_zip(agent, "relative/dir", good), 400)
    assert "outside" in error(await upload_zip(agent, "/tmp/agent-zip-escape", good), 403)
    assert not exists("/tmp/agent-zip-escape")
    form = aiohttp.FormData()
    form.add_field("zip_file", good, filename="a.zip")
    assert "dest_path" in error(await agent.post("/fs/upload_zip", data=form), 400)
    form = aiohttp.FormData()
    form.add_field("dest_path", str(workdir / "d"))
    form.add_field("zip_file", good, filename="a.zip")
    form.add_field("extra", "x")
    assert "extra" in error(await agent.post("/fs/upload_zip", data=form), 400)
    assert "multipart" in error(await agent.post("/fs/upload_zip", {"dest_path": "/x"}), 400)
    assert names(workdir) == ["file"]
