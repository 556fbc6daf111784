"""`browser-agent control-plane`: the reference control plane (gateway + store + public session API).

Its directory holds its CURVE keypair (`server.key[_secret]`), the EdDSA key that signs session tokens
(`jwt.pem`), the API key (`api_key`), the SQLite store (`cp.db`) and the agents it admits: each
`agents/<agent id>.key` (a zmq public certificate) is registered under that id, as is each `--register
ID=Z85KEY`. `local_setup()` prepares such a directory and an agent certificate for `make run`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import secrets
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.jwt import public_key_text

from .api import API
from .gateway import Gateway
from .store import Store

log = logging.getLogger("controlplane")


@dataclass(frozen=True)
class Paths:
    root: Path

    @property
    def server_secret(self) -> Path:
        return self.root / "server.key_secret"

    @property
    def jwt_key(self) -> Path:
        return self.root / "jwt.pem"

    @property
    def api_key(self) -> Path:
        return self.root / "api_key"

    @property
    def db(self) -> Path:
        return self.root / "cp.db"

    @property
    def agents(self) -> Path:
        return self.root / "agents"


def ensure_keys(paths: Paths) -> tuple[bytes, bytes, Ed25519PrivateKey, str]:
    """The CP's CURVE keypair, token signing key and API key; created (0600) on first use."""
    import zmq.auth

    paths.root.mkdir(parents=True, exist_ok=True)
    paths.agents.mkdir(exist_ok=True)
    if not paths.server_secret.exists():
        zmq.auth.create_certificates(str(paths.root), "server")
    public, secret = zmq.auth.load_certificate(str(paths.server_secret))
    assert secret is not None
    if not paths.jwt_key.exists():
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        paths.jwt_key.write_bytes(pem)
        paths.jwt_key.chmod(0o600)
    signing = serialization.load_pem_private_key(paths.jwt_key.read_bytes(), password=None)
    assert isinstance(signing, Ed25519PrivateKey)
    if not paths.api_key.exists():
        paths.api_key.write_text(secrets.token_urlsafe(24))
        paths.api_key.chmod(0o600)
    return public, secret, signing, paths.api_key.read_text().strip()


def agent_keys(paths: Paths) -> dict[str, str]:
    import zmq.auth

    out: dict[str, str] = {}
    for cert in sorted(paths.agents.glob("*.key")):
        public, _ = zmq.auth.load_certificate(str(cert))
        out[cert.stem] = public.decode()
    return out


def local_setup(root: Path, agent_id: str) -> tuple[str, str, str]:
    """For a local sandbox: the CP's directory with its keys and one agent certificate registered.
    Returns (server public key, agent certificate with its secret, API key)."""
    import zmq.auth

    paths = Paths(root)
    public, _, _, api_key = ensure_keys(paths)
    secret_file = paths.agents / f"{agent_id}.key_secret"
    if not secret_file.exists():
        zmq.auth.create_certificates(str(paths.agents), agent_id)
    return public.decode(), str(secret_file), api_key


async def serve(args: argparse.Namespace) -> int:
    paths = Paths(Path(args.dir))
    public, secret, signing, api_key = ensure_keys(paths)
    store = Store(paths.db)
    gateway = Gateway(
        store,
        args.bind,
        public,
        secret,
        heartbeat_s=args.heartbeat_s,
        jwt_public_key=public_key_text(signing.public_key()),
    )
    registered = agent_keys(paths)
    for item in args.register or []:
        agent_id, _, key = item.partition("=")
        registered[agent_id] = key
    for agent_id, key in registered.items():
        await gateway.register(agent_id, key)
    await gateway.start()
    api = API(gateway, store, api_key, signing)
    runner = web.AppRunner(api.app())
    await runner.setup()
    site = web.TCPSite(runner, args.http_host, args.http_port)
    await site.start()
    print(f"control plane  gateway {gateway.endpoint}  (server key {public.decode()})", flush=True)
    print(f"               API http://{args.http_host}:{args.http_port}  api key {api_key}", flush=True)
    print(f"               agents admitted: {', '.join(registered) or 'none'}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        await gateway.close()
        store.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="browser-agent control-plane", description=__doc__)
    parser.add_argument("--dir", default=".controlplane", help="keys, store and admitted agents")
    parser.add_argument("--bind", default="tcp://127.0.0.1:7700", help="the gateway's ZeroMQ endpoint")
    parser.add_argument("--http-host", default="127.0.0.1")
    parser.add_argument("--http-port", type=int, default=7800)
    parser.add_argument("--heartbeat-s", type=float, default=5.0)
    parser.add_argument("--register", action="append", metavar="ID=Z85KEY", help="admit this agent key")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
