"""Filesystem capability: every /fs route (files, directories, uploads, zips, watches)."""

from ..services import Key
from .service import FsService

FS_KEY = Key("fs", FsService)

__all__ = ["FS_KEY"]
