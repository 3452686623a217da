#!/bin/sh
# Entrypoint of every image: files a step writes are group-writable, so a host user in the
# group of a bind-mounted pipeline root (make run RUNNER=docker) and the next step (any uid of
# group 0 on Kubernetes) can replace and delete them. Kubernetes sets `command`, which bypasses
# this; there fsGroup and the volume's permissions do the same job.
umask 0002
exec "$@"
