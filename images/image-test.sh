#!/usr/bin/env bash
# `make image-test`: proves the Dockerfile on a bare Debian root, without a Docker engine.
#   1. a bare `debootstrap --variant=minbase` root of the Dockerfile's FROM suite, built once and cached;
#   2. a fresh overlay on it per run (so every run is a fresh install), the build context COPYed in, and the
#      Dockerfile's RUN lines run in it with the Dockerfile's ENV/ARGs (host network: apt and pip need it);
#   3. the ENTRYPOINT started as PID 1 of its own net+pid+mount namespaces (only `lo`; pivot_root into the
#      root), so the image's fixed ports and display :99 never meet the host's, and images/smoke.py, then
#      the Dockerfile's HEALTHCHECK command (it must report healthy), run inside the same namespaces;
#   4. everything stopped and unmounted again, on success, failure or interrupt.
# Root only. The apt mirror, apt network settings, CA bundle and pip settings are the host's own.
#   IMAGE_TEST_CACHE=/var/cache/browser-vm-agent  cached roots, apt archives, pip cache (rm -rf to clear)
#   IMAGE_TEST_BUILD_ARGS="HEADLESS=1"            build args, as `docker build --build-arg`
#   IMAGE_TEST_LOCK=<file>                         flock this file while the image runs (shared test lock)
#   IMAGE_TEST_KEEP=1                              keep the run's dir (/var/tmp/bva-image-test.*) afterwards
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
self="$repo/images/image-test.sh"
cache="${IMAGE_TEST_CACHE:-/var/cache/browser-vm-agent}"
default_path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin # what a Docker build/run sets

log() { echo "image-test: $*"; }
die() {
  echo "image-test: error: $*" >&2
  exit 1
}

# The filesystems a container gets; run inside a private mount namespace, so they vanish with it.
mount_container_fs() {
  local r="$1"
  mount -t proc proc "$r/proc"
  mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$r/sys"
  mount -t tmpfs -o mode=755,nosuid,size=16m tmpfs "$r/dev"
  local spec name kind major minor
  for spec in null:c:1:3 zero:c:1:5 full:c:1:7 random:c:1:8 urandom:c:1:9 tty:c:5:0; do
    IFS=: read -r name kind major minor <<<"$spec"
    mknod -m 666 "$r/dev/$name" "$kind" "$major" "$minor"
  done
  mkdir -m 755 "$r/dev/pts" "$r/dev/shm"
  mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts "$r/dev/pts"
  ln -s pts/ptmx "$r/dev/ptmx"
  ln -s /proc/self/fd "$r/dev/fd"
  ln -s /proc/self/fd/0 "$r/dev/stdin"
  ln -s /proc/self/fd/1 "$r/dev/stdout"
  ln -s /proc/self/fd/2 "$r/dev/stderr"
  mount -t tmpfs -o mode=1777,nosuid,nodev,size=2g tmpfs "$r/dev/shm" # Chromium's shared memory
  mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$r/tmp"              # the root's own /tmp/.X11-unix
}

# --- the parts that run inside namespaces (this script calls itself) --------------------------------------
case "${1:-}" in
  _build) # _build ROOT CWD CMD ENV...: one RUN line, in a fresh pid+mount namespace, host network
    r="$2" cwd="$3" cmd="$4"
    shift 4
    mount_container_fs "$r"
    mkdir -p "$r/var/cache/apt/archives" "$r/root/.cache/pip"
    mount --bind "$cache/apt-archives" "$r/var/cache/apt/archives"
    mount --bind "$cache/pip" "$r/root/.cache/pip"
    exec chroot "$r" /usr/bin/env -i "$@" /bin/sh -c 'cd "$1" && eval "$2"' sh "$cwd" "$cmd"
    ;;
  _boot) # _boot ROOT WORKDIR -- ENV... -- ENTRYPOINT...: becomes the ENTRYPOINT, PID 1 of its namespaces
    r="$2" wd="$3"
    shift 4
    env_args=()
    while [ "$1" != -- ]; do
      env_args+=("$1")
      shift
    done
    shift
    ip link set lo up
    mount_container_fs "$r"
    # pivot_root, not chroot, as a container runtime does: the kernel refuses a new user namespace to a
    # chrooted process, and Chromium's sandbox needs one. The old root is stacked under / and detached.
    cd "$r"
    pivot_root . .
    umount -l .
    exec /usr/bin/env -i "${env_args[@]}" /bin/sh -c 'cd "$1" && shift && exec "$@"' sh "$wd" "$@"
    ;;
  "") ;;
  *) die "unknown argument $1" ;;
esac

# --- the run ------------------------------------------------------------------------------------------------
[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap, chroot, mounts, namespaces)"
started=$SECONDS

