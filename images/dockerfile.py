"""Reads the repo's Dockerfile for images/image-test.sh, so that CI runs exactly what the Dockerfile says.

Understands only what this Dockerfile uses (FROM, ARG, ENV, COPY, RUN, WORKDIR, EXPOSE, HEALTHCHECK,
ENTRYPOINT, with backslash continuations and ${VAR} / $VAR substitution) and stops with a clear error on
anything else, so a new instruction cannot be silently skipped. Prints bash assignments for `eval`:
  DF_FROM  DF_BUILD_ENV (NAME=VALUE array: ARGs and ENVs, as a RUN sees them)  DF_ENV (the ENVs only, as
  the running container sees them)  DF_COPY_SRC DF_COPY_DST
  DF_RUN (array of shell commands, run with /bin/sh -c)  DF_RUN_CWD (the WORKDIR each RUN runs in)
  DF_WORKDIR (the entrypoint's)  DF_ENTRYPOINT (array)
  DF_HEALTHCHECK (array: the command, exec form as is, shell form as /bin/sh -c; empty = none)
  DF_HEALTHCHECK_TIMEOUT DF_HEALTHCHECK_START_PERIOD DF_HEALTHCHECK_INTERVAL (seconds)  DF_HEALTHCHECK_RETRIES
Usage: dockerfile.py DOCKERFILE [NAME=VALUE ...]   (build args, like --build-arg)
       dockerfile.py --context REPO   (the build context: git's files less .dockerignore, NUL-separated; stops
                                       with an error when .dockerignore lets in tests, caches, .venv, .git or
                                       build output, or leaves out what the image runs)
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import subprocess
import sys


def logical_lines(text: str) -> list[tuple[int, str]]:
    """Joins backslash continuations; drops comments and blank lines (as the builder does)."""
    out: list[tuple[int, str]] = []
    buf: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue  # comment lines inside a continuation are skipped by the builder
        if not buf:
            start = number
        if stripped.endswith("\\"):
            buf.append(stripped[:-1].strip())
            continue
        buf.append(stripped)
        out.append((start, " ".join(part for part in buf if part)))
        buf = []
    if buf:
        out.append((start, " ".join(buf)))
    return out


def substitute(value: str, scope: dict[str, str]) -> str:
    def repl(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return scope.get(name, "")

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)", repl, value)


def unquote(word: str) -> str:
    parts = shlex.split(word)
    if len(parts) != 1:
        raise ValueError(f"cannot read {word!r}")
    return parts[0]


# Docker's HEALTHCHECK defaults.
HEALTHCHECK_DEFAULTS = {"interval": 30.0, "timeout": 30.0, "start-period": 0.0, "retries": 3.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration_s(text: str, where: str) -> float:
    """A Go duration as Docker reads it (`1m30s`, `500ms`, `15s`), in seconds."""
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise SystemExit(f"{where}: not a duration: {text!r}")
    return sum(float(n) * _UNIT_S[u] for n, u in parts)


def parse_healthcheck(rest: str, where: str) -> dict[str, object]:
    """`HEALTHCHECK [--interval=D --timeout=D --start-period=D --retries=N] CMD ...` or `HEALTHCHECK NONE`."""
    options = dict(HEALTHCHECK_DEFAULTS)
    words = rest.split(None, 1)
    while words and words[0].startswith("--"):
        name, has_value, value = words[0][2:].partition("=")
        if not has_value or name not in options:
            raise SystemExit(f"{where}: HEALTHCHECK option {words[0]!r} is not understood")
        options[name] = float(int(value)) if name == "retries" else duration_s(value, where)
        words = words[1].split(None, 1) if len(words) > 1 else []
    if words == ["NONE"]:
        return {"command": [], **options}
    if len(words) != 2 or words[0] != "CMD":
        raise SystemExit(f"{where}: HEALTHCHECK needs CMD (or NONE)")
    command: object
    if words[1].startswith("["):
        try:
            command = json.loads(words[1])
        except json.JSONDecodeError as exc:
            raise SystemExit(f"{where}: HEALTHCHECK CMD is not a JSON array ({exc})") from exc
        if not isinstance(command, list) or not command or not all(isinstance(w, str) for w in command):
            raise SystemExit(f"{where}: HEALTHCHECK CMD must be a JSON array of strings")
    else:
        command = ["/bin/sh", "-c", words[1]]
    return {"command": command, **options}


def parse(text: str, build_args: dict[str, str]) -> dict[str, object]:
    scope: dict[str, str] = {}
    env: dict[str, str] = {}
    result: dict[str, object] = {"run": [], "run_cwd": []}
    workdir = "/"
    for number, line in logical_lines(text):
        instruction, _, rest = line.partition(" ")
        instruction = instruction.upper()
        rest = rest.strip()
        where = f"Dockerfile line {number}"
        if instruction == "FROM":
            result["from"] = rest
        elif instruction == "ARG":
            name, has_default, default = rest.partition("=")
            value = build_args.get(name, unquote(default) if has_default else "")
            scope[name] = value
        elif instruction == "ENV":
            words = shlex.split(rest)
            if not words or any("=" not in word for word in words):
                raise SystemExit(f"{where}: only the ENV NAME=VALUE form is understood")
            for word in words:
                name, _, value = word.partition("=")
                value = substitute(value, {**scope, **env})
                env[name] = value
        elif instruction == "COPY":
            words = shlex.split(rest)
            if len(words) != 2 or words[0].startswith("--"):
                raise SystemExit(f"{where}: only `COPY SRC DST` is understood")
            result["copy_src"], result["copy_dst"] = words
        elif instruction == "RUN":
            if rest.startswith("["):
                raise SystemExit(f"{where}: only the shell form of RUN is understood")
            run, run_cwd = result["run"], result["run_cwd"]
            assert isinstance(run, list) and isinstance(run_cwd, list)
            run.append(rest)
            run_cwd.append(workdir)
        elif instruction == "WORKDIR":
            workdir = substitute(unquote(rest), {**scope, **env})
            result["workdir"] = workdir
        elif instruction == "EXPOSE":
            pass  # documentation only; the image test reaches the ports inside its own network namespace
        elif instruction == "HEALTHCHECK":
            result["healthcheck"] = parse_healthcheck(rest, where)
        elif instruction == "ENTRYPOINT":
            try:
                entrypoint = json.loads(rest)
            except json.JSONDecodeError as exc:
                raise SystemExit(f"{where}: ENTRYPOINT must be a JSON array ({exc})") from exc
            if not isinstance(entrypoint, list) or not all(isinstance(w, str) for w in entrypoint):
                raise SystemExit(f"{where}: ENTRYPOINT must be a JSON array of strings")
            result["entrypoint"] = entrypoint
        else:
            raise SystemExit(f"{where}: the image test does not know the {instruction} instruction")
    for key in ("from", "copy_src", "copy_dst", "entrypoint"):
        if key not in result:
            raise SystemExit(f"Dockerfile has no {key.upper().replace('_', ' ')}")
    # A build's RUN sees the ARGs as environment variables too (ENV wins over an ARG of the same name);
    # the running container sees only the ENVs.
    result["build_env"] = [f"{k}={v}" for k, v in {**scope, **env}.items()]
    result["env"] = [f"{k}={v}" for k, v in env.items()]
    return result


def bash_array(name: str, words: list[str]) -> str:
    return f"{name}=({' '.join(shlex.quote(w) for w in words)})"


def ignored(path: str, patterns: list[str]) -> bool:
    """A path is left out when it or one of its parent directories matches a .dockerignore pattern."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        for prefix in prefixes:
            if fnmatch.fnmatchcase(prefix, pattern) or (
                pattern.startswith("**/") and fnmatch.fnmatchcase(prefix.rsplit("/", 1)[-1], pattern[3:])
            ):
                return True
    return False


