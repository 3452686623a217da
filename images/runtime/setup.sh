#!/usr/bin/env bash
# Runtime set-up, run once by images/runtime/Dockerfile as root:
#   setup.sh UID [PACKAGE[=VERSION] ...]
# Installs the apt packages that are missing (none on the local Debian base, which has them
# already, so the build needs no network there), checks pinned versions, creates the Python 3.11
# venv at $VIRTUAL_ENV and the non-root user UID (group 0) with a writable home.
set -euo pipefail

uid="$1"
shift
missing=()
for spec in "$@"; do
    name="${spec%%=*}"
    want=""
    [[ "${spec}" == *=* ]] && want="${spec#*=}"
    have="$(dpkg-query -W -f='${Status} ${Version}' "${name}" 2>/dev/null || true)"
    if [[ "${have}" != "install ok installed "* ]]; then
        missing+=("${spec}")
    elif [[ -n "${want}" && "${have##* }" != "${want}" ]]; then
        echo "setup.sh: ${name} ${have##* } is installed, ${want} is required" >&2
        exit 1
    fi
done
# The venv needs python3.11 with its venv module (a Debian package, or the official python
# image's own build in /usr/local).
if ! python3.11 -c 'import ensurepip, venv' 2>/dev/null; then
    missing+=(python3.11 python3.11-venv)
fi
if ((${#missing[@]} > 0)); then
    echo "setup.sh: installing ${missing[*]}"
    apt-get update
    apt-get install -y --no-install-recommends "${missing[@]}"
    rm -rf /var/lib/apt/lists/*
fi
for spec in "$@"; do
    if [[ "${spec}" == *=* ]]; then
        apt-mark hold "${spec%%=*}" >/dev/null
    fi
done

python3.11 -m venv "${VIRTUAL_ENV}"
useradd --uid "${uid}" --gid 0 --home-dir "${HOME}" --create-home --shell /usr/sbin/nologin \
    ppminilm
# Group 0 may write where a step writes: an arbitrary uid of group 0 (OpenShift) works too.
mkdir -p /gcs /minio /s3 /opt/ppminilm
chown "${uid}:0" "${HOME}" /gcs /minio /s3
chmod 2775 "${HOME}" /gcs /minio /s3
chmod 0755 /usr/local/lib/ppminilm-runtime/entrypoint.sh
rm -rf /root/.cache /tmp/*
