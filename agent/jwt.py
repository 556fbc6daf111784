"""Session tokens: compact JWTs signed with Ed25519 (alg EdDSA) by the control plane, verified by the agent.

Claims: `sub` = the session id the token is bound to, `agent` = the agent id, `iat`/`exp` (short-lived).
One module for both sides so the format has a single definition.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

HEADER = {"alg": "EdDSA", "typ": "JWT"}
# Clock skew tolerated between the CP and the VM.
LEEWAY_S = 30.0


class InvalidToken(ValueError):
    pass


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise InvalidToken("not base64url") from None


def public_key_text(key: Ed25519PublicKey) -> str:
    """The raw 32-byte public key as base64url (how it travels in config and over the link)."""
    return _b64(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


def load_public_key(value: str) -> Ed25519PublicKey:
    """A public key from base64url of the raw 32 bytes, or from a PEM file's path."""
    value = value.strip()
    if value.startswith("-----BEGIN") or Path(value).is_file():
        pem = value.encode() if value.startswith("-----BEGIN") else Path(value).read_bytes()
        key = serialization.load_pem_public_key(pem)
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("not an Ed25519 public key")
        return key
    raw = _unb64(value)
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def sign(key: Ed25519PrivateKey, claims: dict[str, Any]) -> str:
    head = _b64(json.dumps(HEADER, separators=(",", ":")).encode())
    body = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signature = key.sign(f"{head}.{body}".encode("ascii"))
    return f"{head}.{body}.{_b64(signature)}"


def session_token(key: Ed25519PrivateKey, session_id: str, agent_id: str, ttl_s: float = 900.0) -> str:
    now = int(time.time())
    return sign(key, {"sub": session_id, "agent": agent_id, "iat": now, "exp": now + int(ttl_s)})


def verify(key: Ed25519PublicKey, token: str, now: float | None = None) -> dict[str, Any]:
    """The claims of a valid, unexpired token; InvalidToken otherwise."""
    parts = token.split(".")
    if len(parts) != 3:
        raise InvalidToken("not a compact JWT")
    try:
        header = json.loads(_unb64(parts[0]))
        claims = json.loads(_unb64(parts[1]))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidToken("undecodable token") from None
    if not isinstance(header, dict) or header.get("alg") != "EdDSA":
        raise InvalidToken("only EdDSA tokens are accepted")
    try:
        key.verify(_unb64(parts[2]), f"{parts[0]}.{parts[1]}".encode("ascii"))
    except InvalidSignature:
        raise InvalidToken("bad signature") from None
    if not isinstance(claims, dict):
        raise InvalidToken("claims are not an object")
    exp = claims.get("exp")
    if not isinstance(exp, int | float):
        raise InvalidToken("no expiry")
    if (time.time() if now is None else now) > exp + LEEWAY_S:
        raise InvalidToken("token expired")
    return claims
