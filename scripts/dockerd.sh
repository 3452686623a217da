#!/usr/bin/env bash
# A private Docker engine for building and running the project's images on a machine without one.
#
# Usage: scripts/dockerd.sh start|stop|status|host|ensure
#   start   start dockerd in the background (root only) with its own data root, exec root,
#           pidfile and socket; waits until it answers (PPMINILM_DOCKERD_TIMEOUT s, default 60)
#   stop    stop the dockerd this script started (SIGTERM, then waits for it to exit)
#   status  exit 0 when that dockerd answers
#   host    print the DOCKER_HOST to use: $DOCKER_HOST if set, else the default engine if it
#           answers, else this script's socket if it answers; prints nothing when none does
#   ensure  'host' answers, or install docker.io (apt-get, root only) and 'start'
#           (PPMINILM_DOCKERD_AUTOSTART=0: fail instead)
# Environment:
#   PPMINILM_DOCKERD_ROOT  state directory (default /var/lib/ppminilm-docker): data root, log
#   PPMINILM_DOCKERD_RUN   runtime directory (default /run/ppminilm-docker): socket, pidfile,
#                          exec root (keep it short: socket paths are limited to 108 bytes)
#   DOCKER                 docker-compatible CLI (default: docker)
#   PPMINILM_DOCKERD_STORAGE storage driver (default overlay2; vfs is the slow fallback: every
#                          container start copies the whole image)
# The engine has no bridge network and touches no iptables rules: builds and containers use the
# host's network (docker build/run --network host). Exit codes: 0 ok, 2 usage, 3 no engine.
set -euo pipefail

readonly EXIT_USAGE=2
readonly EXIT_NO_ENGINE=3
state="${PPMINILM_DOCKERD_ROOT:-/var/lib/ppminilm-docker}"
run="${PPMINILM_DOCKERD_RUN:-/run/ppminilm-docker}"
storage="${PPMINILM_DOCKERD_STORAGE:-overlay2}"
timeout_s="${PPMINILM_DOCKERD_TIMEOUT:-60}"
socket="unix://${run}/docker.sock"
pidfile="${run}/dockerd.pid"
log="${state}/dockerd.log"
docker="${DOCKER:-docker}"

say() { echo "dockerd.sh: $*" >&2; }

answers() {  # answers HOST: the engine at HOST replies to 'docker version'
    DOCKER_HOST="$1" timeout 10 "${docker}" version --format '{{.Server.Version}}' >/dev/null 2>&1
}

engine_host() {
    if [[ -n "${DOCKER_HOST:-}" ]]; then
        echo "${DOCKER_HOST}"
    elif answers "unix:///var/run/docker.sock"; then
        echo "unix:///var/run/docker.sock"
    elif [[ -S "${run}/docker.sock" ]] && answers "${socket}"; then
        echo "${socket}"
    fi
}

start() {
    if [[ -S "${run}/docker.sock" ]] && answers "${socket}"; then
        say "already running (${socket})"
        return 0
    fi
    if ((EUID != 0)); then
        say "starting dockerd needs root; start a Docker engine yourself and set DOCKER_HOST"
        exit "${EXIT_NO_ENGINE}"
    fi
    if ! command -v dockerd >/dev/null 2>&1; then
        say "dockerd is not installed (apt-get install -y docker.io)"
        exit "${EXIT_NO_ENGINE}"
    fi
    mkdir -p "${state}/data" "${run}/exec"
    # A stale pidfile from a killed daemon makes dockerd refuse to start.
    if [[ -f "${pidfile}" ]] && ! kill -0 "$(cat "${pidfile}")" 2>/dev/null; then
        rm -f "${pidfile}"
    fi
    say "starting dockerd (storage ${storage}, data ${state}/data, socket ${socket}, log ${log})"
    nohup dockerd \
        --data-root "${state}/data" \
        --exec-root "${run}/exec" \
        --pidfile "${pidfile}" \
        --host "${socket}" \
        --storage-driver "${storage}" \
        --bridge none --iptables=false --ip6tables=false --ip-masq=false \
        >"${log}" 2>&1 </dev/null &
    local waited=0
    until answers "${socket}"; do
        if ((waited >= timeout_s)); then
            say "dockerd did not answer on ${socket} within ${timeout_s} s; last log lines:"
            tail -n 20 "${log}" >&2 || true
            exit "${EXIT_NO_ENGINE}"
        fi
        if [[ -f "${pidfile}" ]] && ! kill -0 "$(cat "${pidfile}")" 2>/dev/null; then
            say "dockerd exited during start-up; last log lines:"
            tail -n 20 "${log}" >&2 || true
            exit "${EXIT_NO_ENGINE}"
        fi
        sleep 1
        waited=$((waited + 1))
    done
    say "ready after ${waited} s: export DOCKER_HOST=${socket}"
}

stop() {
    if [[ ! -f "${pidfile}" ]]; then
        say "not running (no ${pidfile})"
        return 0
    fi
    local pid
    pid="$(cat "${pidfile}")"
    if kill -0 "${pid}" 2>/dev/null; then
        kill -TERM "${pid}"
        # dockerd stops its containers (10 s grace each) and its containerd before exiting.
        for _ in $(seq 1 60); do
            kill -0 "${pid}" 2>/dev/null || break
            sleep 1
        done
        if kill -0 "${pid}" 2>/dev/null; then
            say "dockerd (pid ${pid}) still running after 60 s"
            exit 1
        fi
    fi
    rm -f "${pidfile}"
    say "stopped"
}

ensure() {
    local host
    host="$(engine_host)"
    if [[ -n "${host}" ]] && answers "${host}"; then
        return 0
    fi
    if [[ "${PPMINILM_DOCKERD_AUTOSTART:-1}" == "0" ]]; then
        say "no Docker engine answers (${host:-no DOCKER_HOST, no default socket}); start one" \
            "(scripts/dockerd.sh start) or set DOCKER_HOST"
        exit "${EXIT_NO_ENGINE}"
    fi
    if ! command -v dockerd >/dev/null 2>&1; then
        if ((EUID == 0)) && command -v apt-get >/dev/null 2>&1; then
            say "installing docker.io with apt-get"
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                docker.io >/dev/null
        else
            say "no Docker engine answers and dockerd is not installed: install Docker" \
                "(Debian: apt-get install docker.io) or set DOCKER_HOST"
            exit "${EXIT_NO_ENGINE}"
        fi
    fi
    start
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) answers "${socket}" ;;
    host) engine_host ;;
    ensure) ensure ;;
    *)
        sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
        exit "${EXIT_USAGE}"
        ;;
esac
