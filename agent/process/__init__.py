"""Processes: exec, spawn (pipes or PTY), output buffers and streams, stdin, signals, resize, attach."""

from ..services import Key
from .service import ProcessService

PROCESS_KEY = Key("process", ProcessService)

__all__ = ["PROCESS_KEY"]
