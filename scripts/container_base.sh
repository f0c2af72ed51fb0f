#!/usr/bin/env bash
# Build a local Debian bookworm + Python 3.11 base image for the RegionMed container, for machines
# that reach no container registry (no `FROM python:3.11-slim` pull possible).
#
#   scripts/container_base.sh [TAG]          (default TAG: regionmed-base:bookworm)
#
# Needs root, debootstrap and a running Docker daemon (scripts/docker_host.sh sets both up).
# What goes in: debootstrap --variant=minbase, then python3, python3-venv, python3-pip, passwd
# (useradd for BentoML's non-root user) and ca-certificates, all --no-install-recommends: no compiler,
# no git. The host's CA bundle replaces the image's, so pip and uv inside a `docker build` trust the
# same HTTPS proxy the host trusts. PIP_BREAK_SYSTEM_PACKAGES=1 because BentoML's Dockerfile runs a
# system-wide `pip install uv`, which Debian's Python refuses otherwise (PEP 668).
set -euo pipefail

TAG="${1:-regionmed-base:bookworm}"
SUITE="${SUITE:-bookworm}"
# The mirror apt already uses on this host (first deb.debian.org-style URI), else Debian's CDN.
MIRROR="${MIRROR:-$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
  | grep -E '^(URIs:|deb) ' | grep -oE 'https?://[^ ]+' | grep -v security | head -n1 || true)}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
HOST_CA="${HOST_CA:-/etc/ssl/certs/ca-certificates.crt}"
DOCKER="${DOCKER:-/usr/bin/docker}"

[ "$(id -u)" = 0 ] || { echo "container_base.sh: run as root (debootstrap and chroot)" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "container_base.sh: debootstrap is missing (scripts/docker_host.sh)" >&2; exit 1; }

ROOTFS="$(mktemp -d /tmp/regionmed-rootfs.XXXXXX)"
trap 'umount -l "$ROOTFS/proc" 2>/dev/null || true; rm -rf "$ROOTFS"' EXIT
start=$(date +%s)

echo "debootstrap $SUITE from $MIRROR into $ROOTFS"
debootstrap --variant=minbase "$SUITE" "$ROOTFS" "$MIRROR" >/dev/null
mount -t proc proc "$ROOTFS/proc"
chroot "$ROOTFS" /usr/bin/env DEBIAN_FRONTEND=noninteractive bash -euc '
  apt-get update -qq
  apt-get install -qq -y --no-install-recommends python3 python3-venv python3-pip passwd ca-certificates >/dev/null
  apt-get clean
  rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /usr/share/doc/* /usr/share/man/* /usr/share/locale/*
'
umount -l "$ROOTFS/proc"
if [ -f "$HOST_CA" ]; then
  cp "$HOST_CA" "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
fi
for tool in gcc cc g++ make git; do
  if chroot "$ROOTFS" sh -c "command -v $tool" >/dev/null 2>&1; then
    echo "container_base.sh: $tool is in the base image; it must not be" >&2; exit 1
  fi
done

tar -C "$ROOTFS" -c . | "$DOCKER" import \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV PIP_BREAK_SYSTEM_PACKAGES=1' \
  --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
  --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
  --change 'ENV REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt' \
  --change 'CMD ["/bin/bash"]' \
  - "$TAG" >/dev/null
echo "built $TAG in $(( $(date +%s) - start )) s: $("$DOCKER" image inspect -f '{{.Size}}' "$TAG") bytes"
