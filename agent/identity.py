"""The one user and group lookup (NSS): process `as_user` and fs owner/group both resolve names here.

Pure functions, blocking (NSS may ask a directory service): call them from a worker thread. An unknown
name is `UnknownIdentity`, which each caller turns into its own 400 message.
"""

from __future__ import annotations

import dataclasses
import grp
import os
import pwd
from typing import Literal

DEFAULT_SHELL = "/bin/sh"


class UnknownIdentity(LookupError):
    def __init__(self, kind: Literal["user", "group"], name: str) -> None:
        super().__init__(f"no such {kind} {name!r}")
        self.kind = kind
        self.name = name


@dataclasses.dataclass(frozen=True, slots=True)
class Identity:
    """Who a process runs as: ids for setuid/setgid/setgroups, and what its environment says."""

    uid: int
    gid: int
    groups: tuple[int, ...]
    name: str
    home: str
    shell: str


def user_entry(user: str) -> pwd.struct_passwd:
    """The passwd entry of a user name or numeric uid."""
    try:
        return pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except KeyError:
        raise UnknownIdentity("user", user) from None


def uid_of(user: str) -> int:
    """A user name's uid; a numeric uid as it is (it needs no passwd entry to own a file)."""
    return int(user) if user.isdigit() else user_entry(user).pw_uid


def gid_of(group: str) -> int:
    """A group name's gid; a numeric gid as it is."""
    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise UnknownIdentity("group", group) from None


def identity_of(entry: pwd.struct_passwd, gid: int | None = None) -> Identity:
    """The identity of a passwd entry, with `gid` (default: the user's own) and its supplementary groups."""
    gid = entry.pw_gid if gid is None else gid
    try:
        groups = tuple(os.getgrouplist(entry.pw_name, gid))
    except OSError:
        groups = (gid,)
    return Identity(
        entry.pw_uid, gid, groups, entry.pw_name, entry.pw_dir or "/", entry.pw_shell or DEFAULT_SHELL
    )


def parse_user(spec: str) -> Identity:
    """`user`, `uid`, `user:group` or `uid:gid` as an identity."""
    user, _, group = spec.strip().partition(":")
    entry = user_entry(user)
    return identity_of(entry, gid_of(group) if group else None)


def root() -> Identity:
    return identity_of(pwd.getpwuid(0), 0)
