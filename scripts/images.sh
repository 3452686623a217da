#!/usr/bin/env bash
# Build (and optionally push) the project's images: cpu, gpu-train, gpu-infer (`make images`).
#
# Usage: scripts/images.sh [--push] [NAME ...]
#   NAME           one of the keys of ppminilm.cluster.platform.IMAGES (default: all of them)
#   --push         push each image after building it
# Environment:
#   PYTHON         interpreter with ppminilm's build dependencies (default: .venv/bin/python)
#   IMAGE_REGISTRY replaces the registry prefix of every tag (e.g. registry.example.com/ml)
#   BASE_IMAGE     base of the cpu and gpu-train images (default python:3.11.10-slim-bookworm;
#                  a Debian base is built here with debootstrap when no registry serves it)
#   CUDA_BASE_IMAGE base of gpu-infer (default nvidia/cuda:11.8.0-cudnn8-runtime-ubuntu22.04)
#   DOCKER_HOST    the engine; without one that answers, scripts/dockerd.sh ensure starts a
#                  private dockerd (root, Debian: installs docker.io if needed)
#   PPMINILM_CACHE cache of the Debian base and the wheelhouses (default ~/.cache/ppminilm)
# Exit codes: 0 ok (images that cannot be built here are skipped with the reason), 2 usage,
# 3 no Docker engine, 1 a build or push failed.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-${root}/.venv/bin/python}"

for arg in "$@"; do
    if [[ "${arg}" == "-h" || "${arg}" == "--help" ]]; then
        sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
        exit 0
    fi
done
if [[ ! -x "${python}" ]] && ! command -v "${python}" >/dev/null 2>&1; then
    echo "images.sh: ${python} not found (run make install, or set PYTHON)" >&2
    exit 2
fi
bash "${root}/scripts/dockerd.sh" ensure
DOCKER_HOST="$(bash "${root}/scripts/dockerd.sh" host)"
export DOCKER_HOST
cd "${root}"
PYTHONPATH="${root}/src:${root}${PYTHONPATH:+:${PYTHONPATH}}" exec "${python}" -m images.build "$@"