need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v ip >/dev/null || need+=(iproute2)
command -v unshare >/dev/null || need+=(util-linux)
command -v git >/dev/null || need+=(git)
if ((${#need[@]})); then
  log "apt-get install ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

read -r -a build_args <<<"${IMAGE_TEST_BUILD_ARGS:-}"
eval "$(python3 "$repo/images/dockerfile.py" "$repo/Dockerfile" "${build_args[@]}")"
case "$DF_FROM" in
  debian:*) suite="${DF_FROM#debian:}" suite="${suite%-slim}" ;;
  *) die "FROM $DF_FROM: the image test builds Debian roots only" ;;
esac

# The mirror of the host's own apt sources (deb822 first, then one-line), for the suite's main component.
mirror="$(
  SUITE="$suite" python3 - <<'EOF'
import glob, os, re
suite = os.environ["SUITE"]
for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
    for stanza in re.split(r"\n\s*\n", open(path).read()):
        fields = {}
        for line in stanza.splitlines():
            if line and not line.startswith("#") and ":" in line and not line[0].isspace():
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.split()
        if fields.get("enabled", ["yes"])[0] == "no":
            continue
        if "deb" in fields.get("types", []) and suite in fields.get("suites", []):
            if "main" in fields.get("components", []):
                print(fields["uris"][0]); raise SystemExit
for path in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list"))]:
    if os.path.exists(path):
        for line in open(path):
            words = re.sub(r"\[[^]]*\]", "", line.split("#")[0]).split()
            if len(words) >= 4 and words[0] == "deb" and words[2] == suite and "main" in words[3:]:
                print(words[1]); raise SystemExit
EOF
)"
[ -n "$mirror" ] || die "no apt source for $suite main in the host's /etc/apt (needed for debootstrap)"

mkdir -p "$cache/roots" "$cache/apt-archives/partial" "$cache/pip"
# One image test per machine at a time: they share the cached root and the apt/pip caches.
exec 9>"$cache/.image-test.lock"
flock 9

