"""What an /fs path really names: absolute only, confined to the optional root, OS errors as API errors.

Every function here touches the disk (realpath, lstat): call them from a worker thread.
"""

from __future__ import annotations

import errno
import os

from ..errors import AgentError, BadRequest, Forbidden, InsufficientStorage, InternalError, NotFound


class FsPaths:
    """Resolves client paths with realpath and refuses those outside `root` (when one is set).

    Operations then act on the resolved path, so a symlink swapped in after the check cannot redirect them
    outside the root unless it sits in a directory that is itself inside the root.
    """

    def __init__(self, root: str) -> None:
        self.root = os.path.realpath(root) if root else ""

    def _check_syntax(self, path: str) -> None:
        if not path.startswith("/"):
            raise BadRequest(f"path must be absolute, got {path!r}")
        if "\x00" in path:
            raise BadRequest("path must not contain NUL bytes")

    def inside(self, real: str) -> bool:
        if not self.root or self.root == "/":
            return True
        return real == self.root or real.startswith(self.root + "/")

    def _confine(self, real: str, given: str) -> str:
        if not self.inside(real):
            raise Forbidden(f"{given} is outside the filesystem root the agent serves")
        return real

    def resolve(self, path: str) -> str:
        """The real path `path` names, every symlink followed (for reading, writing, listing)."""
        self._check_syntax(path)
        return self._confine(os.path.realpath(path), path)

    def resolve_entry(self, path: str) -> str:
        """The entry `path` names itself: its directory resolved, its last component kept as it is, so a
        symlink is deleted or moved rather than what it points to."""
        self._check_syntax(path)
        parent, name = os.path.split(path.rstrip("/"))
        if name in ("", ".", ".."):
            return self.resolve(path)
        return self._confine(os.path.join(os.path.realpath(parent or "/"), name), path)

    def is_root(self, real: str) -> bool:
        """The root itself (or `/`) must not be deleted or moved away."""
        return real == (self.root or "/") or real == "/"


def os_error(exc: OSError, path: str) -> AgentError:
    """An OSError from acting on `path` as the API error a client can understand (4xx for its mistakes)."""
    code = exc.errno
    reason = exc.strerror or str(exc)
    if code == errno.ENOENT:
        return NotFound(f"{path}: no such file or directory")
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return Forbidden(f"{path}: {reason.lower()}")
    if code == errno.ENOTDIR:
        return BadRequest(f"{path}: a component of the path is not a directory")
    if code == errno.EISDIR:
        return BadRequest(f"{path}: is a directory")
    if code in (errno.EEXIST, errno.ENOTEMPTY):
        return BadRequest(f"{path}: {reason.lower()}")
    if code in (errno.ENAMETOOLONG, errno.ELOOP, errno.EINVAL, errno.EBUSY, errno.ETXTBSY, errno.EMLINK):
        return BadRequest(f"{path}: {reason.lower()}")
    if code in (errno.ENOSPC, errno.EDQUOT):
        return InsufficientStorage(f"{path}: no space left on the device")
    if code == errno.EFBIG:
        return InsufficientStorage(f"{path}: the file is too large for its filesystem")
    return InternalError(f"{path}: {reason}")
