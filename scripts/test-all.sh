#!/usr/bin/env bash
# The one command that installs everything the test suite needs on a fresh Debian 12 machine
# (Debian packages + npm dependencies) and runs the whole suite. Needs root (containerd, FUSE,
# EROFS mounts and network namespaces are exercised for real).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then echo "scripts/test-all.sh: run as root (tests mount filesystems and create network namespaces)" >&2; exit 1; fi
bash scripts/install-deps.sh
npm ci --no-audit --no-fund
npm test
