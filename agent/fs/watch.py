"""Directory watches: watchfiles (inotify) in one thread per watch, events into a bounded EventBuffer.

watchfiles reports batches (at most ~200 ms long) of (added | modified | deleted, path) sets, a rename
being "deleted old" + "added new". We turn a batch into spec FileSystemEvents:

- added → CREATE, modified → WRITE, deleted → DELETE;
- a rename inside the watched tree → RENAME for the old path, then CREATE for the new one (what fsnotify,
  and so the reference service, reports). We recognise it by the inode: every path the watch has seen (an
  initial scan plus every event) is remembered with its inode and mtime, and a deleted path whose inode
  reappears under an added path in the same batch (same type, same mtime) was renamed. A move out of
  the tree is a DELETE, a move into it a CREATE;
- a path created and removed within one batch is a CREATE then a DELETE;
- a recursive watch also reports CREATE for what a new directory already holds when it is seen (files
  made before inotify watched it, a tree moved in), once each;
- the agent's own temp files (`atomic.is_temp_name`, and whatever a temp directory holds) never show, so a
  write through the agent is the CREATE of its target (new) or a WRITE (a file renamed over one that was
  there, which is how the agent replaces a file), never a RENAME of the temp file.

Order within a batch (its sets carry none): DELETE/RENAME of what existed, deepest first; then CREATE,
parents first; then DELETE of the short-lived, deepest first; then WRITE. `path` is the client's own
spelling of the watched directory plus the relative part.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import threading
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from ..errors import BadRequest, InternalError, NotFound
from ..sse import EventBuffer
from .atomic import is_temp_name
from .compat import ADDED, DELETED, MODIFIED, Batch, inotify, next_batch
from .models import EventType, FsEvent, join_client_path

log = logging.getLogger(__name__)

DEBOUNCE_MS = 200  # a batch never spans more than this: events stay close to real time and in order
STEP_MS = 25  # a batch ends after this long without a change
MAX_REMEMBERED = 200_000  # paths whose inode a watch remembers (rename detection beyond: DELETE + CREATE)
MAX_SCANNED_EVENTS = 10_000  # CREATEs one batch reports for what new directories hold
START_TIMEOUT_S = 30.0


@dataclass
class _Known:
    dev: int
    ino: int
    is_dir: bool
    mtime_ns: int


@dataclass
class Watch:
    id: str
    path: str  # as the client wrote it
    real: str
    recursive: bool
    buffer: EventBuffer[FsEvent]
    stop: threading.Event = field(default_factory=threading.Event)
    finished: asyncio.Event = field(default_factory=asyncio.Event)


class _Mapper:
    """Turns watchfiles batches into FsEvents, remembering inodes to recognise renames (thread side)."""

    def __init__(self, watch: Watch) -> None:
        self.real = watch.real
        self.client = watch.path
        self.recursive = watch.recursive
        self.known: dict[str, _Known] = {}
        self._real_dirs: dict[str, bool] = {}
        self._scan_budget = MAX_SCANNED_EVENTS

    def remember(self, path: str, st: os.stat_result) -> None:
        if path in self.known or len(self.known) < MAX_REMEMBERED:
            self.known[path] = _Known(st.st_dev, st.st_ino, stat.S_ISDIR(st.st_mode), st.st_mtime_ns)

    def scan(self, directory: str, recursive: bool) -> None:
        """Remember what is there already (so renaming an existing file is a RENAME)."""
        with contextlib.suppress(OSError):
            self.remember(directory, os.lstat(directory))
        stack = [directory]
        while stack and len(self.known) < MAX_REMEMBERED:
            current = stack.pop()
            try:
                with os.scandir(current) as entries:
                    for entry in entries:
                        if is_temp_name(entry.name):
                            continue
                        try:
                            st = entry.stat(follow_symlinks=False)
                        except OSError:
                            continue
                        self.remember(entry.path, st)
                        if recursive and stat.S_ISDIR(st.st_mode):
                            stack.append(entry.path)
            except OSError:
                continue

    def _in_tree(self, path: str) -> bool:
        """watchfiles follows symlinked directories in recursive mode; the reference service does not, and
        events from outside the watched tree (or the fs root) must not show. Checks the parent's realpath."""
        parent = os.path.dirname(path)
        inside = self._real_dirs.get(parent)
        if inside is None:
            real = os.path.realpath(parent)
            inside = real == self.real or real.startswith(self.real.rstrip("/") + "/")
            self._real_dirs[parent] = inside
        return inside

    def _hidden(self, path: str) -> bool:
        """A temp file of the agent's, or inside one (a directory being copied or extracted)."""
        rel = path[len(self.real) :] if path.startswith(self.real) else path
        return any(is_temp_name(part) for part in rel.split("/") if part)

    def _forget(self, path: str) -> _Known | None:
        gone = self.known.pop(path, None)
        if gone is not None and gone.is_dir:
            prefix = path + "/"
            for key in [k for k in self.known if k.startswith(prefix)]:
                del self.known[key]
        return gone

    def _move(self, old: str, new: str) -> None:
        prefix = old + "/"
        for key in [k for k in self.known if k.startswith(prefix)]:
            self.known[new + key[len(old) :]] = self.known.pop(key)

    def _event(self, kind: EventType, path: str, is_dir: bool) -> FsEvent:
        rel = os.path.relpath(path, self.real) if path != self.real else ""
        client = join_client_path(self.client, "" if rel == "." else rel)
        return FsEvent(
            type=kind, path=client, name=os.path.basename(client.rstrip("/")) or "/", is_dir=is_dir
        )

    @staticmethod
    def _renamed_to(
        old: _Known, arrivals: dict[tuple[int, int], tuple[str, os.stat_result]], written: bool
    ) -> str | None:
        """The added path holding the deleted one's inode. Inode numbers are reused at once (rm a; touch
        b), so a file must also keep its type and mtime (a rename changes neither), unless it was written
        in this very batch."""
        arrival = arrivals.get((old.dev, old.ino))
        if arrival is None:
            return None
        path, st = arrival
        if stat.S_ISDIR(st.st_mode) != old.is_dir:
            return None
        if not old.is_dir and not written and st.st_mtime_ns != old.mtime_ns:
            return None
        return path

    def _replaced(self, path: str, st: os.stat_result) -> bool:
        """A file renamed over a file that was there (inotify says only "moved to"): new contents."""
        old = self.known.get(path)
        return (
            old is not None
            and not old.is_dir
            and not stat.S_ISDIR(st.st_mode)
            and (old.dev, old.ino) != (st.st_dev, st.st_ino)
        )

    def _created(self, path: str, st: os.stat_result) -> list[FsEvent]:
        """CREATE for `path`, unless it was reported already (found by a scan, same inode), and, for a new
        directory of a recursive watch, CREATE for what is inside that no event will report: entries
        made before inotify watched the directory, or a whole tree moved in."""
        known = self.known.get(path)
        if known is not None and (known.dev, known.ino) == (st.st_dev, st.st_ino):
            return []
        is_dir = stat.S_ISDIR(st.st_mode)
        self.remember(path, st)
        events = [self._event("CREATE", path, is_dir)]
        if is_dir and self.recursive:
            for inner, inner_st in self._listing(path):
                if self._scan_budget <= 0:
                    break
                self._scan_budget -= 1
                events += self._created(inner, inner_st)
        return events

    @staticmethod
    def _listing(directory: str) -> list[tuple[str, os.stat_result]]:
        out: list[tuple[str, os.stat_result]] = []
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    if is_temp_name(entry.name):
                        continue
                    with contextlib.suppress(OSError):
                        out.append((entry.path, entry.stat(follow_symlinks=False)))
        except OSError:
            return []
        return sorted(out)

    def map(self, raw: Batch) -> list[FsEvent]:
        self._real_dirs.clear()
        self._scan_budget = MAX_SCANNED_EVENTS
        added = {p for c, p in raw if c == ADDED}
        modified = {p for c, p in raw if c == MODIFIED}
        deleted = {p for c, p in raw if c == DELETED}
        now: dict[str, os.stat_result | None] = {}
        for path in added | modified | deleted:
            try:
                now[path] = os.lstat(path)
            except OSError:
                now[path] = None
        for path in list(now):
            if path != self.real and (self._hidden(path) or not self._in_tree(path)):
                del now[path]
        added &= now.keys()
        modified &= now.keys()
        deleted &= now.keys()
        transient = {p for p in added & deleted if now[p] is None}  # created and gone within the batch

        events: list[FsEvent] = []
        # What existed before goes first, deepest first; a rename is RENAME old + CREATE new, together.
        arrivals: dict[tuple[int, int], tuple[str, os.stat_result]] = {}
        for path in added:
            st = now[path]
            if st is not None:
                arrivals[(st.st_dev, st.st_ino)] = (path, st)
        for path in sorted(deleted - transient, reverse=True):
            old = self.known.get(path)
            new = self._renamed_to(old, arrivals, written=path in modified) if old is not None else None
            if old is not None and new is not None and new != path:
                events.append(self._event("RENAME", path, old.is_dir))
                if old.is_dir:
                    self._move(path, new)
                self.known.pop(path, None)
                events += self._created(new, arrivals[(old.dev, old.ino)][1])
            else:
                events.append(self._event("DELETE", path, old.is_dir if old else False))
                self._forget(path)
        # Then what is new, parents before what they hold.
        for path in sorted(added | transient):
            st = now[path]
            if path in transient:
                events.append(self._event("CREATE", path, False))
            elif st is not None and path not in deleted and self._replaced(path, st):
                events.append(self._event("WRITE", path, False))
                self.remember(path, st)
            elif st is not None:
                events += self._created(path, st)
        # The short-lived ones are gone again: DELETE, deepest first.
        for path in sorted(transient, reverse=True):
            events.append(self._event("DELETE", path, False))
            self._forget(path)
        for path in sorted(modified - added - transient):
            st = now[path]
            if st is None:
                continue
            events.append(self._event("WRITE", path, stat.S_ISDIR(st.st_mode)))
            self.remember(path, st)
        return events


