"""read_file, write_file, list_files, file_info, create/delete, permissions and move against real files."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import grp
import os
import pwd
import stat
from pathlib import Path

import pytest

from agent.sandbox import Sandbox
from tests.agent.fs.conftest import FsClient, error, exists, matches, names, sha256

# --- read_file / write_file ---


async def test_write_then_read_round_trips_bytes(fs: FsClient, workdir: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    target = workdir / "blob.bin"
    reply = await fs.write(target, data)
    assert reply.status == 201, reply
    assert reply.body == b""
    assert sha256(target.read_bytes()) == sha256(data)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644  # the spec's default
    read = await fs.read(target)
    assert read.status == 200, read
    assert read.headers["Content-Type"] == "application/octet-stream"
    assert int(read.headers["Content-Length"]) == len(data)
    assert sha256(read.body) == sha256(data)


async def test_empty_file_round_trips(fs: FsClient, workdir: Path) -> None:
    assert (await fs.write(workdir / "empty", b"")).status == 201
    read = await fs.read(workdir / "empty")
    assert (read.status, read.body, read.headers["Content-Length"]) == (200, b"", "0")


async def test_write_applies_mode_and_creates_parents(fs: FsClient, workdir: Path) -> None:
    target = workdir / "a" / "b" / "script.sh"
    assert (await fs.write(target, b"#!/bin/sh\n", mode="755")).status == 201
    assert stat.S_IMODE(target.stat().st_mode) == 0o755
    assert target.parent.is_dir() and stat.S_IMODE(target.parent.stat().st_mode) == 0o755


async def test_rewrite_replaces_content_and_keeps_mode_unless_given(fs: FsClient, workdir: Path) -> None:
    target = workdir / "f"
    await fs.write(target, b"one", mode="600")
    assert (await fs.write(target, b"two")).status == 201
    assert target.read_bytes() == b"two"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert (await fs.write(target, b"three", mode="640")).status == 201
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert names(workdir) == ["f"]  # no temp file left beside it


async def test_write_follows_a_symlink_inside_the_root(fs: FsClient, workdir: Path) -> None:
    (workdir / "real.txt").write_bytes(b"old")
    (workdir / "link.txt").symlink_to("real.txt")
    assert (await fs.write(workdir / "link.txt", b"new")).status == 201
    assert (workdir / "link.txt").is_symlink()
    assert (workdir / "real.txt").read_bytes() == b"new"


async def test_abandoned_upload_leaves_the_old_file_and_no_temp_file(
    fs: FsClient, workdir: Path, sandbox: Sandbox
) -> None:
    target = workdir / "keep.txt"
    target.write_bytes(b"original")
    host, port = sandbox.agent_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    head = (
        f"PUT /fs/write_file?path={target} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        "Content-Type: application/octet-stream\r\n"
        "Content-Length: 50000000\r\n\r\n"
    )
    writer.write(head.encode() + b"x" * 6_000_000)  # more than one block: the temp file exists meanwhile
    await writer.drain()
    for _ in range(200):
        if any(name.endswith(".part") for name in names(workdir)):
            break
        await asyncio.sleep(0.02)
    writer.close()  # the client dies half-way
    reader.feed_eof()
    for _ in range(250):
        if names(workdir) == ["keep.txt"]:
            break
        await asyncio.sleep(0.02)
    assert names(workdir) == ["keep.txt"]
    assert target.read_bytes() == b"original"
    read = await fs.read(target)
    assert read.body == b"original"


async def test_read_errors(fs: FsClient, workdir: Path) -> None:
    assert "no such file" in error(await fs.read(workdir / "missing"), 404)
    assert "is a directory" in error(await fs.read(workdir), 400)
    os.mkfifo(workdir / "fifo")
    assert "not a regular file" in error(await fs.read(workdir / "fifo"), 400)  # and it does not hang
    assert "must match" in error(await fs.read("relative/path"), 400)
    assert "outside" in error(await fs.read("/etc/hostname"), 403)


async def test_write_errors(fs: FsClient, workdir: Path) -> None:
    (workdir / "file").write_bytes(b"x")
    assert "is a directory" in error(await fs.write(workdir, b"x"), 400)
    assert "not a directory" in error(await fs.write(workdir / "file" / "below", b"x"), 400)
    assert "must match" in error(await fs.write(workdir / "f", b"x", mode="999"), 400)
    assert "outside" in error(await fs.write("/tmp/agent-fs-escape.txt", b"x"), 403)
    assert not exists("/tmp/agent-fs-escape.txt")


async def test_every_way_out_of_the_root_is_403(fs: FsClient, workdir: Path, fs_root: Path) -> None:
    outside = fs_root.parent / "outside-the-root"
    outside.mkdir(exist_ok=True)
    (outside / "secret").write_bytes(b"secret")
    (workdir / "escape").symlink_to(outside)
    (workdir / "secret-link").symlink_to(outside / "secret")
    dotdot = f"{workdir}/../../outside-the-root/secret"
    for path in (dotdot, workdir / "escape" / "secret", workdir / "secret-link", outside / "secret"):
        assert "outside" in error(await fs.read(path), 403)
        assert "outside" in error(await fs.info(path), 403)
        assert "outside" in error(await fs.write(path, b"pwned"), 403)
        assert "outside" in error(
            await fs.put("/fs/set_file_permissions", {"path": str(path), "mode": "777"}), 403
        )
    assert "outside" in error(await fs.list(workdir / "escape"), 403)
    assert "outside" in error(await fs.put("/fs/create_directory", {"path": f"{workdir}/escape/new"}), 403)
    assert "outside" in error(await fs.put("/fs/delete_file", {"path": str(outside / "secret")}), 403)
    (outside / "sub").mkdir(exist_ok=True)
    assert "outside" in error(await fs.put("/fs/delete_directory", {"path": f"{workdir}/escape/sub"}), 403)
    assert "outside" in error(await fs.put("/fs/delete_directory", {"path": f"{workdir}/escape/."}), 403)
    move = {"src_path": str(workdir / "secret-link"), "dest_path": f"{workdir}/escape/moved"}
    assert "outside" in error(await fs.put("/fs/move", move), 403)
    move = {"src_path": str(outside / "secret"), "dest_path": str(workdir / "stolen")}
    assert "outside" in error(await fs.put("/fs/move", move), 403)
    assert "outside" in error(await fs.agent.get("/fs/download_dir_zip", params={"path": str(outside)}), 403)
    assert "outside" in error(await fs.agent.post("/fs/watch", {"path": str(outside)}), 403)
    assert (outside / "secret").read_bytes() == b"secret"
    assert names(outside) == ["secret", "sub"]
    # The links themselves live inside the root: deleting one removes the link, not its target.
    assert (await fs.put("/fs/delete_file", {"path": str(workdir / "secret-link")})).status == 200
    assert (outside / "secret").exists()


# --- list_files / file_info ---


async def test_list_files_is_one_level_with_spec_file_infos(fs: FsClient, workdir: Path) -> None:
    (workdir / "b.txt").write_bytes(b"12345")
    os.chmod(workdir / "b.txt", 0o640)
    (workdir / "a-dir").mkdir()
    (workdir / "a-dir" / "deeper.txt").write_bytes(b"x")
    (workdir / "c-link").symlink_to("b.txt")
    reply = await fs.list(workdir)
    assert reply.status == 200, reply
    listing = matches("ListFiles", reply.json())
    by_name = {entry["name"]: entry for entry in listing}
    assert list(by_name) == ["a-dir", "b.txt", "c-link"]
    assert by_name["b.txt"] | {"mod_time": None} == {
        "name": "b.txt",
        "path": f"{workdir}/b.txt",
        "size_bytes": 5,
        "is_dir": False,
        "mod_time": None,
        "mode": "-rw-r-----",
    }
    assert by_name["a-dir"]["is_dir"] is True and by_name["a-dir"]["size_bytes"] == 0
    assert by_name["a-dir"]["mode"] == "drwxr-xr-x"
    assert by_name["c-link"]["mode"].startswith("l")
    mod_time = datetime.datetime.fromisoformat(by_name["b.txt"]["mod_time"])
    assert abs(mod_time.timestamp() - (workdir / "b.txt").stat().st_mtime) < 0.001


async def test_list_files_errors(fs: FsClient, workdir: Path) -> None:
    (workdir / "file").write_bytes(b"x")
    assert "not a directory" in error(await fs.list(workdir / "file"), 400)
    assert "no such file" in error(await fs.list(workdir / "missing"), 404)
    assert matches("ListFiles", (await fs.list(workdir)).json())[0]["name"] == "file"


async def test_file_info_of_file_and_directory(fs: FsClient, workdir: Path) -> None:
    (workdir / "f.bin").write_bytes(b"x" * 1000)
    info = matches("FileInfo", (await fs.info(workdir / "f.bin")).json())
    assert (info["name"], info["path"], info["size_bytes"], info["is_dir"], info["mode"]) == (
        "f.bin", f"{workdir}/f.bin", 1000, False, "-rw-r--r--",
    )  # fmt: skip
    info = matches("FileInfo", (await fs.info(workdir)).json())
    assert (info["name"], info["is_dir"], info["size_bytes"]) == (workdir.name, True, 0)
    assert "no such file" in error(await fs.info(workdir / "nope"), 404)


# --- create_directory / delete_file / delete_directory ---


async def test_create_directory_is_recursive_with_mode(fs: FsClient, workdir: Path) -> None:
    reply = await fs.put("/fs/create_directory", {"path": f"{workdir}/x/y/z", "mode": "700"})
    assert (reply.status, reply.body) == (201, b"")
    for directory in (workdir / "x", workdir / "x/y", workdir / "x/y/z"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert (await fs.put("/fs/create_directory", {"path": f"{workdir}/plain"})).status == 201
    assert stat.S_IMODE((workdir / "plain").stat().st_mode) == 0o755
    # Existing directory: fine, left as it is.
    assert (await fs.put("/fs/create_directory", {"path": f"{workdir}/x", "mode": "755"})).status == 201
    assert stat.S_IMODE((workdir / "x").stat().st_mode) == 0o700


async def test_create_directory_errors(fs: FsClient, workdir: Path) -> None:
    (workdir / "file").write_bytes(b"x")
    assert "not a directory" in error(await fs.put("/fs/create_directory", {"path": f"{workdir}/file"}), 400)
    assert "not a directory" in error(
        await fs.put("/fs/create_directory", {"path": f"{workdir}/file/sub"}), 400
    )
    assert "must match" in error(await fs.put("/fs/create_directory", {"path": "rel"}), 400)
    assert "unknown field" in error(
        await fs.put("/fs/create_directory", {"path": "/x", "recursive": True}), 400
    )


async def test_delete_file(fs: FsClient, workdir: Path) -> None:
    (workdir / "f").write_bytes(b"x")
    (workdir / "d").mkdir()
    (workdir / "dlink").symlink_to("d")
    reply = await fs.put("/fs/delete_file", {"path": f"{workdir}/f"})
    assert (reply.status, reply.body) == (200, b"")
    assert not (workdir / "f").exists()
    assert "no such file" in error(await fs.put("/fs/delete_file", {"path": f"{workdir}/f"}), 404)
    assert "is a directory" in error(await fs.put("/fs/delete_file", {"path": f"{workdir}/d"}), 400)
    assert (await fs.put("/fs/delete_file", {"path": f"{workdir}/dlink"})).status == 200
    assert (workdir / "d").is_dir() and not (workdir / "dlink").exists()


async def test_delete_directory_is_recursive(fs: FsClient, workdir: Path, fs_root: Path) -> None:
    tree = workdir / "tree"
    (tree / "a" / "b").mkdir(parents=True)
    (tree / "a" / "b" / "f").write_bytes(b"x")
    (tree / "link").symlink_to(fs_root.parent)  # a link is removed, never followed
    (workdir / "file").write_bytes(b"x")
    reply = await fs.put("/fs/delete_directory", {"path": str(tree)})
    assert (reply.status, reply.body) == (200, b"")
    assert not tree.exists() and fs_root.parent.is_dir()
    assert "no such file" in error(await fs.put("/fs/delete_directory", {"path": str(tree)}), 404)
    assert "not a directory" in error(await fs.put("/fs/delete_directory", {"path": f"{workdir}/file"}), 400)
    assert "root" in error(await fs.put("/fs/delete_directory", {"path": str(fs_root)}), 403)
    assert exists(fs_root)


# --- set_file_permissions ---


async def test_set_file_permissions_mode_owner_group(fs: FsClient, workdir: Path) -> None:
    target = workdir / "f"
    target.write_bytes(b"x")
    reply = await fs.put("/fs/set_file_permissions", {"path": str(target), "mode": "604"})
    assert (reply.status, reply.body) == (200, b"")
    assert stat.S_IMODE(target.stat().st_mode) == 0o604
    nobody = pwd.getpwnam("nobody")
    group = grp.getgrgid(nobody.pw_gid)
    body = {"path": str(target), "mode": "640", "owner": "nobody", "group": group.gr_name}
    assert (await fs.put("/fs/set_file_permissions", body)).status == 200
    st = target.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (nobody.pw_uid, nobody.pw_gid, 0o640)
    body = {"path": str(target), "mode": "600", "owner": "0", "group": "0"}
    assert (await fs.put("/fs/set_file_permissions", body)).status == 200
    st = target.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o600)


async def test_set_file_permissions_errors(fs: FsClient, workdir: Path) -> None:
    (workdir / "f").write_bytes(b"x")
    body = {"path": f"{workdir}/f", "mode": "600", "owner": "no-such-user-here"}
    assert "no such user" in error(await fs.put("/fs/set_file_permissions", body), 400)
    body = {"path": f"{workdir}/f", "mode": "600", "group": "no-such-group-here"}
    assert "no such group" in error(await fs.put("/fs/set_file_permissions", body), 400)
    assert "no such file" in error(
        await fs.put("/fs/set_file_permissions", {"path": f"{workdir}/missing", "mode": "600"}), 404
    )
    assert "missing required field" in error(await fs.put("/fs/set_file_permissions", {"path": "/x"}), 400)
    assert "must match" in error(await fs.put("/fs/set_file_permissions", {"path": "/x", "mode": "rwx"}), 400)


# --- move ---


async def test_move_renames_files_and_directories(fs: FsClient, workdir: Path) -> None:
    (workdir / "f").write_bytes(b"content")
    reply = await fs.put("/fs/move", {"src_path": f"{workdir}/f", "dest_path": f"{workdir}/new/dir/g"})
    assert (reply.status, reply.body) == (200, b"")
    assert (workdir / "new/dir/g").read_bytes() == b"content" and not (workdir / "f").exists()
    (workdir / "tree" / "sub").mkdir(parents=True)
    (workdir / "tree" / "sub" / "x").write_bytes(b"x")
    assert (
        await fs.put("/fs/move", {"src_path": f"{workdir}/tree", "dest_path": f"{workdir}/moved"})
    ).status == 200
    assert (workdir / "moved/sub/x").read_bytes() == b"x"
    # Over an existing file: replaced, as rename(2) and the reference service do.
    (workdir / "a").write_bytes(b"a")
    (workdir / "b").write_bytes(b"b")
    assert (await fs.put("/fs/move", {"src_path": f"{workdir}/a", "dest_path": f"{workdir}/b"})).status == 200
    assert (workdir / "b").read_bytes() == b"a"


async def test_move_errors(fs: FsClient, workdir: Path, fs_root: Path) -> None:
    (workdir / "dir" / "sub").mkdir(parents=True)
    (workdir / "full" / "x").mkdir(parents=True)
    (workdir / "f").write_bytes(b"x")
    move = {"src_path": f"{workdir}/missing", "dest_path": f"{workdir}/x"}
    assert "no such file" in error(await fs.put("/fs/move", move), 404)
    move = {"src_path": f"{workdir}/dir", "dest_path": f"{workdir}/dir/sub/inside"}
    assert "into itself" in error(await fs.put("/fs/move", move), 400)
    move = {"src_path": f"{workdir}/dir", "dest_path": f"{workdir}/full"}
    error(await fs.put("/fs/move", move), 400)  # a non-empty directory is not replaced
    move = {"src_path": f"{workdir}/f", "dest_path": f"{workdir}/full"}
    assert "is a directory" in error(await fs.put("/fs/move", move), 400)
    move = {"src_path": str(fs_root), "dest_path": f"{workdir}/root"}
    assert "root" in error(await fs.put("/fs/move", move), 403)
    assert "missing required field" in error(await fs.put("/fs/move", {"src_path": "/a"}), 400)
    assert (workdir / "f").read_bytes() == b"x" and (workdir / "full" / "x").is_dir()


@pytest.mark.parametrize("route", ["/fs/delete_file", "/fs/delete_directory", "/fs/create_directory"])
async def test_relative_paths_are_400(fs: FsClient, route: str) -> None:
    assert "must match" in error(await fs.put(route, {"path": "relative/x"}), 400)


async def test_large_writes_go_around_the_parser_and_close_the_connection(
    fs: FsClient, workdir: Path, sandbox: Sandbox
) -> None:
    """Bodies of 1 MiB and more move from the socket into the file by splice(2): same bytes, and the
    connection is closed after the answer (the server's parser never saw the body)."""
    data = os.urandom(3 * 1024 * 1024 + 17)
    for round_ in range(3):  # the client's pooled connection must not be reused after a spliced write
        reply = await fs.write(workdir / f"big{round_}.bin", data, mode="600")
        assert reply.status == 201, reply
        assert reply.headers.get("Connection", "").lower() == "close"
        assert (workdir / f"big{round_}.bin").read_bytes() == data
        assert (await fs.info(workdir / f"big{round_}.bin")).json()["mode"] == "-rw-------"
    assert sorted(names(workdir)) == ["big0.bin", "big1.bin", "big2.bin"]  # no temp file left
    # Path and mode problems are still answered as such (before the body is taken over).
    assert "outside" in error(await fs.write("/etc/agent-test.bin", data), 403)
    assert "must match" in error(await fs.write(workdir / "m.bin", data, mode="99"), 400)
    assert "is a directory" in error(await fs.write(workdir, data), 400)
    assert sorted(names(workdir)) == ["big0.bin", "big1.bin", "big2.bin"]


async def test_a_large_write_allocates_its_whole_length_before_the_body_arrives(
    fs: FsClient, workdir: Path, sandbox: Sandbox
) -> None:
    """A spliced body's blocks are fallocate(2)d up front (the faster write, and a full disk fails before
    the body is read); an abandoned upload still leaves nothing behind."""
    length = 32 * 1024 * 1024
    host, port = sandbox.agent_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    head = (
        f"PUT /fs/write_file?path={workdir / 'big.bin'} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {length}\r\n\r\n"
    )
    writer.write(head.encode() + b"x" * (2 * 1024 * 1024))
    await writer.drain()
    allocated = 0
    for _ in range(250):
        temps = [name for name in names(workdir) if name.endswith(".part")]
        if temps:
            with contextlib.suppress(FileNotFoundError):
                allocated = (workdir / temps[0]).stat().st_blocks * 512
            if allocated >= length:
                break
        await asyncio.sleep(0.02)
    writer.close()
    reader.feed_eof()
    assert allocated >= length, f"{allocated} bytes allocated with 2 MiB of {length} sent"
    for _ in range(250):
        if not names(workdir):
            break
        await asyncio.sleep(0.02)
    assert names(workdir) == []
