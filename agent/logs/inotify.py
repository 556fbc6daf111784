"""One inotify instance for every log stream, read on the event loop (no thread, no polling, no debounce).

A stream follows a file by its name, so it watches the file's directory (which reports writes to the file,
truncation, and the renames and creations of a rotation) and is woken only by events for that name. The
system allows few inotify instances per user (128 by default, shared with /fs watches), so all streams share
this one; a directory watched by several streams is one kernel watch, counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import os
import struct
from dataclasses import dataclass

log = logging.getLogger(__name__)

IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC

# What can change a file as a follower sees it: written or truncated, renamed away, replaced, deleted.
DIRECTORY_MASK = IN_MODIFY | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
DIRECTORY_MASK |= IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR
# The open file itself, wherever it is now: written to after it was renamed away (before the writer reopens).
FILE_MASK = IN_MODIFY | IN_ATTRIB | IN_MOVE_SELF | IN_DELETE_SELF
_HEADER = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len (then the name, NUL-padded)
_READ_SIZE = 64 * 1024


class _Libc:
    def __init__(self) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self.init1 = libc.inotify_init1
        self.init1.argtypes = [ctypes.c_int]
        self.init1.restype = ctypes.c_int
        self.add_watch = libc.inotify_add_watch
        self.add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        self.add_watch.restype = ctypes.c_int
        self.rm_watch = libc.inotify_rm_watch
        self.rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
        self.rm_watch.restype = ctypes.c_int


def _check(result: int, what: str) -> int:
    if result < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")
    return result


@dataclass(eq=False)
class Subscription:
    """One follower's interest in one name of one watched directory."""

    wd: int
    name: bytes
    woken: asyncio.Event
    # False once the kernel dropped the directory's watch (the directory went away): the follower then
    # rechecks on a slow timer and subscribes again when it can.
    alive: bool = True


class Inotify:
    def __init__(self) -> None:
        self._libc = _Libc()
        self.fd = _check(self._libc.init1(IN_NONBLOCK | IN_CLOEXEC), "inotify_init1")
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.fd, self._readable)
        self._refs: dict[int, int] = {}
        self._subs: dict[int, dict[bytes, set[Subscription]]] = {}
        self._closed = False

    def add_directory(self, directory: str) -> int:
        """The watch descriptor of `directory` (a syscall that resolves a path: call it from a thread).
        Pass it to `subscribe` on the event loop."""
        return _check(self._libc.add_watch(self.fd, os.fsencode(directory), DIRECTORY_MASK), directory)

    def add_open_file(self, fd: int) -> int:
        """The watch descriptor of the file open as `fd` (its inode, not its name; from a thread)."""
        return _check(self._libc.add_watch(self.fd, f"/proc/self/fd/{fd}".encode(), FILE_MASK), "open file")

    def subscribe(self, wd: int, name: str, woken: asyncio.Event) -> Subscription:
        """Event-loop side: set `woken` on every event for `name` in `wd`'s directory ("" for a file's
        own watch: every event of `wd`)."""
        sub = Subscription(wd, os.fsencode(name), woken)
        self._refs[wd] = self._refs.get(wd, 0) + 1
        self._subs.setdefault(wd, {}).setdefault(sub.name, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        by_name = self._subs.get(sub.wd)
        if by_name is None or sub not in by_name.get(sub.name, ()):
            return  # the watch was dropped already (IN_IGNORED)
        by_name[sub.name].discard(sub)
        if not by_name[sub.name]:
            del by_name[sub.name]
        self._refs[sub.wd] -= 1
        if self._refs[sub.wd] == 0:
            del self._refs[sub.wd]
            del self._subs[sub.wd]
            if not self._closed:
                self._libc.rm_watch(self.fd, sub.wd)  # EINVAL if the kernel dropped it meanwhile: fine

    def _drop(self, wd: int) -> None:
        for subs in self._subs.pop(wd, {}).values():
            for sub in subs:
                sub.alive = False
                sub.woken.set()
        self._refs.pop(wd, None)

    def _wake_all(self) -> None:
        for by_name in self._subs.values():
            for subs in by_name.values():
                for sub in subs:
                    sub.woken.set()

    def _readable(self) -> None:
        while True:
            try:
                data = os.read(self.fd, _READ_SIZE)
            except BlockingIOError:
                return
            except OSError:
                log.exception("reading the inotify instance failed")
                self._wake_all()
                return
            offset = 0
            while offset + _HEADER.size <= len(data):
                wd, mask, _cookie, length = _HEADER.unpack_from(data, offset)
                name = data[offset + _HEADER.size : offset + _HEADER.size + length].rstrip(b"\0")
                offset += _HEADER.size + length
                if mask & IN_Q_OVERFLOW:
                    self._wake_all()  # events were lost: everyone rechecks
                elif mask & IN_IGNORED:
                    self._drop(wd)
                elif not name:  # the directory itself moved or went: every follower in it rechecks
                    for subs in self._subs.get(wd, {}).values():
                        for sub in subs:
                            sub.woken.set()
                else:
                    for sub in self._subs.get(wd, {}).get(name, ()):
                        sub.woken.set()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self.fd)
        with contextlib.suppress(OSError):
            os.close(self.fd)  # drops every watch with it
        for wd in list(self._subs):
            self._drop(wd)
