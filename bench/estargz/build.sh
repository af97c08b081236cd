#!/usr/bin/env bash
# Builds the stargz snapshotter daemon (containerd-stargz-grpc) that `ferry bench`'s eStargz mode
# runs, from Debian's Go sources of stargz-snapshotter 0.12
# (golang-github-containerd-stargz-snapshotter-dev) and Ferry's own main (main.go beside this file).
# Debian packages only ctr-remote, not the daemon.
#
# Offline except for Debian's mirror: the golang-* packages apt would install for
# `golang-go golang-github-containerd-stargz-snapshotter-dev` are downloaded with `apt-get download`
# and unpacked into a private tree (never installed: no system change, no systemd pulled in); the
# build runs in GOPATH mode (GO111MODULE=off, GOPATH = the unpacked /usr/share/gocode, then the
# system's), CGO off, GOPROXY=off. Only the binary and a stamp are kept:
#   $FERRY_CACHE_DIR/estargz/bin/containerd-stargz-grpc   (FERRY_CACHE_DIR default /var/cache/ferry)
# A second run with the same main.go and build.sh does nothing. Needs root (apt lists, the cache
# directory). Usage: bench/estargz/build.sh [--force]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${FERRY_CACHE_DIR:-/var/cache/ferry}/estargz"
bin="$cache/bin/containerd-stargz-grpc"
stamp="$cache/bin/stamp"
want="$(cat "$here/main.go" "$here/build.sh" | sha256sum | cut -c1-16)"
pkgs=(golang-go golang-github-containerd-stargz-snapshotter-dev)

if [ "${1:-}" != "--force" ] && [ -x "$bin" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  echo "$bin (cached)"
  exit 0
fi

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock -w 1200 9 || { echo "build.sh: another build holds $cache/.lock" >&2; exit 1; }
if [ "${1:-}" != "--force" ] && [ -x "$bin" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  echo "$bin (built by another process)"
  exit 0
fi

t0=$(date +%s)
work="$(mktemp -d "$cache/build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/debs" "$work/root" "$work/src"

# The package set apt resolves (alternatives and conflicts decided as an install would), golang-* only:
# the rest (libc, gcc, …) is not needed with CGO off. Packages already installed are not listed by the
# simulation; their sources are found through the system's GOROOT/GOPATH below.
mapfile -t debs < <(apt-get install -s --no-install-recommends "${pkgs[@]}" 2>/dev/null | awk '/^Inst golang-/{print $2}')
if [ ${#debs[@]} -gt 0 ]; then
  if ! (cd "$work/debs" && apt-get download -qq -o APT::Sandbox::User=root "${debs[@]}" >/dev/null 2>&1); then
    echo "build.sh: apt-get download failed; refreshing the package lists once" >&2
    apt-get update -qq
    (cd "$work/debs" && apt-get download -qq -o APT::Sandbox::User=root "${debs[@]}" >/dev/null)
  fi
  for d in "$work"/debs/*.deb; do dpkg-deb -x "$d" "$work/root"; done
fi
t1=$(date +%s)

goroot=""
for g in "$work/root/usr/lib/go-1.19" /usr/lib/go-1.19 /usr/lib/go; do
  if [ -x "$g/bin/go" ]; then goroot="$g"; break; fi
done
[ -n "$goroot" ] || { echo "build.sh: no Go toolchain (golang-go) found" >&2; exit 1; }
gopath="$work/root/usr/share/gocode:/usr/share/gocode"
[ -d "$work/root/usr/share/gocode/src/github.com/containerd/stargz-snapshotter" ] ||
  [ -d /usr/share/gocode/src/github.com/containerd/stargz-snapshotter ] ||
  { echo "build.sh: stargz-snapshotter sources not found" >&2; exit 1; }

cp "$here/main.go" "$work/src/main.go"
mkdir -p "$cache/bin"
(
  cd "$work/src"
  env -i PATH="$goroot/bin:/usr/bin:/bin" HOME="$work" GOROOT="$goroot" GOPATH="$gopath" GO111MODULE=off \
    CGO_ENABLED=0 GOFLAGS= GOPROXY=off GOCACHE="$work/gocache" GOTMPDIR="$work" \
    go build -trimpath -ldflags '-s -w' -o "$bin.tmp" main.go
)
mv "$bin.tmp" "$bin"
echo "$want" > "$stamp"
t2=$(date +%s)
echo "$bin built (download + unpack $((t1 - t0)) s, go build $((t2 - t1)) s)"