# What the build context must leave out (whether or not git ignores it too), and what it must keep.
MUST_LEAVE_OUT = (
    ".git/HEAD",
    ".venv/bin/python",
    ".sandbox/logs/agent.log",
    "tests/conftest.py",
    "agent/__pycache__/app.cpython-311.pyc",
    "agent/x.pyc",
    ".pytest_cache/README.md",
    ".mypy_cache/3.11/agent/app.meta.json",
    ".ruff_cache/CACHEDIR.TAG",
    "build/lib/agent/app.py",
    "dist/browser_vm_agent-0.1.0.tar.gz",
    "browser_vm_agent.egg-info/PKG-INFO",
)
MUST_KEEP = (
    "pyproject.toml",
    "agent/app.py",
    "agent/openapi.yaml",
    "controlplane/__init__.py",
    "supervisor/supervisord.conf",
    "supervisor/chromium-launcher",
    "images/install.sh",
    "images/healthcheck.py",
)


def check_dockerignore(patterns: list[str]) -> None:
    wrong = [f"lets in {p}" for p in MUST_LEAVE_OUT if not ignored(p, patterns)]
    wrong += [f"leaves out {p}" for p in MUST_KEEP if ignored(p, patterns)]
    if wrong:
        raise SystemExit(".dockerignore " + "; ".join(wrong))


