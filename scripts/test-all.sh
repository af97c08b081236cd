#!/usr/bin/env bash
# The one command that installs everything the test suite needs on a fresh Debian 12 machine
# (Debian packages + npm dependencies) and runs the whole suite. Needs root (containerd, FUSE,
# EROFS mounts and network namespaces are exercised for real).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then echo "scripts/test-all.sh: run as root (tests mount filesystems and create network namespaces)" >&2; exit 1; fi
bash scripts/install-deps.sh
# `npm ci` deletes node_modules first, which would pull the code out from under a running
# `ferry up` from this checkout (README step 1): reinstall only when the installed tree does not
# match package.json / package-lock.json (`npm ls` checks it without writing anything).
if [ -f node_modules/.package-lock.json ] && npm ls --all >/dev/null 2>&1; then
  echo "npm dependencies already installed (npm ls clean): skipping npm ci"
else
  npm ci --no-audit --no-fund
fi
npm test
