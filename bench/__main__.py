"""`make bench`: every benchmark, ours and the peers' way side by side, one run each.

python -m bench                 # all
python -m bench computer        # one family
"""

from __future__ import annotations

import importlib
import sys

FAMILIES = [
    "computer",
    "process",
    "cdp",
    "curl",
    "fs",
    "logs",
    "extensions",
    "repl",
    "replays",
    "telemetry",
    "control",
]


def main(argv: list[str]) -> int:
    chosen = argv or FAMILIES
    for name in chosen:
        if name not in FAMILIES:
            print(f"unknown benchmark {name!r}; choose from {', '.join(FAMILIES)}", file=sys.stderr)
            return 2
    for name in chosen:
        print(f"# bench: {name}")
        importlib.import_module(f"bench.{name}").main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