class Watches:
    """Every watch of the agent, by id (event-loop side; each watch's thread does the blocking work)."""

    def __init__(self, max_watches: int, buffer_size: int) -> None:
        self.max_watches = max_watches
        self.buffer_size = buffer_size
        self._watches: dict[str, Watch] = {}

    def __len__(self) -> int:
        return len(self._watches)

    async def start(self, client_path: str, real: str, recursive: bool) -> Watch:
        if len(self._watches) >= self.max_watches:
            raise BadRequest(f"too many watches (at most {self.max_watches}); stop one first")
        watch = Watch(
            id=uuid.uuid4().hex,
            path=client_path,
            real=real,
            recursive=recursive,
            buffer=EventBuffer(self.buffer_size),
        )
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        thread = threading.Thread(
            target=self._run, args=(watch, loop, ready), name=f"fs-watch-{watch.id[:8]}", daemon=True
        )
        self._watches[watch.id] = watch
        thread.start()
        try:
            await asyncio.wait_for(asyncio.shield(ready), START_TIMEOUT_S)
        except BaseException:
            await self.stop(watch.id)
            raise
        return watch

    def get(self, watch_id: str) -> Watch:
        watch = self._watches.get(watch_id)
        if watch is None:
            raise NotFound(f"no watch {watch_id!r}")
        return watch

    async def stop(self, watch_id: str) -> None:
        watch = self._watches.pop(watch_id, None)
        if watch is None:
            raise NotFound(f"no watch {watch_id!r}")
        watch.stop.set()
        # The thread notices the stop within STEP_MS; it then closes its inotify instance.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(watch.finished.wait(), 5.0)
        if not watch.buffer.closed:
            watch.buffer.close()

    async def close(self) -> None:
        await asyncio.gather(*(self.stop(i) for i in list(self._watches)), return_exceptions=True)

    async def events(self, watch: Watch, after: int) -> AsyncIterator[tuple[int | None, dict[str, object]]]:
        async for seq, event in watch.buffer.follow(after):
            yield seq, event.to_json()

    # --- the watch's own thread ---

    @staticmethod
    def _deliver(watch: Watch, events: list[FsEvent]) -> None:
        if watch.buffer.closed:
            return
        for event in events:
            watch.buffer.append(event)

    @staticmethod
    def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
        if future.done():
            return
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)

    @staticmethod
    def _finish(watch: Watch) -> None:
        watch.finished.set()
        if not watch.buffer.closed:
            watch.buffer.close()  # followers end once they have everything

    def _run(self, watch: Watch, loop: asyncio.AbstractEventLoop, ready: asyncio.Future[None]) -> None:
        try:
            try:
                notify = inotify(watch.real, watch.recursive)
            except FileNotFoundError:
                loop.call_soon_threadsafe(self._settle, ready, NotFound(f"{watch.path}: no such directory"))
                return
            except Exception as exc:
                # Typically the system's inotify limits (fs.inotify.max_user_instances / max_user_watches).
                error = InternalError(f"cannot watch {watch.path}: {exc}")
                loop.call_soon_threadsafe(self._settle, ready, error)
                return
            with notify:
                # Already watching (inotify queues what happens now); remember what is there, then answer.
                mapper = _Mapper(watch)
                mapper.scan(watch.real, watch.recursive)
                loop.call_soon_threadsafe(self._settle, ready, None)
                while not watch.stop.is_set():
                    raw = next_batch(notify, DEBOUNCE_MS, STEP_MS, watch.stop)
                    if raw is None:
                        continue  # stopped (the loop ends), or a signal, which does not concern a thread
                    events = mapper.map(raw)
                    if events:
                        loop.call_soon_threadsafe(self._deliver, watch, events)
        except RuntimeError as exc:
            if "closed" not in str(exc):  # the event loop is gone: the agent is shutting down
                log.exception("watch %s of %s failed", watch.id, watch.path)
        except Exception:
            log.exception("watch %s of %s failed", watch.id, watch.path)
        finally:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._finish, watch)
