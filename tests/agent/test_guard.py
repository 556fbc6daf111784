"""agent/guard.py's rules as a table: Host (DNS rebinding), Origin and Sec-Fetch-Site (web pages)."""

from __future__ import annotations

import argparse

import pytest
from multidict import CIMultiDict

from agent.config import Config, add_arguments, load
from agent.guard import refusal

DEFAULT = Config()
NAMED = Config(allowed_hosts="vm.example, Other.Example.")
ANY_HOST = Config(allowed_hosts="*")
ORIGINS = Config(allowed_origins="https://app.example, http://127.0.0.1:8000")
ANY_ORIGIN = Config(allowed_origins="*")
NULL_ORIGIN = Config(allowed_origins="null")


def verdict(headers: dict[str, str], config: Config = DEFAULT, scheme: str = "http") -> str | None:
    refused = refusal(CIMultiDict(headers), config, scheme)
    if refused is None:
        return None
    assert refused.status == 403
    return refused.code


@pytest.mark.parametrize(
    ("host", "config", "expected"),
    [
        ("127.0.0.1:10001", DEFAULT, None),
        ("127.0.0.1", DEFAULT, None),
        ("localhost:9222", DEFAULT, None),
        ("LOCALHOST", DEFAULT, None),
        ("localhost.:9222", DEFAULT, None),
        ("vm.localhost:9222", DEFAULT, None),
        ("[::1]:10001", DEFAULT, None),
        ("[::ffff:127.0.0.1]", DEFAULT, None),
        # any IP literal: rebinding needs a DNS name
        ("10.1.2.3:443", DEFAULT, None),
        ("[2001:db8::1]:80", DEFAULT, None),
        ("evil.example", DEFAULT, "forbidden_host"),
        ("evil.example:9222", DEFAULT, "forbidden_host"),
        ("localhost.evil.example", DEFAULT, "forbidden_host"),
        ("127.0.0.1.nip.io:10001", DEFAULT, "forbidden_host"),
        ("evillocalhost", DEFAULT, "forbidden_host"),
        # malformed
        ("::1", DEFAULT, "forbidden_host"),
        ("[::1", DEFAULT, "forbidden_host"),
        ("[::1]x", DEFAULT, "forbidden_host"),
        (":80", DEFAULT, "forbidden_host"),
        ("127.0.0.1:http", DEFAULT, "forbidden_host"),
        # configured names (case and a trailing dot do not matter), `*`
        ("vm.example:443", NAMED, None),
        ("VM.EXAMPLE", NAMED, None),
        ("other.example:1", NAMED, None),
        ("third.example", NAMED, "forbidden_host"),
        ("evil.example", ANY_HOST, None),
    ],
)
def test_host(host: str, config: Config, expected: str | None) -> None:
    assert verdict({"Host": host}, config) == expected


def test_no_host_header_is_accepted() -> None:
    """HTTP/1.0 clients send none; browsers always do."""
    assert verdict({}) is None
    assert verdict({"Sec-Fetch-Site": "none"}) is None


