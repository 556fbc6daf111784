# The browser VM image: Debian bookworm + Xvfb + Chromium + the agent under supervisord.
# It runs the same images/install.sh that `make` and CI run, so CI proves this recipe.
# supervisord and the agent run as root (as_root / as_user of /process need it); Chromium runs as the
# unprivileged `browser` user with its own sandbox on (it needs user namespaces: under Docker's default
# seccomp profile, run with a profile that allows them, or set AGENT_CHROMIUM_NO_SANDBOX=1; docs/running.md).
#   docker build -t browser-vm-agent .                                  (headful)
#   docker build --build-arg HEADLESS=1 -t browser-vm-agent:headless .  (Chromium --headless=new)
# It serves on 0.0.0.0, so it needs the session-token key (docs/api.md, "Session tokens"): run it with
# -e AGENT_CONTROL_JWT_PUBLIC_KEY=<key>, or -e AGENT_CONTROL_URL=… (the control plane sends the key), or
# explicitly -e AGENT_INSECURE_NO_AUTH=1; otherwise the agent refuses to start and says so in its log.
FROM debian:bookworm-slim

ARG HEADLESS=0
ENV DEBIAN_FRONTEND=noninteractive \
    VENV=/opt/agent/venv \
    EXTRAS=none \
    EDITABLE=0 \
    DISPLAY=:99 \
    AGENT_SCREEN=1920x1080x24 \
    AGENT_HOST=0.0.0.0 \
    AGENT_PORT=10001 \
    AGENT_CDP_PORT=9222 \
    AGENT_CHROMIUM_CDP_PORT=9223 \
    AGENT_STATE_DIR=/home/kernel \
    AGENT_REPO=/opt/agent/src \
    AGENT_PYTHON=/opt/agent/venv/bin/python \
    AGENT_SUPERVISOR_USER=root \
    AGENT_CHROMIUM_USER=browser \
    AGENT_CHROMIUM_NO_SANDBOX=0 \
    AGENT_HEADLESS=${HEADLESS}

COPY . /opt/agent/src
RUN /opt/agent/src/images/install.sh \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /home/kernel/logs

WORKDIR /opt/agent/src
EXPOSE 10001 9222
# Healthy once /health answers 200 on loopback (X and Chromium ready); the start period covers the first start.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["/opt/agent/venv/bin/python", "/opt/agent/src/images/healthcheck.py"]
ENTRYPOINT ["/opt/agent/venv/bin/python", "-m", "supervisor.supervisord", "-n", "-c", "/opt/agent/src/supervisor/supervisord.conf"]
