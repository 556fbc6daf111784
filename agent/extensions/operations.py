"""The extensions operation, transport-independent: a typed request of spooled archives → install.

`uploadExtensionsToBrowser` takes multipart/form-data (the archives are files, not JSON), so it is not in
`OPERATIONS`: `Operations.call` validates JSON arguments only. The HTTP adapter builds the typed request from
the multipart body and runs `UPLOAD`; a control-link command would hand it files the same way.
"""

from __future__ import annotations

from typing import Any

from ..operation import Operation
from ..services import Services
from . import EXTENSIONS_KEY
from .models import UploadExtensionsRequest


async def _upload(services: Services, req: UploadExtensionsRequest) -> None:
    await services.get(EXTENSIONS_KEY).install(req.extensions)


UPLOAD = Operation("uploadExtensionsToBrowser", UploadExtensionsRequest, _upload, status=201)
OPERATIONS: tuple[Operation[Any], ...] = ()