@pytest.mark.parametrize(
    ("headers", "config", "expected"),
    [
        # the agent's own origin as addressed (its own pages, the DevTools frontend through the proxy)
        ({"Host": "127.0.0.1:10001", "Origin": "http://127.0.0.1:10001"}, DEFAULT, None),
        ({"Host": "localhost:9222", "Origin": "http://LOCALHOST:9222"}, DEFAULT, None),
        ({"Host": "127.0.0.1:80", "Origin": "http://127.0.0.1"}, DEFAULT, None),
        ({"Host": "127.0.0.1", "Origin": "http://127.0.0.1:80"}, DEFAULT, None),
        ({"Host": "[::1]:10001", "Origin": "http://[::1]:10001"}, DEFAULT, None),
        (
            {"Host": "127.0.0.1:10001", "Origin": "http://127.0.0.1:10001", "Sec-Fetch-Site": "same-origin"},
            DEFAULT,
            None,
        ),
        # another port, scheme or name is another origin
        ({"Host": "127.0.0.1:10001", "Origin": "http://127.0.0.1:8000"}, DEFAULT, "forbidden_origin"),
        ({"Host": "127.0.0.1:10001", "Origin": "https://127.0.0.1:10001"}, DEFAULT, "forbidden_origin"),
        ({"Host": "127.0.0.1:10001", "Origin": "http://localhost:10001"}, DEFAULT, "forbidden_origin"),
        ({"Host": "127.0.0.1:10001", "Origin": "https://evil.example"}, DEFAULT, "forbidden_origin"),
        ({"Origin": "http://127.0.0.1:10001"}, DEFAULT, "forbidden_origin"),  # no Host: not "as addressed"
        ({"Host": "127.0.0.1:10001", "Origin": "null"}, DEFAULT, "forbidden_origin"),
        ({"Host": "127.0.0.1:10001", "Origin": ""}, DEFAULT, "forbidden_origin"),
        ({"Host": "127.0.0.1:10001", "Origin": "http://127.0.0.1:10001/"}, DEFAULT, "forbidden_origin"),
        ({"Host": "127.0.0.1:10001", "Origin": "chrome-extension://abc"}, DEFAULT, "forbidden_origin"),
        # allowed_origins: exact origins (normalised), `*`, an explicit `null`
        ({"Host": "127.0.0.1:10001", "Origin": "https://app.example"}, ORIGINS, None),
        ({"Host": "127.0.0.1:10001", "Origin": "https://APP.example:443"}, ORIGINS, None),
        ({"Host": "127.0.0.1:10001", "Origin": "http://app.example"}, ORIGINS, "forbidden_origin"),
        ({"Host": "127.0.0.1:10001", "Origin": "https://app.example:8443"}, ORIGINS, "forbidden_origin"),
        ({"Host": "127.0.0.1:10001", "Origin": "http://127.0.0.1:8000"}, ORIGINS, None),
        ({"Host": "127.0.0.1:10001", "Origin": "null"}, ORIGINS, "forbidden_origin"),
        ({"Host": "127.0.0.1:10001", "Origin": "https://anything.example"}, ANY_ORIGIN, None),
        ({"Host": "127.0.0.1:10001", "Origin": "null"}, ANY_ORIGIN, None),
        ({"Host": "127.0.0.1:10001", "Origin": "null"}, NULL_ORIGIN, None),
        # an allowed origin does not excuse a rebound Host
        ({"Host": "evil.example", "Origin": "https://app.example"}, ORIGINS, "forbidden_host"),
    ],
)
def test_origin(headers: dict[str, str], config: Config, expected: str | None) -> None:
    assert verdict(headers, config) == expected


def test_own_origin_follows_the_request_scheme() -> None:
    headers = {"Host": "127.0.0.1:10001", "Origin": "https://127.0.0.1:10001"}
    assert verdict(headers, scheme="https") is None
    assert verdict(headers, scheme="http") == "forbidden_origin"


@pytest.mark.parametrize(
    ("headers", "config", "expected"),
    [
        ({"Host": "127.0.0.1:10001", "Sec-Fetch-Site": "none"}, DEFAULT, None),  # the user typed the URL
        ({"Host": "127.0.0.1:10001", "Sec-Fetch-Site": "same-origin"}, DEFAULT, None),
        # an <img>, a link or a top-level navigation from a page: no Origin, still a page
        ({"Host": "127.0.0.1:10001", "Sec-Fetch-Site": "cross-site"}, DEFAULT, "forbidden_origin"),
        ({"Host": "127.0.0.1:10001", "Sec-Fetch-Site": "Same-Site"}, DEFAULT, "forbidden_origin"),
        ({"Host": "127.0.0.1:10001", "Sec-Fetch-Site": "same-site"}, ANY_ORIGIN, "forbidden_origin"),
        # allowed only when the request names an allow-listed Origin
        (
            {"Host": "127.0.0.1:10001", "Sec-Fetch-Site": "cross-site", "Origin": "https://app.example"},
            ORIGINS,
            None,
        ),
        (
            {"Host": "127.0.0.1:10001", "Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"},
            ORIGINS,
            "forbidden_origin",
        ),
        (
            {"Host": "127.0.0.1:10001", "Sec-Fetch-Site": "same-site", "Origin": "http://127.0.0.1:8000"},
            ORIGINS,
            None,
        ),
    ],
)
def test_sec_fetch_site(headers: dict[str, str], config: Config, expected: str | None) -> None:
    assert verdict(headers, config) == expected


def test_refusals_name_the_option() -> None:
    host = refusal(CIMultiDict({"Host": "evil.example"}), DEFAULT)
    assert host is not None and "AGENT_ALLOWED_HOSTS" in host.message and "--allowed-hosts" in host.message
    assert "evil.example" not in host.message
    origin = refusal(CIMultiDict({"Host": "127.0.0.1", "Origin": "http://x.example"}), DEFAULT)
    assert origin is not None and "AGENT_ALLOWED_ORIGINS" in origin.message
    site = refusal(CIMultiDict({"Sec-Fetch-Site": "cross-site"}), DEFAULT)
    assert site is not None and "--allowed-origins" in site.message


def test_config_fields_come_from_env_and_cli() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    env = {"AGENT_ALLOWED_HOSTS": "vm.example", "AGENT_ALLOWED_ORIGINS": "https://a.example"}
    config = load(parser.parse_args(["--allowed-origins", "https://b.example"]), env=env)
    assert (config.allowed_hosts, config.allowed_origins) == ("vm.example", "https://b.example")
    assert (Config().allowed_hosts, Config().allowed_origins) == ("", "")
