"""Typed request of POST /extensions (multipart: the archives are spooled files, not JSON)."""

from __future__ import annotations

import dataclasses
from typing import BinaryIO


@dataclasses.dataclass(frozen=True)
class ExtensionUpload:
    # The folder name under <state dir>/extensions/ (the spec's pattern is checked before this is built).
    name: str
    # The uploaded archive, spooled to a seekable temporary file; the service closes it.
    zip_file: BinaryIO


@dataclasses.dataclass(frozen=True)
class UploadExtensionsRequest:
    extensions: tuple[ExtensionUpload, ...]
