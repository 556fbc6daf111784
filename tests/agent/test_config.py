"""Config: defaults < AGENT_* environment < command line."""

from __future__ import annotations

import argparse
from pathlib import Path

from agent.config import Config, add_arguments, env_for, load


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_defaults() -> None:
    config = load(_args(), env={})
    assert config == Config()
    assert (config.port, config.cdp_port, config.chromium_cdp_port, config.display) == (
        10001,
        9222,
        9223,
        ":99",
    )


def test_environment_overrides_defaults_and_cli_overrides_environment() -> None:
    env = {"AGENT_PORT": "12000", "AGENT_STATE_DIR": "/tmp/x", "DISPLAY": ":5", "AGENT_CDP_PORT": "9300"}
    config = load(_args("--port", "13000"), env=env)
    assert config.port == 13000
    assert config.cdp_port == 9300
    assert config.state_dir == Path("/tmp/x")
    assert config.display == ":5"
    assert load(_args("--display", ":7"), env=env).display == ":7"


def test_env_for_round_trips() -> None:
    config = Config(port=1234, display=":3", screen="800x600x24")
    assert load(_args(), env=env_for(config)) == config
    assert config.screen_size == (800, 600)