def context_files(repo: str) -> list[str]:
    # The files git knows (tracked, and new ones not ignored), as a fresh clone plus local edits would have.
    try:
        listing = subprocess.run(
            ["git", "-C", repo, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            check=True,
            capture_output=True,
        ).stdout.decode()
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: every file, less .dockerignore
        listing = "\0".join(
            os.path.relpath(os.path.join(top, name), repo)
            for top, _, names in os.walk(repo)
            for name in names
        )
    patterns: list[str] = []
    dockerignore = os.path.join(repo, ".dockerignore")
    if os.path.exists(dockerignore):
        with open(dockerignore, encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if line.startswith("!"):
                    raise SystemExit(".dockerignore: exceptions (!) are not understood by the image test")
                if line and not line.startswith("#"):
                    patterns.append(line.strip("/"))
    check_dockerignore(patterns)
    files = sorted(set(filter(None, listing.split("\0"))))
    return [f for f in files if os.path.lexists(os.path.join(repo, f)) and not ignored(f, patterns)]


def main(argv: list[str]) -> None:
    if not argv:
        raise SystemExit(__doc__)
    if argv[0] == "--context":
        sys.stdout.write("".join(f + "\0" for f in context_files(argv[1])))
        return
    with open(argv[0], encoding="utf-8") as fh:
        text = fh.read()
    build_args = dict(arg.split("=", 1) for arg in argv[1:])
    parsed = parse(text, build_args)
    env, build_env = parsed["env"], parsed["build_env"]
    run = parsed["run"]
    entrypoint = parsed["entrypoint"]
    assert isinstance(env, list) and isinstance(build_env, list)
    assert isinstance(run, list) and isinstance(entrypoint, list)
    print(f"DF_FROM={shlex.quote(str(parsed['from']))}")
    print(bash_array("DF_BUILD_ENV", build_env))
    print(bash_array("DF_ENV", env))
    print(f"DF_COPY_SRC={shlex.quote(str(parsed['copy_src']))}")
    print(f"DF_COPY_DST={shlex.quote(str(parsed['copy_dst']))}")
    print(bash_array("DF_RUN", run))
    run_cwd = parsed["run_cwd"]
    assert isinstance(run_cwd, list)
    print(bash_array("DF_RUN_CWD", run_cwd))
    print(f"DF_WORKDIR={shlex.quote(str(parsed.get('workdir', '/')))}")
    print(bash_array("DF_ENTRYPOINT", entrypoint))
    health = parsed.get("healthcheck") or {"command": [], **HEALTHCHECK_DEFAULTS}
    assert isinstance(health, dict)
    print(bash_array("DF_HEALTHCHECK", health["command"]))
    for name in ("timeout", "start-period", "interval"):
        print(f"DF_HEALTHCHECK_{name.upper().replace('-', '_')}={health[name]:g}")
    print(f"DF_HEALTHCHECK_RETRIES={int(health['retries'])}")


if __name__ == "__main__":
    main(sys.argv[1:])
