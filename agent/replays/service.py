"""Screen recordings: one ffmpeg x11grab per recording, H.264 in fragmented MP4, metadata on disk.

Each recording lives in `<state_dir>/replays/<id>/` as `replay.json` (written atomically) and `replay.mp4`.
ffmpeg writes a fragment a second and flushes every packet, so whatever ends it (`q` on
stop, -t, -fs, the X server dying, SIGKILL, the VM dying) leaves a file that plays up to its last fragment.
ffmpeg runs in a session of its own, owned by one task per recording that waits for it, ends it (`q`, then
SIGKILL after a grace) and writes the final metadata; started through `setpriv --pdeathsig INT` so that it
finishes its file and exits if the agent dies. A restarted agent lists what is on disk and ends a recording
its predecessor left unfinished.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import math
import os
import shutil
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import psutil

from ..config import Config
from ..errors import BadRequest, Conflict, InternalError, NotFound, Unavailable
from ..events import Publish, no_publish
from ..tasks import TaskGroup
from .models import ReplayMeta, StartReplayRequest

log = logging.getLogger(__name__)

META = "replay.json"
VIDEO = "replay.mp4"
# Framerates above this need a GPU-backed VM (the spec's "values above 20 require GPU").
MAX_CPU_FRAMERATE = 20
# ftyp (28 bytes) is written at once; a file no bigger has no video.
HEADER_BYTES = 28
# ffmpeg prints this once x11grab has opened the display and read its first frame (t=0 of the video);
# the encoder's start (the moov on disk) comes 0.3 s or more later.
INPUT_OPENED = "Input #0"
START_TIMEOUT_S = 10.0
# Disk kept free beyond a recording's limit (the file system is shared with the browser profile).
FREE_MARGIN_BYTES = 64 * 1024 * 1024
MIN_LIMIT_BYTES = 1024 * 1024
# x264's cheapest preset; see bench/replays.py for what it costs.
PRESET = "ultrafast"
KEYFRAME_S = 5


class NoDisplay(Conflict):
    code = "no_display"


def ffmpeg_command(
    ffmpeg: str,
    display: str,
    size: tuple[int, int],
    framerate: int,
    limit_bytes: int,
    max_duration_s: int | None,
    output: Path,
) -> list[str]:
    return [
        ffmpeg,
        "-hide_banner",
        "-loglevel",
        "info",
        "-nostats",
        "-f",
        "x11grab",
        "-draw_mouse",
        "1",
        "-framerate",
        str(framerate),
        "-video_size",
        f"{size[0]}x{size[1]}",
        "-i",
        display,
        "-c:v",
        "libx264",
        "-preset",
        PRESET,
        "-pix_fmt",
        "yuv420p",
        # A fragment every second (a killed recording loses at most the last one), flushed at once; fragments
        # need not start on a keyframe, so keyframes (the bulk of the bytes on a quiet page) come every
        # KEYFRAME_S: seeking decodes at most that far forward.
        "-g",
        str(framerate * KEYFRAME_S),
        "-flush_packets",
        "1",
        "-frag_duration",
        "1000000",
        "-movflags",
        "+empty_moov+default_base_moof",
        "-fs",
        str(limit_bytes),
        *(["-t", str(max_duration_s)] if max_duration_s is not None else []),
        "-f",
        "mp4",
        "-y",
        str(output),
    ]


def _write_meta(directory: Path, meta: ReplayMeta) -> None:
    """replay.json whole or not at all (temp file beside it, then rename)."""
    tmp = directory / f".{META}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        tmp.write_text(json.dumps(meta.to_dict()))
        os.replace(tmp, directory / META)
    finally:
        tmp.unlink(missing_ok=True)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _end_orphan(pid: int, video: Path, grace_s: float) -> None:
    """End an ffmpeg a previous agent left recording `video` (SIGINT: it writes its trailer), if it runs."""
    try:
        proc = psutil.Process(pid)
        if str(video) not in proc.cmdline():
            return  # the pid was reused by something else
        proc.send_signal(signal.SIGINT)
        proc.wait(grace_s)
    except psutil.TimeoutExpired:
        with contextlib.suppress(psutil.Error):
            psutil.Process(pid).kill()
    except psutil.Error:
        pass


class Recording:
    def __init__(self, meta: ReplayMeta, directory: Path) -> None:
        self.meta = meta
        self.directory = directory
        self.proc: asyncio.subprocess.Process | None = None
        self.stop_requested = asyncio.Event()
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if meta.finished_at is not None:
            self.finished.set_result(None)
        self.stderr: collections.deque[str] = collections.deque(maxlen=20)
        self.input_opened = asyncio.Event()

    @property
    def video(self) -> Path:
        return self.directory / VIDEO

    @property
    def running(self) -> bool:
        return self.meta.finished_at is None


class ReplayService:
    def __init__(self, config: Config, publish: Publish = no_publish) -> None:
        self.config = config
        self._publish = publish  # the event bus (agent/events.py): finished recordings go to the CP
        self.root = config.state_dir.resolve() / "replays"
        self._replays: dict[str, Recording] = {}
        self._starting = 0
        self._tasks = TaskGroup("replays")
        self._ffmpeg = shutil.which(config.replays_ffmpeg)
        setpriv = shutil.which("setpriv")
        self._prefix = [setpriv, "--pdeathsig", "INT", "--"] if setpriv else []

    # --- lifecycle ---

    async def open(self) -> None:
        metas = await asyncio.to_thread(self._load)
        for directory, meta in metas:
            self._replays[meta.replay_id] = Recording(meta, directory)

    def _load(self) -> list[tuple[Path, ReplayMeta]]:
        """What is on disk, oldest first; a recording left unfinished by a previous agent is ended now."""
        self.root.mkdir(parents=True, exist_ok=True)
        found: list[tuple[Path, ReplayMeta]] = []
        for directory in self.root.iterdir():
            if not directory.is_dir():
                continue
            for tmp in directory.glob(f".{META}.*.tmp"):
                tmp.unlink(missing_ok=True)
            try:
                meta = ReplayMeta.from_dict(json.loads((directory / META).read_text()))
            except (OSError, ValueError, TypeError):
                meta = None
            if meta is None or meta.replay_id != directory.name:
                log.warning("replays: removing %s (no valid %s)", directory, META)
                shutil.rmtree(directory, ignore_errors=True)
                continue
            video = directory / VIDEO
            if meta.finished_at is None:
                if meta.pid is not None:
                    _end_orphan(meta.pid, video, self.config.replays_stop_grace_s)
                meta.finished_at = video.stat().st_mtime if video.exists() else time.time()
                meta.end_reason = "agent_restart"
                meta.pid = None
                meta.size_bytes = _size(video)
                if meta.size_bytes <= HEADER_BYTES:
                    shutil.rmtree(directory, ignore_errors=True)
                    continue
                _write_meta(directory, meta)
            found.append((directory, meta))
        found.sort(key=lambda item: item[1].started_at)
        return found

    async def close(self) -> None:
        running = [rec for rec in self._replays.values() if rec.running]
        for rec in running:
            rec.stop_requested.set()
        if running:
            await asyncio.wait(
                [rec.finished for rec in running], timeout=self.config.replays_stop_grace_s + 2.0
            )
        await self._tasks.close()

    # --- queries ---

    def replays(self) -> list[ReplayMeta]:
        return [rec.meta for rec in self._replays.values()]

    def get(self, replay_id: str) -> Recording:
        rec = self._replays.get(replay_id)
        if rec is None:
            raise NotFound(f"no replay {replay_id!r}")
        return rec

    def retry_after(self, rec: Recording) -> int:
        """Seconds until a running recording may be done: its remaining time when bounded, else 5."""
        if rec.meta.max_duration_in_seconds is None:
            return 5
        remaining = rec.meta.started_at + rec.meta.max_duration_in_seconds - time.time()
        return max(1, min(30, math.ceil(remaining)))

    def health(self) -> dict[str, Any]:
        return {
            "recording": sum(1 for rec in self._replays.values() if rec.running),
            "stored": len(self._replays),
            "bytes": sum(self._bytes_of(rec) for rec in self._replays.values()),
            "ffmpeg": self._ffmpeg or f"{self.config.replays_ffmpeg}: not found",
        }

    def _bytes_of(self, rec: Recording) -> int:
        return rec.meta.size_bytes if not rec.running else rec.meta.limit_bytes

    # --- start / stop ---

    async def start(self, req: StartReplayRequest) -> ReplayMeta:
        if self.config.headless:
            raise NoDisplay(
                "this agent runs Chromium headless (AGENT_HEADLESS=1): there is no display to record"
            )
        if req.framerate > MAX_CPU_FRAMERATE and not self.config.replays_gpu:
            raise BadRequest(
                f"framerate {req.framerate} needs a GPU-backed VM; this one records at most "
                f"{MAX_CPU_FRAMERATE} fps (AGENT_REPLAYS_GPU=1 allows up to 60)"
            )
        if self._ffmpeg is None:
            raise InternalError(f"ffmpeg is not installed ({self.config.replays_ffmpeg!r} not found)")
        running = [rec for rec in self._replays.values() if rec.running]
        if len(running) + self._starting >= self.config.replays_max_concurrent:
            raise Conflict(
                f"{self.config.replays_max_concurrent} recordings are running already (the maximum, "
                "AGENT_REPLAYS_MAX_CONCURRENT); stop one first"
            )
        self._starting += 1
        try:
            limit = await self._reserve(running)
        except BaseException:
            self._starting -= 1
            raise
        # Shielded: a client that leaves mid-start does not leave a half-started ffmpeg behind (the
        # recording starts and is listed).
        task = self._tasks.spawn(self._start(req, limit), name="start")
        return await asyncio.shield(task)

    async def _reserve(self, running: list[Recording]) -> int:
        """The size this recording may grow to; deletes the oldest finished recordings to make room."""
        total = self.config.replays_total_bytes
        reserved = sum(rec.meta.limit_bytes for rec in running)
        need = min(self.config.replays_max_bytes, total - reserved)
        if need < MIN_LIMIT_BYTES:
            raise Conflict(
                f"the running recordings reserve the whole replay disk budget ({total} bytes, "
                "AGENT_REPLAYS_TOTAL_BYTES); stop one first"
            )
        finished = [rec for rec in self._replays.values() if not rec.running]
        stored = sum(rec.meta.size_bytes for rec in finished)
        evict: list[Recording] = []
        for rec in finished:  # oldest first
            if stored + reserved + need <= total:
                break
            evict.append(rec)
            stored -= rec.meta.size_bytes
        for rec in evict:
            log.info("replays: deleting %s (disk budget)", rec.meta.replay_id)
            self._replays.pop(rec.meta.replay_id, None)
            await asyncio.to_thread(shutil.rmtree, rec.directory, True)
        free = (await asyncio.to_thread(shutil.disk_usage, self.root)).free - FREE_MARGIN_BYTES
        limit = min(need, free)
        if limit < MIN_LIMIT_BYTES:
            raise Conflict(f"the disk under {self.root} is full ({free + FREE_MARGIN_BYTES} bytes free)")
        return limit

    async def _start(self, req: StartReplayRequest, limit: int) -> ReplayMeta:
        try:
            return await self._launch(req, limit)
        finally:
            self._starting -= 1

    async def _launch(self, req: StartReplayRequest, limit: int) -> ReplayMeta:
        assert self._ffmpeg is not None
        replay_id = str(uuid.uuid4())
        directory = self.root / replay_id
        meta = ReplayMeta(
            replay_id=replay_id,
            framerate=req.framerate,
            max_duration_in_seconds=req.max_duration_in_seconds,
            limit_bytes=limit,
            started_at=time.time(),
        )
        await asyncio.to_thread(directory.mkdir, parents=True)
        rec = Recording(meta, directory)
        argv = ffmpeg_command(
            self._ffmpeg,
            self.config.display,
            self.config.screen_size,
            req.framerate,
            limit,
            req.max_duration_in_seconds,
            rec.video,
        )
        try:
            rec.proc = await asyncio.create_subprocess_exec(
                *self._prefix,
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
            meta.pid = rec.proc.pid
            # The first frame is grabbed about now (x11grab reads it while ffmpeg opens the display).
            meta.started_at = time.time()
            stderr = self._tasks.spawn(self._read_stderr(rec), name=f"stderr:{replay_id}")
            await self._wait_recording(rec)
            await asyncio.to_thread(_write_meta, directory, meta)
        except BaseException:
            if rec.proc is not None and rec.proc.returncode is None:
                _kill_group(rec.proc)
                await rec.proc.wait()
            await asyncio.to_thread(shutil.rmtree, directory, True)
            raise
        self._replays[replay_id] = rec
        self._tasks.spawn(self._watch(rec, stderr), name=f"watch:{replay_id}")
        log.info("replays: %s recording %s at %d fps", replay_id, self.config.display, req.framerate)
        return meta

    async def _wait_recording(self, rec: Recording) -> None:
        assert rec.proc is not None
        opened = asyncio.ensure_future(rec.input_opened.wait())
        exited = asyncio.ensure_future(rec.proc.wait())
        try:
            await asyncio.wait({opened, exited}, timeout=START_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED)
        finally:
            opened.cancel()
            exited.cancel()
        if rec.input_opened.is_set():
            return
        if rec.proc.returncode is not None:
            await asyncio.sleep(0.05)  # let the stderr reader take the last words
            detail = " ".join(list(rec.stderr)[-3:]) or f"exit status {rec.proc.returncode}"
            raise Unavailable(f"ffmpeg could not record the display {self.config.display}: {detail}")
        raise Unavailable(
            f"ffmpeg did not start recording {self.config.display} within {START_TIMEOUT_S:.0f}s"
        )

    async def _read_stderr(self, rec: Recording) -> None:
        assert rec.proc is not None and rec.proc.stderr is not None
        async for line in rec.proc.stderr:
            text = line.decode(errors="replace").strip()
            if text.startswith(INPUT_OPENED):
                rec.input_opened.set()
            rec.stderr.append(text)

    async def _watch(self, rec: Recording, stderr: asyncio.Task[None]) -> None:
        """Wait for ffmpeg to end (by itself, or asked to), then write the final metadata."""
        proc, meta = rec.proc, rec.meta
        assert proc is not None
        exited = asyncio.ensure_future(proc.wait())
        asked = asyncio.ensure_future(rec.stop_requested.wait())
        # -t ends it; this is only a net under it.
        net = None if meta.max_duration_in_seconds is None else meta.max_duration_in_seconds + 10.0
        reason = "ffmpeg_failed"
        try:
            await asyncio.wait({exited, asked}, timeout=net, return_when=asyncio.FIRST_COMPLETED)
            if proc.returncode is None:
                reason = "stopped" if rec.stop_requested.is_set() else "max_duration"
                if not await self._end(proc):
                    reason = "killed"
            else:
                reason = self._why_ended(rec, proc.returncode)
        finally:
            asked.cancel()
            if proc.returncode is None:
                _kill_group(proc)
                await proc.wait()
            exited.cancel()
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(stderr, 1.0)
            meta.finished_at = time.time()
            meta.end_reason = reason
            meta.pid = None
            meta.size_bytes = await asyncio.to_thread(_size, rec.video)
            await asyncio.to_thread(_write_meta, rec.directory, meta)
            if not rec.finished.done():
                rec.finished.set_result(None)
            self._publish("replay.finished", meta.to_dict())
            level = logging.WARNING if reason in ("ffmpeg_failed", "killed") else logging.INFO
            log.log(level, "replays: %s ended (%s): %s", meta.replay_id, reason, " ".join(rec.stderr))

    def _why_ended(self, rec: Recording, returncode: int) -> str:
        meta = rec.meta
        if rec.stop_requested.is_set() and returncode in (0, 255):
            return "stopped"
        if returncode != 0:
            return "killed" if returncode < 0 else "ffmpeg_failed"
        if meta.max_duration_in_seconds is not None and (
            time.time() - meta.started_at >= meta.max_duration_in_seconds - 1.0
        ):
            return "max_duration"
        if _size(rec.video) >= meta.limit_bytes:
            return "size_limit"
        return "display_lost"  # x11grab ends cleanly when the X server goes away

    async def _end(self, proc: asyncio.subprocess.Process) -> bool:
        """SIGINT (ffmpeg writes its last fragment and the index, and exits 255), SIGKILL after the grace.
        False if it had to be killed. SIGINT, not `q` on stdin: ffmpeg polls its keyboard every 100 ms."""
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(proc.wait(), self.config.replays_stop_grace_s)
            return True
        except TimeoutError:
            _kill_group(proc)
            await proc.wait()
            return False

    async def stop(self, replay_id: str) -> None:
        """Answers once the file is final; stopping a finished recording is a no-op."""
        rec = self.get(replay_id)
        rec.stop_requested.set()
        # Shielded: the recording is finalized whether or not the client waits for it.
        await asyncio.shield(rec.finished)


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
