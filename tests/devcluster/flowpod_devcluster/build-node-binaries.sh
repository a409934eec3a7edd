#!/usr/bin/env bash
# Builds what the real container node (flowpod-containerd) runs beside the process node:
# kubelet (same release and go.mod method as the control plane, via build-binaries.sh),
# containerd 2.x with its runc shim and ctr, runc, and the CNI loopback plugin, all from the
# Go module proxy into the same cache outside the repo. A warm cache returns at once.
#
# runc needs cgo and libseccomp (the seccomp build tag), so RuntimeDefault seccomp profiles are
# really enforced; .ci/run installs libseccomp-dev. Everything else is built without cgo.
# Prints the directory holding the binaries on its last line.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.36.3}"
CONTAINERD_VERSION="${CONTAINERD_VERSION:-v2.4.2}"
RUNC_VERSION="${RUNC_VERSION:-v1.5.3}"
CNI_PLUGINS_VERSION="${CNI_PLUGINS_VERSION:-v1.10.0}"
HERE="$(cd "$(dirname "$0")" && pwd)"
CACHE="${FLOWPOD_CACHE:-$HOME/.cache/flowpod}/node-${K8S_VERSION}"
BIN="$CACHE/bin"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod

log() { printf '[build-node-binaries] %s\n' "$*" >&2; }

have_all() {
  for b in kubelet containerd containerd-shim-runc-v2 ctr runc cni/loopback; do
    [ -x "$BIN/$b" ] || return 1
  done
}

# A throwaway module requiring one upstream module, so `go build` resolves exactly its pins.
gomod() {
  local src="$CACHE/src/$1" module="$2" version="$3"
  mkdir -p "$src"
  printf 'module flowpod.local/%sbuild\n\ngo 1.26\n\nrequire %s %s\n' "$1" "$module" "$version" \
    > "$src/go.mod"
  echo "package ${1}build" > "$src/doc.go"
  echo "$src"
}

build_kubelet() {
  [ -x "$BIN/kubelet" ] && return 0
  log "building kubelet $K8S_VERSION"
  local plane_bin
  plane_bin="$(K8S_VERSION="$K8S_VERSION" FLOWPOD_K8S_COMMANDS=kubelet \
    bash "$HERE/build-binaries.sh" | tail -1)"
  cp "$plane_bin/kubelet" "$BIN/kubelet.tmp"
  mv "$BIN/kubelet.tmp" "$BIN/kubelet"
}

build_containerd() {
  local src ld="-s -w" pkg=github.com/containerd/containerd/v2
  src="$(gomod containerd "$pkg" "$CONTAINERD_VERSION")"
  ld+=" -X $pkg/version.Version=$CONTAINERD_VERSION -X $pkg/version.Revision=$CONTAINERD_VERSION"
  for cmd in containerd containerd-shim-runc-v2 ctr; do
    [ -x "$BIN/$cmd" ] && continue
    log "building $cmd $CONTAINERD_VERSION"
    # no_btrfs: the btrfs snapshotter needs cgo headers; overlayfs is the one used here.
    (cd "$src" && CGO_ENABLED=0 go build -tags no_btrfs -ldflags "$ld" -o "$BIN/$cmd.tmp" \
      "$pkg/cmd/$cmd")
    mv "$BIN/$cmd.tmp" "$BIN/$cmd"
  done
}

build_runc() {
  [ -x "$BIN/runc" ] && return 0
  local src
  src="$(gomod runc github.com/opencontainers/runc "$RUNC_VERSION")"
  log "building runc $RUNC_VERSION (cgo, libseccomp)"
  (cd "$src" && CGO_ENABLED=1 go build -tags seccomp \
    -ldflags "-s -w -X main.version=${RUNC_VERSION#v}" -o "$BIN/runc.tmp" \
    github.com/opencontainers/runc)
  mv "$BIN/runc.tmp" "$BIN/runc"
}

build_cni() {
  [ -x "$BIN/cni/loopback" ] && return 0
  local src
  src="$(gomod cniplugins github.com/containernetworking/plugins "$CNI_PLUGINS_VERSION")"
  mkdir -p "$BIN/cni"
  log "building the CNI loopback plugin $CNI_PLUGINS_VERSION"
  (cd "$src" && CGO_ENABLED=0 go build -ldflags "-s -w" -o "$BIN/cni/loopback.tmp" \
    github.com/containernetworking/plugins/plugins/main/loopback)
  mv "$BIN/cni/loopback.tmp" "$BIN/cni/loopback"
}

mkdir -p "$BIN"
if have_all; then echo "$BIN"; exit 0; fi
exec 9>"$CACHE/build.lock"
if ! flock --nonblock 9; then
  log "another build of $BIN is running; waiting for it (lock: $CACHE/build.lock)"
  flock 9
fi
if have_all; then echo "$BIN"; exit 0; fi
start=$(date +%s)
build_runc
build_cni
build_containerd
build_kubelet
log "built in $(( $(date +%s) - start ))s into $BIN"
echo "$BIN"
