#!/usr/bin/env bash
# Build the local Debian base image (debootstrap --variant=minbase + docker import), used when
# no registry serves the official base image. Prints the image reference on stdout.
#
# Usage: scripts/debian-base.sh [PACKAGE ...]
#   PACKAGE  extra Debian packages to include (the runtime needs python3.11 and its venv module)
# Environment:
#   DEBIAN_SUITE    default bookworm (its python3 is 3.11)
#   DEBIAN_MIRROR   archive to bootstrap from (default: debootstrap's own default mirror)
#   PPMINILM_CACHE  cache directory (default ${XDG_CACHE_HOME:-$HOME/.cache}/ppminilm): the root
#                   file system tarball is kept there, keyed by suite, mirror, packages and RECIPE,
#                   so a later run on the same machine imports it instead of bootstrapping again
#   DOCKER          docker-compatible CLI (default: docker)
# Needs root (debootstrap) unless the tarball is cached. Exit codes: 0 ok, 2 usage, 4 no
# debootstrap, other: debootstrap or docker failed.
set -euo pipefail

readonly EXIT_NO_DEBOOTSTRAP=4
suite="${DEBIAN_SUITE:-bookworm}"
mirror="${DEBIAN_MIRROR:-}"
cache="${PPMINILM_CACHE:-${XDG_CACHE_HOME:-${HOME}/.cache}/ppminilm}/debian-base"
docker="${DOCKER:-docker}"

say() { echo "debian-base.sh: $*" >&2; }

# debootstrap does not resolve virtual packages: python3.11-venv needs python3.11-distutils,
# which python3-distutils provides.
packages=(python3.11 python3.11-venv python3-distutils ca-certificates "$@")
mapfile -t packages < <(printf '%s\n' "${packages[@]}" | sort -u)
include="$(IFS=,; echo "${packages[*]}")"
# Bump when the steps below change what the root file system holds.
readonly RECIPE=1
key="$(echo "${RECIPE} ${suite} ${mirror:-default} ${include}" | sha256sum | cut -c1-16)"
tag="ppminilm-base/debian:${suite}-${key}"

if "${docker}" image inspect "${tag}" >/dev/null 2>&1; then
    say "${tag} is present"
    echo "${tag}"
    exit 0
fi

mkdir -p "${cache}"
tarball="${cache}/${suite}-${key}.tar"
if [[ ! -s "${tarball}" ]]; then
    if ! command -v debootstrap >/dev/null 2>&1; then
        if ((EUID == 0)) && command -v apt-get >/dev/null 2>&1; then
            say "installing debootstrap with apt-get"
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
        else
            say "debootstrap is not installed (apt-get install debootstrap)"
            exit "${EXIT_NO_DEBOOTSTRAP}"
        fi
    fi
    rootfs="$(mktemp -d "${cache}/rootfs.XXXXXX")"
    trap 'rm -rf "${rootfs}"' EXIT
    say "debootstrap --variant=minbase ${suite} with ${include} (a few minutes)"
    started=${SECONDS}
    # shellcheck disable=SC2086  # no mirror argument: debootstrap's default
    debootstrap --variant=minbase --include="${include}" "${suite}" "${rootfs}" ${mirror} \
        >"${cache}/debootstrap.log" 2>&1 || {
        cp "${rootfs}/debootstrap/debootstrap.log" "${cache}/debootstrap-inner.log" 2>/dev/null || true
        say "debootstrap failed; see ${cache}/debootstrap.log and debootstrap-inner.log:"
        grep -hE '^dpkg: (error|dependency)|depends on' "${cache}/debootstrap-inner.log" \
            2>/dev/null | sort -u | tail -n 10 >&2 || tail -n 20 "${cache}/debootstrap.log" >&2
        exit 1
    }
    # Small image: no package lists, caches, docs, man pages or locales (C.UTF-8 is built into
    # glibc); keep the copyright files (licences).
    rm -rf "${rootfs}"/var/lib/apt/lists/* "${rootfs}"/var/cache/apt/*.bin \
        "${rootfs}"/var/cache/apt/archives/*.deb "${rootfs}"/var/log/* \
        "${rootfs}"/usr/share/man/* "${rootfs}"/usr/share/info/* \
        "${rootfs}"/usr/share/locale/*
    find "${rootfs}/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete
    tar -C "${rootfs}" --numeric-owner -cf "${tarball}.part" .
    mv "${tarball}.part" "${tarball}"
    say "root file system built in $((SECONDS - started)) s: ${tarball}" \
        "($(du -m "${tarball}" | cut -f1) MB)"
else
    say "using cached ${tarball}"
fi
"${docker}" import \
    --change 'ENV LANG=C.UTF-8 LC_ALL=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    --message "debootstrap --variant=minbase ${suite} ${include}" \
    "${tarball}" "${tag}" >/dev/null
say "imported ${tag}"
echo "${tag}"
