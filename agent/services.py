"""The one service registry: each capability puts its services here under typed keys; others take them out.

A `Key[T]` names one service and its type (keys live in their package's `__init__.py`). `Services` is what
lifecycles, HTTP handlers and the control link's commands read services from; asking for a service that no
capability provides is a `MissingService` error naming the key, never a bare KeyError.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar, cast

T = TypeVar("T")


class Key(Generic[T]):
    """The name and type of one service in the registry."""

    def __init__(self, name: str, kind: type[T]) -> None:
        self.name = name
        self.kind = kind

    def __repr__(self) -> str:
        return f"Key({self.name!r}, {self.kind.__name__})"


class MissingService(RuntimeError):
    pass


class Services:
    def __init__(self) -> None:
        self._items: dict[Key[Any], Any] = {}
        # Which capability put each key (for error messages).
        self._owners: dict[Key[Any], str] = {}

    def provide(self, key: Key[T], value: T, *, owner: str = "") -> None:
        if key in self._items:
            raise RuntimeError(f"service {key.name!r} provided twice ({self._owners[key]!r} and {owner!r})")
        if not isinstance(value, key.kind):
            raise TypeError(f"service {key.name!r} must be a {key.kind.__name__}, got {type(value).__name__}")
        self._items[key] = value
        self._owners[key] = owner

    def withdraw(self, key: Key[Any]) -> None:
        self._items.pop(key, None)
        self._owners.pop(key, None)

    def get(self, key: Key[T]) -> T:
        try:
            return cast(T, self._items[key])
        except KeyError:
            raise MissingService(f"no capability provides the service {key.name!r} (yet)") from None

    def __contains__(self, key: Key[Any]) -> bool:
        return key in self._items
