"""CLI: `browser-agent serve` (the daemon) and `browser-agent sandbox` (Xvfb + Chromium + agent)."""

from __future__ import annotations

import argparse
import logging
import sys

from . import config as config_module

# aiohttp's request-body buffer (default 64 KiB): bigger means fewer socket pause/resume cycles on uploads.
READ_BUFSIZE = 256 * 1024


def _serve(config: config_module.Config) -> int:
    from aiohttp import web

    from .app import build_app

    web.run_app(
        build_app(config),
        host=config.host,
        port=config.port,
        access_log=logging.getLogger("aiohttp.access") if config.log_level == "debug" else None,
        print=None,
        reuse_address=True,
        # A client that goes away cancels its handler: a long drag or batch stops and lets go of the
        # keys and buttons it holds (see computer.actions.Runner).
        handler_cancellation=True,
        read_bufsize=READ_BUFSIZE,
        shutdown_timeout=3.0,  # in-flight requests get this long; supervisord restarts must be quick
    )
    return 0


def _sandbox(config: config_module.Config) -> int:
    from .sandbox import run_foreground

    return run_foreground(config)


def main(argv: list[str] | None = None) -> int:
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
    return _serve(config) if args.command == "serve" else _sandbox(config)


if __name__ == "__main__":
    sys.exit(main())
