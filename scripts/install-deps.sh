#!/usr/bin/env bash
# Installs the Debian packages Ferry's tests and benchmarks use. Idempotent; needs root.
set -euo pipefail
PKGS=(containerd runc skopeo buildah docker-registry erofs-utils fuse3 libfuse2 busybox-static
      debootstrap stargz-snapshotter iproute2 util-linux kmod e2fsprogs iptables
      chromium ca-certificates openssl curl jq procps psmisc attr
      # ferry bench: javac/jar for the JVM workload's jar (bench/estargz/build.sh fetches its Go sources itself)
      default-jdk-headless
      # engines the tests start privately on loopback (test/support/postgres.ts, test/support/ceph.ts)
      postgresql-15 ceph-mon ceph-osd radosgw ceph-common)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
