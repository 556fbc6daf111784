"""The control service: the link, the commands it runs, the health it reports, the events it forwards.

Forwarded: whatever capabilities publish on the event bus (`agent/events.py`: process exits, recordings
finished, extensions installed), Chromium (re)connections, command results, and telemetry events of the
categories the CP's CFG enables (read from the telemetry buffer as a follower; kind `telemetry.<category>`).
Commands are spec operations by operationId, run through the same `Operations.call` as HTTP (same
validation, same errors), or the lifecycle commands `agent.restart_chromium`, `agent.configure_telemetry`
and `agent.drain`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import Callable
from typing import Any

import psutil
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..auth import SessionAuth
from ..config import Config
from ..errors import AgentError, BadRequest, Unavailable
from ..jwt import load_public_key
from ..operation import Operations
from ..supervisor_rpc import Supervisor
from ..tasks import TaskGroup
from ..telemetry.service import TelemetryService
from .link import Link, load_keys, run_guarded
from .protocol import LIFECYCLE_COMMANDS, AgentProtocol, ApplyConfig, Command, Identity, Settings, Welcomed

log = logging.getLogger(__name__)

AGENT_VERSION = "0.1.0"


def identity_for(config: Config, operations: Operations) -> Identity:
    base_url = config.control_base_url or f"http://{config.host}:{config.port}"
    cdp_url = config.control_cdp_url or f"ws://{config.host}:{config.cdp_port}"
    return Identity(
        agent_id=config.control_agent_id or socket.gethostname(),
        sid=uuid.uuid4().hex,  # new per agent process start
        version=AGENT_VERSION,
        capabilities=(*operations.ids(), *sorted(LIFECYCLE_COMMANDS)),
        base_url=base_url,
        cdp_url=cdp_url,
    )


class ControlService:
    def __init__(
        self,
        config: Config,
        operations: Operations,
        *,
        state: Callable[[], dict[str, Any]] = dict,
        auth: SessionAuth | None = None,
        telemetry: TelemetryService | None = None,
    ) -> None:
        self.config = config
        self.operations = operations
        self.supervisor = Supervisor(config.supervisor_socket)
        self._state = state  # Chromium / X state for heartbeats
        self.identity = identity_for(config, operations)
        settings = Settings(
            heartbeat_s=config.control_heartbeat_s,
            max_events=config.control_buffer_events,
            max_bytes=config.control_buffer_bytes,
        )
        self.protocol = AgentProtocol(self.identity, settings)
        keys = load_keys(config.control_key_file, config.control_server_key)
        self.link = Link(
            config.control_url, keys, self.protocol, self._run, self._apply_config, on_welcome=self._welcomed
        )
        # Session tokens (agent/auth.py): the CP's key (unless config has one) and the session this agent
        # serves (None = not told: any token of this agent) go where the API and the CDP proxy check them.
        self.auth = auth or SessionAuth.from_config(config)
        if not self.auth.agent_id:
            self.auth.agent_id = self.identity.agent_id
        self.jwt_key: Ed25519PublicKey | None = None
        self.telemetry = telemetry
        # Telemetry categories forwarded to the CP: none until its CFG enables some.
        self.forwarded: frozenset[str] = frozenset()
        self.tasks = TaskGroup("control")
        self.started = time.monotonic()
        # The CP's desired telemetry config (state): kept until a telemetry service exists to apply it.
        self.telemetry_config: dict[str, Any] = {}
        self.telemetry_config_version = 0

    def start(self) -> None:
        self.tasks.spawn(run_guarded(self.link.run, "control link"), name="link")
        self.tasks.spawn(self._health_loop(), name="health")
        if self.telemetry is not None:
            self.tasks.spawn(self._forward_telemetry(), name="telemetry")

    def emit(self, kind: str, data: Any) -> None:
        self.link.emit(kind, data)

    @property
    def session_id(self) -> str | None:
        return self.auth.session_id

    # ---- telemetry ----------------------------------------------------------------------------------------

    async def _forward_telemetry(self) -> None:
        """Every telemetry event recorded from now on whose category the CFG enabled, as an event of its own
        (console and network ones are low priority: the link's buffer drops them first)."""
        assert self.telemetry is not None
        async for _, envelope in self.telemetry.follow(self.telemetry.buffer.last_seq):
            event = envelope.get("event", {})
            category = event.get("category")
            if category in self.forwarded:
                self.emit(f"telemetry.{category}", event)

    async def _configure_telemetry(self, version: int, config: dict[str, Any]) -> dict[str, Any]:
        """Apply the CP's telemetry config (the SDK's shape: {enabled?, browser: {category: {enabled}}})
        through the same operations as PUT/PATCH /telemetry, and forward what ends up enabled."""
        self.telemetry_config, self.telemetry_config_version = config, version
        if self.telemetry is None or "patchTelemetryConfig" not in self.operations:
            return {"version": version, "applied": False, "detail": "no telemetry service here"}
        browser = config.get("browser") if isinstance(config.get("browser"), dict) else {}
        if config.get("enabled") is False:
            view = await self.operations.call("putTelemetryConfig", {})  # capture stops: everything off
        else:
            view = await self.operations.call("patchTelemetryConfig", {"browser": browser})
        self.forwarded = self.telemetry.enabled if config.get("enabled") is not False else frozenset()
        self.protocol.config_applied(version)
        return {"version": version, "applied": True, "forwarded": sorted(self.forwarded), "config": view}

    # ---- health -----------------------------------------------------------------------------------------

    def _sample(self) -> dict[str, Any]:
        # psutil reads /proc (blocking syscalls): in a worker thread.
        mem = psutil.virtual_memory()
        try:
            disk = psutil.disk_usage(str(self.config.state_dir))
            disk_info: dict[str, Any] = {"total": disk.total, "used": disk.used, "percent": disk.percent}
        except OSError:
            disk_info = {}
        return {
            "cpu_percent": psutil.cpu_percent(interval=None),
            "memory": {"total": mem.total, "available": mem.available, "percent": mem.percent},
            "disk": disk_info,
            "agent_rss": psutil.Process().memory_info().rss,
        }

    async def _health_loop(self) -> None:
        while True:
            try:
                sample = await asyncio.to_thread(self._sample)
                sample.update(self._state())
                sample["uptime_s"] = round(time.monotonic() - self.started, 1)
                sample["telemetry_config_version"] = self.telemetry_config_version
                self.protocol.set_health(sample)
            except Exception:
                log.exception("control: health sample failed")
            await asyncio.sleep(max(self.protocol.heartbeat_s / 2, 0.05))

    # ---- commands ---------------------------------------------------------------------------------------

    def _apply_config(self, action: ApplyConfig) -> None:
        self.tasks.spawn(self._apply_config_logged(action), name=f"cfg:{action.version}")

    async def _apply_config_logged(self, action: ApplyConfig) -> None:
        try:
            await self._configure_telemetry(action.version, action.config)
        except AgentError as exc:
            log.warning("control: the CP's telemetry config %d was refused: %s", action.version, exc)

    def _welcomed(self, welcomed: Welcomed) -> None:
        key = welcomed.header.get("jwt_public_key")
        if isinstance(key, str) and key:
            try:
                self.jwt_key = load_public_key(key)
                self.auth.set_key(self.jwt_key)
            except ValueError:
                log.warning("control: the CP sent an unusable session-token key")
        session = welcomed.header.get("session_id")
        if session is None or isinstance(session, str):
            self.auth.session_id = session

    def _run(self, command: Command) -> None:
        self.tasks.spawn(self._execute(command), name=f"cmd:{command.cmd_id[:32]}")

    async def _execute(self, command: Command) -> None:
        after: Callable[[], None] | None = None
        try:
            timeout = None if command.deadline is None else command.deadline - time.monotonic()
            async with asyncio.timeout(timeout):
                result, after = await self._dispatch(command)
            done: dict[str, Any] = {"ok": True, "result": result}
        except AgentError as exc:
            done = {"ok": False, "status": exc.status, "error": exc.body()}
        except TimeoutError:
            done = {"ok": False, "error": {"code": "deadline_exceeded", "message": "ran past its deadline"}}
        except Exception as exc:
            log.exception("control: command %s failed", command.name)
            done = {"ok": False, "status": 500, "error": {"code": "internal_error", "message": str(exc)}}
        self.link.command_done(command.cmd_id, done)
        if after is not None:
            after()

    async def _dispatch(self, command: Command) -> tuple[Any, Callable[[], None] | None]:
        name, args = command.name, command.args
        if name == "agent.restart_chromium":
            await self.supervisor.restart("chromium")
            return {"restarted": "chromium"}, None
        if name == "agent.configure_telemetry":
            version, config = args.get("version"), args.get("config")
            if not isinstance(version, int) or not isinstance(config, dict):
                raise BadRequest("agent.configure_telemetry takes {version: int, config: object}")
            return await self._configure_telemetry(version, config), None
        if name == "agent.session":
            session = args.get("session_id")
            if session is not None and not isinstance(session, str):
                raise BadRequest("agent.session takes {session_id: string or null}")
            self.auth.session_id = session
            return {"session_id": session}, None
        if name == "agent.drain":
            shutdown = args.get("shutdown", True) is not False
            return {"draining": True, "shutdown": shutdown}, lambda: self._drain(shutdown)
        if name.startswith("agent."):
            raise BadRequest(f"unknown lifecycle command {name!r}")
        if name not in self.operations:
            raise Unavailable(f"operation {name!r} is not served by this agent")
        return await self.operations.call(name, args), None

    def _drain(self, shutdown: bool) -> None:
        self.link.drain()
        if shutdown:
            self.tasks.spawn(self._shutdown_after_drain(), name="shutdown")

    async def _shutdown_after_drain(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.link.stopped.wait(), self.protocol.settings.drain_timeout_s + 1)
        # The server's own SIGTERM handler shuts the agent down gracefully.
        os.kill(os.getpid(), signal.SIGTERM)

    async def close(self) -> None:
        if not self.link.stopped.is_set():
            self.link.drain()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.link.stopped.wait(), 2.0)
        await self.tasks.close()
        await self.link.close()