# The bare root: what defines it is its key, so a change of suite, variant or mirror builds a new one.
root_recipe="suite=$suite variant=minbase mirror=$mirror recipe=1"
key="$(printf '%s' "$root_recipe" | sha256sum | cut -c1-16)"
base="$cache/roots/$suite-minbase-$key"
if [ ! -e "$base.done" ]; then
  log "building the bare $suite root (debootstrap --variant=minbase; cached in $base)"
  rm -rf "$base" "$base.done"
  t0=$SECONDS
  debootstrap --variant=minbase --cache-dir="$cache/apt-archives" "$suite" "$base" "$mirror" \
    >"$cache/roots/debootstrap.log" 2>&1 || {
    tail -n 30 "$cache/roots/debootstrap.log" >&2
    rm -rf "$base"
    die "debootstrap failed"
  }
  rm -f "$base/etc/hostname" "$base/etc/resolv.conf" # the host's, copied in by debootstrap
  touch "$base.done"
  log "bare root built in $((SECONDS - t0)) s"
  for old in "$cache"/roots/*-minbase-*; do # older keys are dead weight
    [ "$old" = "$base" ] || [ "$old" = "$base.done" ] || rm -rf "$old"
  done
fi

# --- a fresh overlay, torn down whatever happens ------------------------------------------------------------
work="$(mktemp -d /var/tmp/bva-image-test.XXXXXX)"
root="$work/root"
summary=""   # smoke.py's closing line, repeated as the very last line (CI reads the closing lines)
child=""     # the unshare running now (its --kill-child takes the whole namespace down with it)
boot_pid=""  # PID 1 of the running image, as the host sees it
cleanup() {
  local rc=$? deadline
  trap - EXIT INT TERM
  if [ -n "$boot_pid" ] && kill -0 "$boot_pid" 2>/dev/null; then
    kill -TERM "$boot_pid" 2>/dev/null || true # supervisord stops its programs
    deadline=$((SECONDS + 30))
    while kill -0 "$boot_pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
  fi
  if [ -n "$child" ] && kill -0 "$child" 2>/dev/null; then
    kill -KILL "$child" 2>/dev/null || true # --kill-child: PID 1 dies, and with it the pid namespace
    wait "$child" 2>/dev/null || true
  fi
  if mountpoint -q "$root"; then
    umount "$root" 2>/dev/null || umount -l "$root" || true
  fi
  if findmnt -rn -o TARGET | grep -qF "$work"; then
    echo "image-test: error: still mounted under $work:" >&2
    findmnt -rn -o TARGET | grep -F "$work" >&2
    rc=1
  elif [ "${IMAGE_TEST_KEEP:-0}" = 1 ]; then
    log "kept $work"
  else
    rm -rf "$work"
  fi
  if [ -n "$summary" ]; then
    echo "$summary"
  elif [ "$rc" -ne 0 ]; then
    echo "image-test: 0 passed, 1 failed" # it failed before the smoke test could run
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'log interrupted; exit 130' INT
trap 'log terminated; exit 143' TERM

# Runs a command in the background and waits, so that a signal reaches the trap at once.
run_child() {
  "$@" &
  child=$!
  local rc=0
  wait "$child" || rc=$?
  child=""
  return "$rc"
}

mkdir -p "$work/upper" "$work/ovl" "$root"
mount -t overlay overlay -o "lowerdir=$base,upperdir=$work/upper,workdir=$work/ovl" "$root"

# The host's way to its registries: apt sources and network settings, CA bundle, pip settings.
rm -f "$root/etc/apt/sources.list"
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
  [ -f "$f" ] && cp -L "$f" "$root$f"
done
for f in /etc/apt/apt.conf.d/*; do # only network settings (proxy, validity); not the host's cache policy
  [ -f "$f" ] && grep -q '^[[:space:]]*Acquire::' "$f" && cp -L "$f" "$root$f"
done
mkdir -p "$root/etc/ssl/certs"
host_ca=/etc/ssl/certs/ca-certificates.crt
if [ -f "$host_ca" ]; then
  cp -L "$host_ca" "$root/etc/ssl/certs/ca-certificates.crt" # until the ca-certificates package lands
  cp -L "$host_ca" "$root/etc/ssl/host-ca-certificates.crt"  # for pip, whatever that package writes
fi
pip_confs=()
for f in /etc/pip.conf /etc/xdg/pip/* "$HOME/.config/pip/pip.conf"; do
  [ -f "$f" ] || continue
  dest="$root$f"
  [ "$f" = "$HOME/.config/pip/pip.conf" ] && dest="$root/root/.config/pip/pip.conf"
  mkdir -p "$(dirname "$dest")"
  cp -L "$f" "$dest"
  [[ "$f" == *.conf ]] && pip_confs+=("$dest")
done
pip_env=()
while IFS='=' read -r name value; do
  [[ "$name" == PIP_* ]] && pip_env+=("$name=$value")
done < <(env)
# Settings naming a local path that the root lacks (the host's own wheel folders) would only make pip
# warn on every package: drop them from the copied config files and from the PIP_* variables.
mapfile -t pip_env < <(
  ROOT="$root" python3 - "${pip_confs[@]}" "${pip_env[@]}" <<'EOF'
import configparser, os, sys
root = os.environ["ROOT"]

def keep(value):
    words = []
    for word in value.split():
        path = word[len("file://"):] if word.startswith("file://") else word
        if not path.startswith("/") or os.path.exists(root + path):
            words.append(word)
    return " ".join(words)

for arg in sys.argv[1:]:
    if arg.startswith("PIP_"):
        name, _, value = arg.partition("=")
        if keep(value):
            print(f"{name}={keep(value)}")
        continue
    conf = configparser.RawConfigParser()
    conf.read(arg)
    for section in conf.sections():
        for option, value in conf.items(section):
            if keep(value):
                conf.set(section, option, keep(value))
            else:
                conf.remove_option(section, option)
    with open(arg, "w") as fh:
        conf.write(fh)
EOF
)
cp -L /etc/resolv.conf "$root/etc/resolv.conf"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
echo browser-vm >"$root/etc/hostname"

# COPY: the build context (git's files less .dockerignore), owned by root as Docker makes them.
[ "$DF_COPY_SRC" = . ] || die "COPY $DF_COPY_SRC: only COPY . is understood"
mkdir -p "$root$DF_COPY_DST"
python3 "$repo/images/dockerfile.py" --context "$repo" |
  tar -C "$repo" --null -T - --owner=0 --group=0 -cf - | tar -C "$root$DF_COPY_DST" -xf -

# The host's pip settings (index, timeout) reach the build as they reach pip on the host.
build_env=(PATH="$default_path" HOME=/root HOSTNAME=browser-vm "${DF_BUILD_ENV[@]}" "${pip_env[@]}")
[ -f "$root/etc/ssl/host-ca-certificates.crt" ] && build_env+=(PIP_CERT=/etc/ssl/host-ca-certificates.crt)

t0=$SECONDS
for i in "${!DF_RUN[@]}"; do
  log "RUN ${DF_RUN[$i]}"
  run_child unshare --pid --fork --kill-child --mount --propagation private -- \
    "$self" _build "$root" "${DF_RUN_CWD[$i]}" "${DF_RUN[$i]}" "${build_env[@]}" ||
    die "the Dockerfile's RUN failed"
done
rm -f "$root/etc/ssl/host-ca-certificates.crt"
log "RUN done in $((SECONDS - t0)) s"

# --- the image, running -------------------------------------------------------------------------------------
if [ -n "${IMAGE_TEST_LOCK:-}" ]; then
  t0=$SECONDS
  exec 8>"$IMAGE_TEST_LOCK"
  flock -n 8 || {
    log "waiting for $IMAGE_TEST_LOCK"
    flock 8
  }
  ((SECONDS - t0 < 2)) || log "waited $((SECONDS - t0)) s for $IMAGE_TEST_LOCK"
fi
t0=$SECONDS
logs="$root/home/kernel/logs"
show_logs() {
  local f
  for f in supervisord xvfb chromium agent; do
    [ -f "$logs/$f.log" ] || continue
    echo "----- tail of $f.log -----"
    tail -n 40 "$logs/$f.log"
  done
}
run_env=(PATH="$default_path" HOME=/root HOSTNAME=browser-vm "${DF_ENV[@]}")
# The image binds 0.0.0.0, so it needs a session-token key (agent/auth.py), as `docker run -e` gives it: a
# fresh keypair per run, made with the image's own Python; the smoke test signs its token with the secret.
read -r jwt_public smoke_jwt < <(chroot "$root" /usr/bin/env -i PATH="$default_path" /bin/sh -c \
  'cd /opt/agent/src && exec /opt/agent/venv/bin/python -c "
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from agent.jwt import public_key_text, session_token
key = Ed25519PrivateKey.generate()
print(public_key_text(key.public_key()), session_token(key, \"image-test\", \"\", 3600))"') ||
  die "could not make a session-token key with the image's Python"
run_env+=(AGENT_CONTROL_JWT_PUBLIC_KEY="$jwt_public")
log "ENTRYPOINT ${DF_ENTRYPOINT[*]}"
unshare --net --pid --fork --kill-child --mount --propagation private -- \
  "$self" _boot "$root" "$DF_WORKDIR" -- "${run_env[@]}" -- "${DF_ENTRYPOINT[@]}" &
child=$!
deadline=$((SECONDS + 30))
while :; do # PID 1 is ours once the entrypoint has been exec'd (the mounts are then in place)
  boot_pid="$(pgrep -P "$child" || true)"
  [ -n "$boot_pid" ] && [ "$(readlink "/proc/$boot_pid/exe" 2>/dev/null)" != "$(readlink -f /bin/bash)" ] && break
  kill -0 "$child" 2>/dev/null || die "the entrypoint did not start"
  ((SECONDS < deadline)) || die "the entrypoint did not start in 30 s"
  sleep 0.1
done
smoke_rc=0
{ # in the background, so that a signal reaches the trap at once (the smoke dies with the pid namespace)
  nsenter -t "$boot_pid" --net --mount --pid --root --wd -- /usr/bin/env -i "${run_env[@]}" \
    SMOKE_JWT="$smoke_jwt" /opt/agent/venv/bin/python - <"$repo/images/smoke.py" | tee "$work/smoke.out"
} &
wait $! || smoke_rc=$?
summary="$(grep -E '^image-test: [0-9]+ passed, [0-9]+ failed$' "$work/smoke.out" | tail -n 1 || true)"
# The HEALTHCHECK, as Docker runs it (in the container, within its timeout), once the smoke test passed.
if [ "$smoke_rc" -eq 0 ]; then
  if ((${#DF_HEALTHCHECK[@]} == 0)); then
    log "FAIL: the Dockerfile has no HEALTHCHECK"
    summary="image-test: 0 passed, 1 failed"
    smoke_rc=1
  else
    health_rc=0
    nsenter -t "$boot_pid" --net --mount --pid --root --wd -- /usr/bin/env -i "${run_env[@]}" \
      timeout "$DF_HEALTHCHECK_TIMEOUT" "${DF_HEALTHCHECK[@]}" || health_rc=$?
    smoke_passed="$(sed -E 's/^image-test: ([0-9]+) passed.*/\1/' <<<"$summary")"
    if [ "$health_rc" -eq 0 ]; then
      log "ok   HEALTHCHECK ${DF_HEALTHCHECK[*]}: healthy"
      summary="image-test: $((smoke_passed + 1)) passed, 0 failed"
    else
      log "FAIL HEALTHCHECK ${DF_HEALTHCHECK[*]}: exit $health_rc"
      summary="image-test: $smoke_passed passed, 1 failed"
      smoke_rc=1
    fi
  fi
fi
if [ "$smoke_rc" -ne 0 ]; then
  show_logs
fi
log "image started and smoke-tested in $((SECONDS - t0)) s; finished in $((SECONDS - started)) s"
exit "$smoke_rc"
