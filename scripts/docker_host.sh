#!/usr/bin/env bash
# Make this (Debian bookworm) machine able to build and run the RegionMed container with no registry:
# Debian's docker.io (its client builds with the daemon's built-in BuildKit; a Docker 23+ client
# needs the buildx plugin) and debootstrap (for scripts/container_base.sh), then a Docker daemon
# started by hand when none answers (no systemd in CI containers).
#
#   sudo scripts/docker_host.sh          (make docker-host)
#
# Measured on the CI machine kind (2 cores): apt install ~30 s, dockerd ready in ~3 s.
set -euo pipefail
DOCKER=/usr/bin/docker
start=$(date +%s)
if ! command -v debootstrap >/dev/null || [ ! -x "$DOCKER" ]; then
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -qq -y --no-install-recommends docker.io debootstrap >/dev/null
fi
if ! "$DOCKER" info >/dev/null 2>&1; then
  log=${DOCKERD_LOG:-/var/log/dockerd.log}
  setsid nohup dockerd --storage-driver=overlay2 >"$log" 2>&1 </dev/null &
  for _ in $(seq 60); do "$DOCKER" info >/dev/null 2>&1 && break; sleep 1; done
  "$DOCKER" info >/dev/null 2>&1 || { echo "dockerd did not start; see $log" >&2; tail -20 "$log" >&2; exit 1; }
fi
echo "docker $("$DOCKER" version --format '{{.Server.Version}}') answers (set up in $(( $(date +%s) - start )) s)"
