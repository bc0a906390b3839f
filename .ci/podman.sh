#!/usr/bin/env bash
# A Docker-API engine for the container tests: podman's compatible service on a local socket.
#
# Idempotent. Installs podman and runc (apt-get) when missing, configures them for a
# container-in-container host (runc, cgroupfs, vfs storage), starts
# `podman system service` on a socket under .releaser-ci/ (gitignored) and builds the
# base image releaser-base:busybox from local files only (Debian's busybox-static), since
# no image registry is reachable. Prints the DOCKER_HOST to export, e.g.:
#
#   export RELEASER_TEST_DOCKER_HOST="$(.ci/podman.sh | tail -n1)"
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${RELEASER_CI_DIR:-$ROOT/.releaser-ci}"
SOCK="$STATE/podman.sock"
BASE_IMAGE="${RELEASER_BASE_IMAGE:-localhost/releaser-base:busybox}"
mkdir -p "$STATE"

log() { echo "podman.sh: $*" >&2; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

need_pkgs=()
command -v podman >/dev/null 2>&1 || need_pkgs+=(podman)
command -v runc >/dev/null 2>&1 || need_pkgs+=(runc)
[ -x /bin/busybox ] || need_pkgs+=(busybox-static)
if [ "${#need_pkgs[@]}" -gt 0 ]; then
  log "installing ${need_pkgs[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}" >&2
fi

# Engine settings: runc with cgroupfs works inside containers where systemd and cgroup v2
# delegation are missing; vfs storage needs no overlay or fuse support.
CONF=/etc/containers/containers.conf
if ! grep -q '^# releaser-ci' "$CONF" 2>/dev/null; then
  log "writing $CONF"
  $SUDO mkdir -p /etc/containers
  $SUDO tee "$CONF" >/dev/null <<'CONFEOF'
# releaser-ci: written by .ci/podman.sh
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONFEOF
fi
STORAGE=/etc/containers/storage.conf
if ! grep -q '^# releaser-ci' "$STORAGE" 2>/dev/null; then
  log "writing $STORAGE"
  $SUDO tee "$STORAGE" >/dev/null <<'CONFEOF'
# releaser-ci: written by .ci/podman.sh
[storage]
driver = "vfs"
runroot = "/run/containers/storage"
graphroot = "/var/lib/containers/storage"
CONFEOF
fi

ping() {
  curl -fsS --max-time 2 --unix-socket "$SOCK" http://d/_ping >/dev/null 2>&1 ||
    python3 - "$SOCK" <<'PYEOF' >/dev/null 2>&1
import socket, sys
s = socket.socket(socket.AF_UNIX); s.settimeout(2); s.connect(sys.argv[1])
s.sendall(b"GET /_ping HTTP/1.0\r\nHost: d\r\n\r\n")
assert b" 200 " in s.recv(100)
PYEOF
}

if ! ping; then
  rm -f "$SOCK"
  log "starting podman system service on $SOCK"
  nohup podman system service --time=0 "unix://$SOCK" >"$STATE/podman-service.log" 2>&1 &
  echo $! >"$STATE/podman-service.pid"
  for _ in $(seq 1 100); do
    if ping; then break; fi
    sleep 0.2
  done
  ping || { log "the service did not answer; see $STATE/podman-service.log"; exit 1; }
fi

# The base image: a root filesystem assembled from the host's busybox-static (a static
# binary, so nothing else is needed), imported as an image. Its httpd serves the stand-in
# model server; its sh runs the predictor CGI script.
if ! podman image exists "$BASE_IMAGE"; then
  log "building $BASE_IMAGE from /bin/busybox"
  ROOTFS="$(mktemp -d)"
  trap 'rm -rf "$ROOTFS"' EXIT
  mkdir -p "$ROOTFS"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,www,proc,sys,dev}
  cp /bin/busybox "$ROOTFS/bin/busybox"
  for applet in $("$ROOTFS/bin/busybox" --list); do
    [ -e "$ROOTFS/bin/$applet" ] || ln -s busybox "$ROOTFS/bin/$applet"
  done
  echo 'root:x:0:0:root:/root:/bin/sh' >"$ROOTFS/etc/passwd"
  echo 'nobody:x:65534:65534:nobody:/:/bin/false' >>"$ROOTFS/etc/passwd"
  echo 'root:x:0:' >"$ROOTFS/etc/group"
  chmod 1777 "$ROOTFS/tmp"
  tar -C "$ROOTFS" -cf "$STATE/base-rootfs.tar" .
  podman import --change 'CMD ["/bin/sh"]' "$STATE/base-rootfs.tar" "$BASE_IMAGE" >&2
  rm -f "$STATE/base-rootfs.tar"
fi

echo "unix://$SOCK"
