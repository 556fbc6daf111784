"""The capability shape: ordering by requirements, clear start-up errors, services provided and withdrawn."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from agent.capability import Capability, CapabilityError, Lifecycle, health_sections, install, order
from agent.config import Config
from agent.operation import SERVICES_KEY
from agent.services import Key, MissingService, Services
from agent.spec import Spec

A = Key("a", str)
B = Key("b", str)
C = Key("c", str)


def providing(key: Key[str], value: str, log: list[str]) -> Lifecycle:
    @contextlib.asynccontextmanager
    async def lifecycle(services: Services, config: Config) -> AsyncIterator[None]:
        log.append(f"start {key.name}")
        services.provide(key, value)
        yield
        log.append(f"stop {key.name}")

    return lifecycle


def cap(name: str, provides: tuple[Key[str], ...] = (), requires: tuple[Key[str], ...] = ()) -> Capability:
    return Capability(name, provides=provides, requires=requires)


def test_capabilities_are_ordered_after_what_they_require_and_otherwise_as_listed() -> None:
    caps = [cap("c", (C,), (A, B)), cap("x"), cap("b", (B,), (A,)), cap("a", (A,))]
    assert [c.name for c in order(caps)] == ["a", "b", "c", "x"]


@pytest.mark.parametrize(
    ("caps", "message"),
    [
        ([cap("curl", requires=(A,))], "capability 'curl' requires 'a', which no capability provides"),
        ([cap("one", (A,)), cap("two", (A,))], "capabilities 'one' and 'two' both provide 'a'"),
        (
            [cap("one", (A,), (B,)), cap("two", (B,), (A,))],
            "capabilities require each other in a cycle: one → two → one",
        ),
    ],
)
def test_wiring_mistakes_are_start_up_errors_naming_both_sides(caps: list[Capability], message: str) -> None:
    with pytest.raises(CapabilityError) as info:
        order(caps)
    assert str(info.value) == message


def test_a_missing_service_names_its_key() -> None:
    with pytest.raises(MissingService, match="'a'"):
        Services().get(A)


async def test_lifecycles_start_in_dependency_order_stop_in_reverse_and_withdraw_services() -> None:
    log: list[str] = []
    caps = [
        Capability("b", provides=(B,), requires=(A,), lifecycle=providing(B, "bee", log)),
        Capability(
            "a",
            provides=(A,),
            lifecycle=providing(A, "ay", log),
            health=lambda services: {"a": {"value": services.get(A)}},
        ),
    ]
    app = web.Application()
    services = install(app, Config(), Spec.load(), caps)
    async with TestClient(TestServer(app)):
        assert services.get(A) == "ay" and services.get(B) == "bee"
        assert app[SERVICES_KEY] is services
        assert health_sections(app) == {"a": {"value": "ay"}}
    assert log == ["start a", "start b", "stop b", "stop a"]
    assert A not in services and B not in services


async def test_a_capability_that_does_not_provide_what_it_declares_fails_to_start() -> None:
    @contextlib.asynccontextmanager
    async def lifecycle(services: Services, config: Config) -> AsyncIterator[None]:
        yield

    app = web.Application()
    install(app, Config(), Spec.load(), [Capability("lazy", provides=(A,), lifecycle=lifecycle)])
    with pytest.raises(CapabilityError, match="capability 'lazy' did not provide a"):
        async with TestClient(TestServer(app)):
            pass
