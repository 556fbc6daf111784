"""Logs capability: GET /logs/stream, a file (`tail -F` or read once) or a supervisord program log, as SSE."""

from ..services import Key
from .service import LogsService

LOGS_KEY = Key("logs", LogsService)

__all__ = ["LOGS_KEY"]
