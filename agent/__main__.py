"""CLI: `browser-agent serve` (the daemon), `browser-agent sandbox` (Xvfb + Chromium + agent) and
`browser-agent control-plane` (the reference control plane, controlplane/)."""

from __future__ import annotations

import argparse
import logging
import sys

from . import config as config_module


def _serve(config: config_module.Config) -> int:
    from .app import build_app
    from .auth import startup_problem
    from .server import run

    problem = startup_problem(config)
    if problem is not None:
        print(f"browser-agent: {problem}", file=sys.stderr, flush=True)
        return 2

    access_log = logging.getLogger("aiohttp.access") if config.log_level == "debug" else None
    run(build_app(config), config, access_log)
    return 0


def _sandbox(config: config_module.Config) -> int:
    from .sandbox import run_foreground

    return run_foreground(config)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["control-plane"]:  # the reference control plane has its own options
        from controlplane.__main__ import main as control_plane

        return control_plane(argv[1:])
    parser = argparse.ArgumentParser(prog="browser-agent", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("serve", "run the HTTP daemon"),
        ("sandbox", "run Xvfb + Chromium + the agent under supervisord, in the foreground"),
    ):
        sub = commands.add_parser(name, help=help_text)
        config_module.add_arguments(sub)
    args = parser.parse_args(argv)
    config = config_module.load(args)
    logging.basicConfig(
        level=getattr(logging, config.log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from .auth import RedactTokens

    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactTokens())  # no session token in any log line (access log included)
    return _serve(config) if args.command == "serve" else _sandbox(config)


if __name__ == "__main__":
    sys.exit(main())
