#!/usr/bin/env bash
# Build (and optionally push) the project's images: cpu, gpu-train, gpu-infer.
#
# Tags come from ppminilm.cluster.platform.IMAGES, so components, pipelines and images never disagree.
#
# Usage: scripts/images.sh [--push] [NAME ...]
#   NAME           one of the keys of ppminilm.cluster.platform.IMAGES (default: all of them)
#   --push         push each image after building it
# Environment:
#   PYTHON         interpreter that can import ppminilm (default: python3; src/ is on PYTHONPATH)
#   IMAGE_REGISTRY replaces the registry prefix of every tag (e.g. localhost:5000/ppminilm)
#   DOCKER         docker-compatible CLI (default: docker)
#   DOCKER_BUILD_FLAGS extra flags for "docker build", split on spaces (e.g. "--pull --no-cache")
# Exit codes: 0 ok, 2 usage error, 3 no Docker engine is running, other: a build or push failed.
set -euo pipefail

readonly EXIT_USAGE=2
readonly EXIT_NO_ENGINE=3

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
docker="${DOCKER:-docker}"

usage() {
    sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

push=0
requested=()
while (($# > 0)); do
    case "$1" in
        --push) push=1 ;;
        -h | --help)
            usage
            exit 0
            ;;
        -*)
            echo "images.sh: unknown option '$1'" >&2
            usage >&2
            exit "${EXIT_USAGE}"
            ;;
        *) requested+=("$1") ;;
    esac
    shift
done

# "name<TAB>reference" lines and the package version, read from the package itself.
py_path="${root}/src${PYTHONPATH:+:${PYTHONPATH}}"
if ! image_lines="$(PYTHONPATH="${py_path}" "${python}" -c '
import os
from ppminilm import __version__
from ppminilm.cluster.platform import IMAGE_REGISTRY, IMAGES
registry = os.environ.get("IMAGE_REGISTRY", "").rstrip("/") or IMAGE_REGISTRY
for name, ref in sorted(IMAGES.items()):
    print(name, registry + ref[len(IMAGE_REGISTRY):], sep="\t")
print("__version__", __version__, sep="\t")
')"; then
    echo "images.sh: cannot read ppminilm.cluster.platform.IMAGES with ${python}" >&2
    exit 1
fi

declare -A tags=()
version=""
while IFS=$'\t' read -r name ref; do
    if [[ "${name}" == "__version__" ]]; then
        version="${ref}"
    else
        tags["${name}"]="${ref}"
    fi
done <<<"${image_lines}"

if ((${#requested[@]} == 0)); then
    mapfile -t requested < <(printf '%s\n' "${!tags[@]}" | sort)
fi
for name in "${requested[@]}"; do
    if [[ -z "${tags[${name}]+set}" ]]; then
        echo "images.sh: unknown image '${name}'; known: ${!tags[*]}" >&2
        exit "${EXIT_USAGE}"
    fi
    if [[ ! -f "${root}/images/${name}/Dockerfile" ]]; then
        echo "images.sh: images/${name}/Dockerfile is missing" >&2
        exit "${EXIT_USAGE}"
    fi
done

if ! command -v "${docker}" >/dev/null 2>&1 || ! "${docker}" info >/dev/null 2>&1; then
    echo "images.sh: no Docker engine is running; images not built" \
        "(start dockerd or point DOCKER_HOST at one, then run 'make images' again)" >&2
    exit "${EXIT_NO_ENGINE}"
fi

read -r -a extra_flags <<<"${DOCKER_BUILD_FLAGS:-}"
for name in "${requested[@]}"; do
    tag="${tags[${name}]}"
    echo "images.sh: building ${name} -> ${tag}"
    "${docker}" build \
        --file "${root}/images/${name}/Dockerfile" \
        --build-arg "VERSION=${version}" \
        --tag "${tag}" \
        "${extra_flags[@]}" \
        "${root}"
    if ((push)); then
        echo "images.sh: pushing ${tag}"
        "${docker}" push "${tag}"
    fi
done
echo "images.sh: done: ${requested[*]}"
