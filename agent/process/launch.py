"""Starting children (pipes or a PTY) and the fd plumbing around them, all on the event loop.

Every child gets its own session, so its process group id is its pid and a signal to the group reaches
everything it started (unless a grandchild made a session of its own; `agent.procgroup` finds those).
A PTY child is started through `setsid --ctty`, which makes the PTY its controlling terminal before it
execs the command: TIOCSCTTY must run in the child after setsid(), and a Python `preexec_fn` (or
`pty.fork()`) is unsafe in a process that has threads, as the agent does.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import fcntl
import logging
import os
import shutil
import signal
import struct
import termios
import time
from collections.abc import Callable
from typing import Any

import psutil

from .. import identity as identity_module
from ..errors import BadRequest, Forbidden, InternalError
from ..identity import Identity, UnknownIdentity
from .models import CommandRequest, StreamName, Terminal

log = logging.getLogger(__name__)

SHELL = identity_module.DEFAULT_SHELL
DEFAULT_TERM = "xterm-256color"
# One read callback takes at most this much before letting other work run; big pipes mean big chunks.
READ_BATCH = 256 * 1024
PIPE_SIZE = 1024 * 1024


@dataclasses.dataclass(frozen=True, slots=True)
class Launch:
    """A checked command line, ready to start."""

    argv: tuple[str, ...]
    env: dict[str, str]
    cwd: str | None
    identity: Identity | None  # None: run as the agent's own user


def find_setsid() -> str | None:
    return shutil.which("setsid")


def needs_identity(req: CommandRequest) -> bool:
    return req.as_root or req.as_user is not None


def resolve_identity(req: CommandRequest) -> Identity | None:
    """The user to run as: `as_user` ("name", "uid", optionally ":group") or `as_root`; blocking (NSS)."""
    if req.as_root:
        identity = identity_module.root()
    elif req.as_user is not None:
        try:
            identity = identity_module.parse_user(req.as_user)
        except UnknownIdentity as exc:
            raise BadRequest(f"as_user: {exc}") from None
    else:
        return None
    if os.geteuid() != 0 and identity.uid != os.geteuid():
        raise Forbidden(f"the agent runs as uid {os.geteuid()} and cannot run processes as {identity.name!r}")
    return identity


def prepare(req: CommandRequest, identity: Identity | None, *, tty: bool, setsid: str | None) -> Launch:
    """Check and resolve a request: environment, executable, cwd (`identity` from `resolve_identity`).

    Only a few stat() calls on local paths (the PATH lookup, cwd): this runs on the loop, because a hop to a
    thread costs more (~0.8 ms in the agent, a third of an exec). The user lookup (NSS) is the part that can
    block, and runs in a thread.
    """
    env = dict(os.environ)
    if identity is not None:
        env.update(HOME=identity.home, USER=identity.name, LOGNAME=identity.name, SHELL=identity.shell)
    if tty:
        env["TERM"] = DEFAULT_TERM
    env.update(req.env)
    # `command` with args runs directly; `command` alone is a shell command line ("executable or shell
    # command", as the spec puts it).
    argv = [req.command, *req.args] if req.args else [SHELL, "-c", req.command]
    argv[0] = _executable(argv[0], env.get("PATH", os.defpath))
    if req.cwd is not None and not os.path.isdir(req.cwd):
        raise BadRequest(f"cwd {req.cwd!r} is not a directory")
    if tty:
        if setsid is None:
            raise InternalError("setsid(1) from util-linux is missing; a PTY cannot be allocated")
        argv = [setsid, "--ctty", *argv]
    return Launch(tuple(argv), env, req.cwd, identity)


def _executable(name: str, path: str) -> str:
    if "/" in name:
        if not os.path.isfile(name):
            raise BadRequest(f"command not found: {name!r}")
        if not os.access(name, os.X_OK):
            raise BadRequest(f"command is not executable: {name!r}")
        return name
    found = shutil.which(name, path=path)
    if found is None:
        raise BadRequest(f"command not found: {name!r} (searched PATH={path})")
    return found


# --- starting --------------------------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class Child:
    """A started child and the agent's ends of its stdio (non-blocking fds)."""

    process: asyncio.subprocess.Process
    outputs: dict[StreamName, int]  # read ends (a PTY has only "stdout": its master)
    stdin: int | None  # pipe write end or PTY master; None when stdin is /dev/null
    master: int | None

    @property
    def pid(self) -> int:
        return self.process.pid


