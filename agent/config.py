"""One frozen Config: defaults < environment (AGENT_*) < command line."""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, get_type_hints


@dataclasses.dataclass(frozen=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 10001
    # The stable CDP address clients use; Chromium itself listens on chromium_cdp_port.
    cdp_port: int = 9222
    chromium_cdp_port: int = 9223
    display: str = ":99"
    screen: str = "1920x1080x24"
    # The headless variant: Chromium runs --headless=new (the launcher reads AGENT_HEADLESS too), so nothing
    # is drawn on the display and the computer, screenshot and clipboard routes answer 409 no_display.
    headless: bool = False
    state_dir: Path = Path(".sandbox")
    log_level: str = "info"
    # How long /health waits before calling X or Chromium "not ready" is not a timeout: readiness is polled
    # forever in the background; this is only the poll interval.
    ready_poll_s: float = 0.1
    # Upper bound for one request body (JSON routes); uploads stream and are not bound by it.
    max_json_body: int = 8 * 1024 * 1024

    # --- security (agent/guard.py): pages in the VM's Chromium reach 127.0.0.1 too ---
    # Host names (besides IP literals, localhost and *.localhost) the agent and the CDP proxy answer to;
    # comma-separated, `*` = any. Anything else is refused (DNS rebinding).
    allowed_hosts: str = ""
    # Web origins (exact `scheme://host[:port]`, comma-separated, `*` = any) whose requests are served;
    # other pages' requests are refused.
    allowed_origins: str = ""
    # --- http server (agent/server.py: the API on `port` and the CDP proxy on `cdp_port`) ---
    # A connection must deliver a complete request head within this long of opening it, or of the first
    # byte of its next request when kept alive; else 408 and close. 0 = no limit.
    http_header_timeout_s: float = 10.0
    # The longest a request body may pause between two reads (a stalled upload ends, a flowing one never
    # does). 0 = no limit.
    http_body_timeout_s: float = 60.0
    # A kept-alive connection with no request in progress is closed after this long (aiohttp's
    # keepalive_timeout). SSE streams and websockets are responses in progress: never idle.
    http_idle_timeout_s: float = 60.0

    # --- fs (agent/fs) ---
    # When set, every /fs route is confined to this directory (paths outside it are 403).
    fs_root: str = ""
    # upload_zip: an archive whose entries add up to more than this (declared or actually read) is a 400.
    fs_max_extract_bytes: int = 2 * 1024 * 1024 * 1024
    fs_max_extract_entries: int = 100_000
    # Watches at once, and events each keeps for Last-Event-ID resume.
    fs_max_watches: int = 64
    fs_watch_buffer: int = 4096
    # fsync written files before renaming them into place (durable across a crash of the VM). Off by
    # default, as in Kernel's server: a browser VM does not outlive a crash, and renames stay atomic.
    fs_fsync: bool = False

    # --- process (agent/process) ---
    # /process/exec keeps at most this many bytes of stdout and of stderr (the rest is read and dropped).
    process_exec_output_cap: int = 16 * 1024 * 1024
    # Output a spawned process keeps for its streams; the oldest output goes first, the child never blocks.
    process_buffer_bytes: int = 8 * 1024 * 1024
    # How long an exited spawned process stays queryable (status, stream, replay) before it is forgotten.
    process_retention_s: float = 300.0
    # After a timeout, a kill on shutdown: SIGTERM to the group, then SIGKILL after this long.
    process_kill_grace_s: float = 2.0
    # After the main process exits, how long to keep reading output its leftover children still write.
    process_drain_s: float = 1.0
    # POST /process/{id}/stdin waits this long for a child that does not read, then reports what it wrote.
    process_stdin_timeout_s: float = 10.0

    # --- cdp, curl, playwright (agent/cdp, agent/curl, agent/playwright) ---
    # Largest DevTools message: a full-page screenshot is tens of MB (websockets' default 1 MiB breaks CDP).
    cdp_max_message_bytes: int = 256 * 1024 * 1024
    # While Chromium restarts, CDP proxy requests wait this long for it before answering 503.
    cdp_proxy_wait_s: float = 8.0
    # POST /curl: a response body larger than this is refused (502 with a message naming the cap).
    curl_max_response_bytes: int = 32 * 1024 * 1024
    # Hidden targets that run /curl requests at once (more requests wait), and how many stay warm.
    curl_max_concurrency: int = 16
    curl_idle_targets: int = 2
    # /curl/raw: the streamed answer stops past this many body bytes (an over-cap Content-Length is a 502);
    # the request body, sent in one CDP message (Fetch.continueRequest postData), is refused (413) past this.
    curl_raw_max_bytes: int = 8 * 1024 * 1024 * 1024
    curl_raw_max_request_bytes: int = 64 * 1024 * 1024
    # POST /playwright/execute: named executors besides "default" (each is a Node process with its own tab).
    playwright_max_executors: int = 8
    # Node binary for the Playwright workers; empty = the one inside the python `playwright` wheel.
    playwright_node: str = ""
    # How long a new worker may take to start and connect to Chromium.
    playwright_start_timeout_s: float = 30.0
    # An execute worker with no call for this long disconnects from Chromium and connects again on its next
    # call (that call pays the connection); 0 = stay connected. Connected, Playwright instruments every tab.
    playwright_idle_detach_s: float = 60.0

    # --- logs (agent/logs) ---
    # GET /logs/stream: a longer line arrives as several events of at most this many bytes (of the file).
    logs_max_line_bytes: int = 64 * 1024
    # Log streams open at once (each holds an open file); one more is 400.
    logs_max_streams: int = 64

    # --- extensions (agent/extensions) ---
    # POST /extensions: the archives of one request may add up to this much, and each may extract to this
    # much in at most this many entries (the /fs/upload_zip checks); more is a 400.
    extensions_max_extract_bytes: int = 512 * 1024 * 1024
    extensions_max_entries: int = 10_000
    # After the restart, how long Chromium may take to answer again with the new extensions running.
    extensions_ready_timeout_s: float = 30.0

    # --- replays (agent/replays) ---
    # Recordings at once (each is an ffmpeg x11grab of the whole display); one more is 409.
    replays_max_concurrent: int = 2
    # One recording ends by itself (a playable file) when its file reaches about this size.
    replays_max_bytes: int = 1024 * 1024 * 1024
    # All recordings on disk: a new one reserves replays_max_bytes, and the oldest finished recordings are
    # deleted to make room; when running ones alone would exceed it, starting is 409.
    replays_total_bytes: int = 4 * 1024 * 1024 * 1024
    # A GPU-backed VM: framerates above 20 are allowed (else 400).
    replays_gpu: bool = False
    # After `q` on stop, how long ffmpeg may take to write its last fragment before it is SIGKILLed.
    replays_stop_grace_s: float = 5.0
    # The ffmpeg binary.
    replays_ffmpeg: str = "ffmpeg"

    # --- telemetry (agent/telemetry) ---
    # Categories captured from start-up, comma-separated (or "all" / "none"); changeable at run time with
    # PUT/PATCH /telemetry. CDP categories (console, network, page, interaction) and screenshot are opt-in
    # as in SDK 0.131; with none of them on, no CDP domain is enabled at all.
    telemetry_categories: str = "control,connection,system"
    # The ring buffer streams resume from: at most this many events and this many bytes (JSON).
    telemetry_buffer_events: int = 8192
    telemetry_buffer_bytes: int = 64 * 1024 * 1024
    # An envelope larger than this keeps its type and loses its data (truncated: true).
    telemetry_max_event_bytes: int = 1024 * 1024
    # CDP events waiting for the collector; past this they are dropped and counted (a console.log flood).
    telemetry_queue_events: int = 10_000
    # monitor_screenshot: also every this many seconds while the screenshot category is on (0 = only on
    # load and on uncaught exceptions, at most one per 2 s).
    telemetry_screenshot_interval_s: float = 0.0
    # After Chromium went away: monitor_reconnect_failed once it has not come back within this long.
    telemetry_reconnect_timeout_s: float = 30.0

    # --- control link (agent/control): off unless control_url is set ---
    # The control plane's gateway, e.g. tcp://10.0.0.1:7700.
    control_url: str = ""
    # The gateway's CURVE public key (Z85, 40 characters): the image carries only this.
    control_server_key: str = ""
    # The agent's own CURVE keypair: a zmq certificate file holding public-key and secret-key (a mounted
    # secret, never in the image).
    control_key_file: str = ""
    # The id the agent says in HELLO (the CP trusts only the key's mapping); empty = the host name.
    control_agent_id: str = ""
    # The agent's HTTP and CDP addresses as the CP and its users reach them; empty = from host and ports.
    control_base_url: str = ""
    control_cdp_url: str = ""
    control_heartbeat_s: float = 5.0
    control_buffer_events: int = 10_000
    control_buffer_bytes: int = 16 * 1024 * 1024
    # Ed25519 public key (PEM file path, or base64url of the raw 32 bytes) that verifies session jwts
    # (`?jwt=` / `Authorization: Bearer`); empty and no key from the CP = tokens are not checked.
    control_jwt_public_key: str = ""
    # `browser-agent sandbox` (make run) starts a reference control plane beside the sandbox on these
    # ports unless control_url is set; control_plane_port 0 = none.
    control_plane_port: int = 7800
    control_gateway_port: int = 7700
    # Serve beyond loopback (host other than 127.0.0.1 / ::1 / localhost) with no session-token key: the agent
    # refuses to start that way unless this is set (agent/auth.py). A key, once known, is checked anyway.
    insecure_no_auth: bool = False

    # --- limits (issue 13): caps on what the agent holds at once; one more is 503 at_capacity with
    # Retry-After (the SDK retries 5xx). Per-kind caps (logs_max_streams, fs_max_watches,
    # replays_max_concurrent, playwright_max_executors) still apply within these. ---
    # SSE streams of every kind open at once (logs, telemetry, fs watch events, process output).
    sse_max_streams: int = 256
    # Child processes of the API alive at once: running spawned ones plus /process/exec calls in flight.
    process_max_alive: int = 256

    # --- chromium (supervisor/chromium-launcher reads these as AGENT_CHROMIUM_*) ---
    # When supervisord runs as root, Chromium runs as this unprivileged user (a name or uid[:gid]; the image
    # creates `browser`), with its own sandbox on. Empty = as supervisord's user.
    chromium_user: str = "browser"
    # Adds --no-sandbox: only for a machine without user namespaces (Chromium's sandbox needs them here).
    chromium_no_sandbox: bool = False

    @property
    def screen_size(self) -> tuple[int, int]:
        width, height, *_ = self.screen.split("x")
        return int(width), int(height)

    @property
    def supervisor_socket(self) -> Path:
        """supervisord's XML-RPC socket (supervisor/supervisord.conf puts it in the state dir)."""
        return self.state_dir / "supervisor.sock"

    @property
    def chromium_cdp_url(self) -> str:
        return f"http://127.0.0.1:{self.chromium_cdp_port}"


def _field_types() -> dict[str, Any]:
    return get_type_hints(Config)


def _convert(name: str, raw: str) -> Any:
    kind = _field_types()[name]
    if kind is bool:
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(f"{name}: not a boolean: {raw!r}")
    if kind is int:
        return int(raw)
    if kind is float:
        return float(raw)
    if kind is Path:
        return Path(raw)
    return raw


def from_env(env: Mapping[str, str]) -> dict[str, Any]:
    """Fields set by AGENT_<NAME> variables (DISPLAY is honoured as the X display too)."""
    values: dict[str, Any] = {}
    if env.get("DISPLAY"):
        values["display"] = env["DISPLAY"]
    for field in dataclasses.fields(Config):
        key = "AGENT_" + field.name.upper()
        if key in env:
            values[field.name] = _convert(field.name, env[key])
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One --option per Config field; unset options leave lower layers alone."""
    hints = _field_types()
    for field in dataclasses.fields(Config):
        flag = "--" + field.name.replace("_", "-")
        if hints[field.name] is bool:  # `--insecure-no-auth` alone means true; `--headless 0` still works
            parser.add_argument(flag, dest=field.name, default=None, nargs="?", const="true")
        else:
            parser.add_argument(flag, dest=field.name, default=None)


def load(args: argparse.Namespace | None = None, env: Mapping[str, str] | None = None) -> Config:
    values = from_env(os.environ if env is None else env)
    if args is not None:
        for field in dataclasses.fields(Config):
            raw = getattr(args, field.name, None)
            if raw is not None:
                values[field.name] = _convert(field.name, raw)
    return Config(**values)


def env_for(config: Config, names: Sequence[str] | None = None) -> dict[str, str]:
    """The AGENT_* environment that reproduces `config` in a child process."""
    out: dict[str, str] = {}
    for field in dataclasses.fields(Config):
        if names is None or field.name in names:
            out["AGENT_" + field.name.upper()] = str(getattr(config, field.name))
    return out
