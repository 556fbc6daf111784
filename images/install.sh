#!/usr/bin/env bash
# The one install script: Debian packages + the Python venv. Used by `make`, `.ci/run` and the Dockerfile.
# Idempotent and quick when everything is present already.
#   VENV=<dir>        where the venv lives (default: <repo>/.venv)
#   EXTRAS=dev|none   install the dev/test extras too (default: dev)
#   EDITABLE=1|0      pip install -e (default 1; the image uses 0)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${VENV:-$repo/.venv}"
extras="${EXTRAS:-dev}"
editable="${EDITABLE:-1}"

# libatomic1: the Node inside the playwright wheel links it, and a bare bookworm root lacks it.
apt_packages=(
  xvfb x11-utils xdotool xclip ffmpeg chromium fonts-liberation fonts-noto-cjk dbus-x11 zip unzip
  procps ca-certificates python3 python3-venv python3-pip libatomic1
)

missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install.sh: apt-get install ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The unprivileged user Chromium runs as when supervisord runs as root (supervisor/chromium-launcher drops
# to it; AGENT_CHROMIUM_USER names another). No login, no home of its own: HOME is in the state dir.
if [ "$(id -u)" -eq 0 ] && ! id -u browser >/dev/null 2>&1; then
  echo "install.sh: creating user browser"
  useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin browser
fi

python_bin="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  echo "install.sh: creating venv $venv"
  "$python_bin" -m venv "$venv"
  "$venv/bin/pip" install -q -U pip
fi

# Reinstall only when the project metadata changed since the last install.
stamp="$venv/.browser-agent-install"
want="$(sha256sum "$repo/pyproject.toml" | cut -d' ' -f1) extras=$extras editable=$editable"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  target="$repo"
  [ "$extras" = "none" ] || target="$repo[$extras]"
  if [ "$editable" = "1" ]; then
    "$venv/bin/pip" install -q -e "$target"
  else
    "$venv/bin/pip" install -q "$target"
  fi
  echo "$want" > "$stamp"
fi
