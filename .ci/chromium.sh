#!/usr/bin/env bash
# Headless Chromium for the handover page test (tests/docs/test_html_chromium.py).
#
# Idempotent: installs Debian's chromium with apt-get when no chromium is on PATH, then
# prints the path of the binary. The test skips, saying why, when chromium is missing.
#
#   .ci/chromium.sh && .venv/bin/python -m pytest tests/docs -q
set -euo pipefail

log() { echo "chromium.sh: $*" >&2; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

if ! command -v chromium >/dev/null 2>&1; then
  log "installing chromium"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    chromium fonts-dejavu-core >&2
fi

command -v chromium
chromium --version >&2 || true
