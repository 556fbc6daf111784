"""The one user/group lookup: names and numeric ids, `user:group`, unknown names."""

from __future__ import annotations

import os
import pwd

import pytest

from agent import identity
from agent.identity import UnknownIdentity


def test_users_and_groups_by_name_and_number() -> None:
    root = pwd.getpwuid(0).pw_name
    assert identity.uid_of(root) == 0
    assert identity.uid_of("0") == 0
    assert identity.uid_of("4242") == 4242  # a numeric owner needs no passwd entry
    assert identity.gid_of("0") == 0
    assert identity.gid_of("4243") == 4243
    assert identity.user_entry("0").pw_name == root


def test_unknown_names_say_what_is_unknown() -> None:
    with pytest.raises(UnknownIdentity, match="no such user 'no-such-user-xyz'") as user:
        identity.uid_of("no-such-user-xyz")
    assert (user.value.kind, user.value.name) == ("user", "no-such-user-xyz")
    with pytest.raises(UnknownIdentity, match="no such group 'no-such-group-xyz'"):
        identity.gid_of("no-such-group-xyz")
    with pytest.raises(UnknownIdentity, match="no such user"):
        identity.user_entry("4244")  # as_user needs a real user (home, shell)


def test_a_user_spec_with_a_group() -> None:
    entry = pwd.getpwuid(0)
    ident = identity.parse_user(f" {entry.pw_name} ")
    assert (ident.uid, ident.gid, ident.name, ident.home) == (0, entry.pw_gid, entry.pw_name, entry.pw_dir)
    assert ident.gid in ident.groups
    assert identity.parse_user("0:4245").gid == 4245
    assert identity.root() == identity.identity_of(entry, 0)
    assert os.path.isabs(identity.root().shell)
    with pytest.raises(UnknownIdentity, match="no such group"):
        identity.parse_user("0:no-such-group-xyz")
