"""The one codec of the control link: `[b"BVA1", kind, header (msgpack map), body]`.

Unknown kinds decode (the protocol ignores them), unknown header fields are carried along and ignored, a
wrong version is `VersionMismatch` (the receiver answers DISCONNECT). EVT bodies are a msgpack list of
events `{seq, kind, ts, data}`; other kinds have an empty body.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import msgpack

VERSION = b"BVA1"

HELLO = "HELLO"
WELCOME = "WELCOME"
HB = "HB"
EVT = "EVT"
ACK = "ACK"
CMD = "CMD"
CFG = "CFG"
DISCONNECT = "DISCONNECT"
BYE = "BYE"
KINDS = frozenset({HELLO, WELCOME, HB, EVT, ACK, CMD, CFG, DISCONNECT, BYE})


class CodecError(ValueError):
    """Not a frame of this protocol (wrong part count, undecodable header)."""


class VersionMismatch(CodecError):
    def __init__(self, version: bytes) -> None:
        super().__init__(f"unsupported protocol version {version[:16]!r}")
        self.version = version


@dataclasses.dataclass(frozen=True)
class Frame:
    kind: str
    header: dict[str, Any] = dataclasses.field(default_factory=dict)
    body: bytes = b""

    def events(self) -> list[dict[str, Any]]:
        """An EVT frame's events (malformed entries are left out)."""
        if not self.body:
            return []
        data = unpack(self.body)
        if not isinstance(data, list):
            raise CodecError("EVT body is not a list")
        return [e for e in data if isinstance(e, dict) and isinstance(e.get("seq"), int)]


def pack(value: Any) -> bytes:
    out: bytes = msgpack.packb(value, use_bin_type=True)
    return out


def unpack(data: bytes) -> Any:
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several types for garbage
        raise CodecError(f"undecodable msgpack: {exc}") from None


def encode(frame: Frame) -> list[bytes]:
    return [VERSION, frame.kind.encode(), pack(frame.header), frame.body]


def events_frame(events: Sequence[dict[str, Any]], **header: Any) -> Frame:
    return Frame(EVT, {"n": len(events), **header}, pack(list(events)))


def decode(parts: Sequence[bytes]) -> Frame:
    if not parts:
        raise CodecError("empty message")
    if bytes(parts[0]) != VERSION:
        raise VersionMismatch(bytes(parts[0]))
    if len(parts) < 3:
        raise CodecError(f"a frame has 4 parts, got {len(parts)}")
    try:
        kind = bytes(parts[1]).decode("ascii")
    except UnicodeDecodeError:
        raise CodecError("kind is not ASCII") from None
    header = unpack(bytes(parts[2])) if parts[2] else {}
    if not isinstance(header, dict):
        raise CodecError("header is not a map")
    body = bytes(parts[3]) if len(parts) > 3 else b""
    return Frame(kind, header, body)
