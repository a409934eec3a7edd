#!/usr/bin/env bash
# Builds the pinned Kubernetes control plane (kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl), etcd, helm and promtool (which checks the operator's /metrics)
# from the Go module proxy into a cache outside the repo. Called by the Makefile and by plane.py next to it; a warm cache returns at once.
#
# Why a go.mod of our own: k8s.io/kubernetes carries replace directives to ./staging, so
# `go install ...@version` is refused. Requiring it from our module and replacing each staging
# module with its published v0.X.Y twin gives the same sources the release was built from.
#
# Safe to run twice at once (a demo and a test run): a cold build holds an flock on
# $CACHE/build.lock, so a second run waits for it and then finds the binaries warm instead of
# racing it on the same *.tmp outputs.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.36.3}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
HELM_VERSION="${HELM_VERSION:-v3.22.0}"
# Prometheus' Go module numbers its releases v0.<minor>.<patch>.
PROMETHEUS_VERSION="${PROMETHEUS_VERSION:-v0.316.0}"
CACHE="${FLOWPOD_CACHE:-$HOME/.cache/flowpod}/k8s-${K8S_VERSION}"
BIN="$CACHE/bin"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0

staging=(api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider
  cluster-bootstrap code-generator component-base component-helpers controller-manager cri-api
  cri-client cri-streaming csi-translation-lib dynamic-resource-allocation endpointslice externaljwt
  kms kube-aggregator kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics
  mount-utils pod-security-admission sample-apiserver sample-cli-plugin sample-controller streaming)

log() { printf '[build-binaries] %s\n' "$*" >&2; }

have_all() {
  for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl helm promtool; do
    [ -x "$BIN/$b" ] || return 1
  done
}

build_kubernetes() {
  local src="$CACHE/src/kubernetes" staging_version="v0${K8S_VERSION#v1}"
  mkdir -p "$src"
  {
    echo "module flowpod.local/k8sbuild"
    echo
    echo "go 1.26"
    echo
    # Go 1.27's JSON v2 default breaks kube-openapi; pin the language defaults to 1.26.
    echo "godebug default=go1.26"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    for m in "${staging[@]}"; do echo "replace k8s.io/$m => k8s.io/$m $staging_version"; done
  } > "$src/go.mod"
  echo 'package k8sbuild' > "$src/doc.go"
  local commit_date; commit_date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  local minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
  local ld="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$commit_date -X $pkg.gitCommit=$K8S_VERSION"
  done
  # build-node-binaries.sh asks for kubelet alone through FLOWPOD_K8S_COMMANDS.
  for cmd in ${FLOWPOD_K8S_COMMANDS:-kube-apiserver kube-controller-manager kube-scheduler kubectl}; do
    [ -x "$BIN/$cmd" ] && continue
    log "building $cmd $K8S_VERSION (cold builds take several minutes)"
    (cd "$src" && go build -ldflags "$ld" -o "$BIN/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd")
    mv "$BIN/$cmd.tmp" "$BIN/$cmd"
  done
}

build_etcd() {
  [ -x "$BIN/etcd" ] && return 0
  local src="$CACHE/src/etcd"
  mkdir -p "$src"
  printf 'module flowpod.local/etcdbuild\n\ngo 1.26\n\nrequire go.etcd.io/etcd/server/v3 %s\n' \
    "$ETCD_VERSION" > "$src/go.mod"
  echo 'package etcdbuild' > "$src/doc.go"
  log "building etcd $ETCD_VERSION"
  (cd "$src" && go build -ldflags "-s -w" -o "$BIN/etcd.tmp" go.etcd.io/etcd/server/v3)
  mv "$BIN/etcd.tmp" "$BIN/etcd"
}

build_helm() {
  [ -x "$BIN/helm" ] && return 0
  local src="$CACHE/src/helm"
  mkdir -p "$src"
  printf 'module flowpod.local/helmbuild\n\ngo 1.26\n\nrequire helm.sh/helm/v3 %s\n' \
    "$HELM_VERSION" > "$src/go.mod"
  echo 'package helmbuild' > "$src/doc.go"
  log "building helm $HELM_VERSION"
  # Without these, helm assumes Kubernetes 1.20 for `template` and `lint` when offline.
  local minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
  local ld="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    ld+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$minor"
  done
  (cd "$src" && go build -ldflags "$ld" -o "$BIN/helm.tmp" helm.sh/helm/v3/cmd/helm)
  mv "$BIN/helm.tmp" "$BIN/helm"
}

build_promtool() {
  [ -x "$BIN/promtool" ] && return 0
  local src="$CACHE/src/promtool"
  mkdir -p "$src"
  printf 'module flowpod.local/promtoolbuild\n\ngo 1.26\n\nrequire github.com/prometheus/prometheus %s\n' \
    "$PROMETHEUS_VERSION" > "$src/go.mod"
  echo 'package promtoolbuild' > "$src/doc.go"
  log "building promtool $PROMETHEUS_VERSION (its service-discovery dependencies make it the slowest)"
  (cd "$src" && go build -ldflags "-s -w" -o "$BIN/promtool.tmp" \
    github.com/prometheus/prometheus/cmd/promtool)
  mv "$BIN/promtool.tmp" "$BIN/promtool"
}

mkdir -p "$BIN"
if [ -n "${FLOWPOD_K8S_COMMANDS:-}" ]; then
  # Only the named commands, from the same go.mod (build-node-binaries.sh's kubelet).
  exec 9>"$CACHE/build.lock"
  flock 9
  build_kubernetes
  echo "$BIN"
  exit 0
fi
if have_all; then echo "$BIN"; exit 0; fi
# Held on fd 9 until this script (and the go builds it runs) exit; the kernel drops it even
# when a build is killed, so a lock file left behind never blocks anyone.
exec 9>"$CACHE/build.lock"
if ! flock --nonblock 9; then
  log "another build of $BIN is running; waiting for it (lock: $CACHE/build.lock)"
  flock 9
fi
# The run we waited for may have built everything.
if have_all; then echo "$BIN"; exit 0; fi
start=$(date +%s)
build_etcd
build_kubernetes
build_helm
build_promtool
log "built in $(( $(date +%s) - start ))s into $BIN"
echo "$BIN"
