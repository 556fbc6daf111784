"""The agent's event bus and the core capability that provides it (and the session-token check).

Capabilities announce what happened (a spawned process exited, a recording finished, extensions were
installed) with `publish(kind, data)`; whoever cares subscribes. The control link forwards them to the
control plane, but the publishers never learn whether it exists: the link is optional, the bus is not.
Delivery is synchronous on the loop and never raises into the publisher.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from .auth import AUTH_KEY, SessionAuth
from .capability import Capability
from .config import Config
from .services import Key, Services

log = logging.getLogger(__name__)

Subscriber = Callable[[str, Any], None]
# What a publisher holds: the bus's publish method (a no-op where no bus is wired, e.g. in unit tests).
Publish = Callable[[str, Any], None]


def no_publish(kind: str, data: Any) -> None:
    pass


class EventBus:
    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
        self.published = 0

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Start delivering; returns the unsubscribe function."""
        self._subscribers.append(subscriber)
        return lambda: self._subscribers.remove(subscriber) if subscriber in self._subscribers else None

    def publish(self, kind: str, data: Any) -> None:
        self.published += 1
        for subscriber in list(self._subscribers):
            try:
                subscriber(kind, data)
            except Exception:  # a subscriber's bug never reaches the publisher
                log.exception("event subscriber failed on %s", kind)


EVENTS_KEY = Key("events", EventBus)


@contextlib.asynccontextmanager
async def lifecycle(services: Services, config: Config) -> AsyncIterator[None]:
    services.provide(EVENTS_KEY, EventBus())
    services.provide(AUTH_KEY, SessionAuth.from_config(config))
    yield


def _health(services: Services) -> Mapping[str, Any]:
    # No secret here: /health stays open (the supervisor's and Docker's HEALTHCHECK read it).
    return {"auth": services.get(AUTH_KEY).status()}


# Always installed, before everything that publishes or checks tokens.
CAPABILITY = Capability(name="core", provides=(EVENTS_KEY, AUTH_KEY), lifecycle=lifecycle, health=_health)