def set_winsize(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _pipe(big: bool) -> tuple[int, int]:
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    if big:
        # Fewer, larger reads; best effort (an unprivileged agent may be over its pipe-buffer quota).
        with contextlib.suppress(OSError):
            fcntl.fcntl(read_end, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    return read_end, write_end


async def start(launch: Launch, *, stdin_pipe: bool, tty: Terminal | None) -> Child:
    """Start the child in its own session; the child's ends of its fds are closed here."""
    ours: list[int] = []
    theirs: list[int] = []
    kwargs: dict[str, Any] = {}
    if launch.identity is not None:
        ident = launch.identity
        kwargs.update(user=ident.uid, group=ident.gid, extra_groups=list(ident.groups))
    try:
        if tty is not None:
            master, slave = os.openpty()
            ours.append(master)
            theirs.append(slave)
            set_winsize(master, tty.rows, tty.cols)
            if launch.identity is not None:
                with contextlib.suppress(OSError):
                    os.fchown(slave, launch.identity.uid, -1)
            os.set_blocking(master, False)
            stdio: dict[str, Any] = {"stdin": slave, "stdout": slave, "stderr": slave}
            outputs: dict[StreamName, int] = {"stdout": master}
            stdin_fd: int | None = master
        else:
            master = None
            out_r, out_w = _pipe(big=True)
            err_r, err_w = _pipe(big=False)
            ours += [out_r, err_r]
            theirs += [out_w, err_w]
            stdio = {"stdout": out_w, "stderr": err_w, "stdin": asyncio.subprocess.DEVNULL}
            stdin_fd = None
            if stdin_pipe:
                in_r, in_w = _pipe(big=False)
                ours.append(in_w)
                theirs.append(in_r)
                stdio["stdin"] = in_r
                stdin_fd = in_w
            for fd in ours:
                os.set_blocking(fd, False)
            outputs = {"stdout": out_r, "stderr": err_r}
            # `setsid --ctty` makes the session for a PTY child; a pipe child gets one here.
            kwargs["start_new_session"] = True
        try:
            program, *args = launch.argv
            process = await asyncio.create_subprocess_exec(
                program, *args, cwd=launch.cwd, env=launch.env, close_fds=True, **stdio, **kwargs
            )
        except OSError as exc:
            if exc.errno in _CANNOT_EXECUTE:
                # The command is not something this user can execute: the request's mistake.
                raise BadRequest(f"cannot start {launch.argv[0]!r}: {exc.strerror}") from None
            raise InternalError(f"cannot start {launch.argv[0]!r}: {exc}") from None
    except BaseException:
        for fd in ours:
            os.close(fd)
        raise
    finally:
        for fd in theirs:
            os.close(fd)
    return Child(process, outputs, stdin_fd, master)


_CANNOT_EXECUTE = frozenset(
    {
        errno.ENOENT,
        errno.ENOEXEC,
        errno.EACCES,
        errno.EPERM,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.ELOOP,
        errno.E2BIG,
    }
)


def exit_code_of(returncode: int) -> int:
    """A shell's convention: a child killed by signal N reports 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


# --- reading and writing without blocking the loop ------------------------------------------------------


class FdReader:
    """Reads a non-blocking fd whenever it is readable and hands each batch to `sink`, until EOF.

    A PTY master reports the end (every slave fd closed) as EIO, a pipe as an empty read.
    """

    def __init__(self, fd: int, sink: Callable[[bytes], None], on_eof: Callable[[], None]) -> None:
        self.fd = fd
        self._sink = sink
        self._on_eof = on_eof
        self._loop = asyncio.get_running_loop()
        self.active = True
        self._loop.add_reader(fd, self._readable)

    def _readable(self) -> None:
        parts: list[bytes] = []
        total = 0
        eof = False
        while total < READ_BATCH:
            try:
                data = os.read(self.fd, READ_BATCH)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno != errno.EIO:
                    log.warning("reading fd %d failed: %s", self.fd, exc)
                eof = True
                break
            if not data:
                eof = True
                break
            parts.append(data)
            total += len(data)
        if parts:
            try:
                self._sink(parts[0] if len(parts) == 1 else b"".join(parts))
            except Exception:
                log.exception("output sink failed")
        if eof:
            self.stop()
            self._on_eof()

    def stop(self) -> None:
        """Stop watching the fd (it stays open; the owner closes it)."""
        if self.active:
            self.active = False
            self._loop.remove_reader(self.fd)


class Closed(Exception):
    """The fd was closed while a write waited for room."""


# --- the process tree -----------------------------------------------------------------------------------


def tree_usage(pid: int) -> tuple[float, float, int]:
    """(when, CPU seconds used so far, RSS) of the tree under `pid`, reaped children included; blocking."""
    when = time.monotonic()
    try:
        root = psutil.Process(pid)
        members = [root, *root.children(recursive=True)]
    except psutil.Error:
        return when, 0.0, 0
    cpu = 0.0
    rss = 0
    for proc in members:
        try:
            with proc.oneshot():
                times = proc.cpu_times()
                # A child's time moves into its parent's children_* when it is reaped: nothing is counted
                # twice and nothing is lost while the tree stays connected.
                cpu += times.user + times.system + times.children_user + times.children_system
                rss += proc.memory_info().rss
        except psutil.Error:
            continue
    return when, cpu, rss


SIGNALS: dict[str, int] = {
    "TERM": signal.SIGTERM,
    "KILL": signal.SIGKILL,
    "INT": signal.SIGINT,
    "HUP": signal.SIGHUP,
}
