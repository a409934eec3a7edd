#!/usr/bin/env bash
# Builds the two flowpod images with buildah from the real Dockerfiles (engine_image/Dockerfile,
# operator/Dockerfile), the repository root as the build context, into a buildah store cached
# outside the repo. No Docker and no registry: the Dockerfiles' base image is provided locally by
# a STAND-IN built from a debootstrap'ed Debian bookworm with Debian's Python 3.11, laid out as
# the official python:3.11-slim-bookworm image is (`python` and `pip` on PATH, pip installing
# into /usr/local). It carries the official image's exact name so the FROM lines resolve.
#
# Each image is rebuilt only when its inputs changed (a hash of its Dockerfile and the context
# files it copies), and exported as a docker-archive (what `ctr images import` and
# `kind load image-archive` read) to $CACHE/archives. Prints the archives directory last.
# Builds pull the images' Python dependencies from the package index (host network).
set -euo pipefail

REPO="$(cd "$(dirname "$0")/../../.." && pwd)"
CACHE="${FLOWPOD_CACHE:-$HOME/.cache/flowpod}/images"
STORE=(--root "$CACHE/storage" --runroot "$CACHE/run" --storage-driver overlay)
ARCHIVES="$CACHE/archives"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# The Dockerfiles' ARG PYTHON_IMAGE default, read rather than repeated.
BASE="$(sed -n 's/^ARG PYTHON_IMAGE=//p' "$REPO/engine_image/Dockerfile")"
TAG="${FLOWPOD_IMAGE_TAG:-dev}"
K8S_VERSION="${K8S_VERSION:-v1.36.3}"
# kubelet's and containerd's sandbox image for this release (build/pause/Makefile's TAG).
PAUSE_VERSION="${PAUSE_VERSION:-3.10.2}"

log() { printf '[build-images] %s\n' "$*" >&2; }
bah() { buildah "${STORE[@]}" "$@"; }
have_image() { bah inspect --type image "$1" >/dev/null 2>&1; }

# Recipe of the stand-in: changing any of it (or this script's base function) rebuilds it.
BASE_PACKAGES="python3,python3-pip,python3-venv,ca-certificates,netbase,tzdata"

build_base() {
  local stamp="$CACHE/base.stamp" want
  want="$(printf '%s\n' "$BASE" "$BASE_PACKAGES" "$(declare -f build_base base_rootfs)" | sha256sum | cut -c1-16)"
  if have_image "docker.io/library/$BASE" && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  base_rootfs
  log "committing the stand-in base docker.io/library/$BASE"
  local ctr
  ctr="$(bah from --pull-never scratch)"
  bah add "$ctr" "$CACHE/base-rootfs.tar" /
  bah config --env LANG=C.UTF-8 \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env "PYTHON_VERSION=$(tar -xOf "$CACHE/base-rootfs.tar" ./etc/flowpod-python-version)" \
    --cmd python3 \
    --label "org.opencontainers.image.description=flowpod stand-in for $BASE (debootstrap bookworm + Debian python3.11), not the official image" \
    "$ctr"
  bah commit --rm --quiet "$ctr" "docker.io/library/$BASE" >/dev/null
  echo "$want" > "$stamp"
}

base_rootfs() {
  [ -s "$CACHE/base-rootfs.tar" ] && [ "$(cat "$CACHE/base-rootfs.recipe" 2>/dev/null)" = "$BASE_PACKAGES" ] && return 0
  local root="$CACHE/base-rootfs"
  rm -rf "$root"
  log "debootstrap bookworm ($BASE_PACKAGES) from $MIRROR (cold: a few minutes)"
  debootstrap --variant=minbase --include="$BASE_PACKAGES" bookworm "$root" "$MIRROR" >&2
  # The official image's layout: `python`/`pip` on PATH, pip free to install into /usr/local
  # (Debian's PEP 668 marker would refuse it), no apt lists or caches.
  ln -sf /usr/bin/python3 "$root/usr/local/bin/python"
  ln -sf /usr/bin/pip3 "$root/usr/local/bin/pip"
  rm -f "$root"/usr/lib/python3*/EXTERNALLY-MANAGED
  chroot "$root" python3 -c 'import platform; print(platform.python_version())' \
    > "$root/etc/flowpod-python-version"
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/var/log/*.log
  tar -C "$root" --numeric-owner -cf "$CACHE/base-rootfs.tar.tmp" .
  mv "$CACHE/base-rootfs.tar.tmp" "$CACHE/base-rootfs.tar"
  echo "$BASE_PACKAGES" > "$CACHE/base-rootfs.recipe"
  rm -rf "$root"
}

# The inputs of one image: its Dockerfile, every context path it COPYs, and the base.
inputs_hash() {
  local dockerfile="$1"; shift
  (cd "$REPO" && { cat "$dockerfile"; cat "$CACHE/base.stamp"; declare -f build_image;
    git ls-files -s -- "$@" 2>/dev/null || true
    # Uncommitted edits count too: hash the working tree's files themselves.
    find "$@" -type f -not -name '*.pyc' -not -path '*/__pycache__/*' -print0 | sort -z | xargs -0 sha256sum
  }) | sha256sum | cut -c1-16
}

build_image() {
  local name="$1" dockerfile="$2"; shift 2
  local ref="docker.io/flowpod/$name:$TAG" hash archive="$ARCHIVES/$name.tar"
  hash="$(inputs_hash "$dockerfile" "$@")"
  if have_image "$ref" && [ -s "$archive" ] && [ "$(cat "$archive.hash" 2>/dev/null)" = "$hash" ]; then
    return 0
  fi
  log "building $ref from $dockerfile"
  local start=$SECONDS
  # No --layers: buildah's layer cache keys a RUN step on its text alone, not on the content
  # of a stage it bind-mounts (RUN --mount=...,from=build), so it would keep installing the
  # previous wheel. The inputs hash above already skips builds when nothing changed.
  (cd "$REPO" && bah bud --quiet --pull-never --network host --isolation chroot \
     "${TRUST[@]}" -f "$dockerfile" -t "$ref" . >&2)
  mkdir -p "$ARCHIVES"
  rm -f "$archive"
  bah push --quiet "$ref" "docker-archive:$archive.tmp:$ref" >&2
  mv "$archive.tmp" "$archive"
  echo "$hash" > "$archive.hash"
  log "built $ref in $((SECONDS - start))s"
}

# The pod sandbox ("pause") image the containerd node needs, which no registry can supply here:
# compiled from the Kubernetes release's own build/pause/linux/pause.c (from the Go module
# cache, where build-binaries.sh put the release) with the release Makefile's flags, in an image FROM scratch.
build_pause() {
  local ref="registry.k8s.io/pause:$PAUSE_VERSION" archive="$ARCHIVES/pause.tar"
  [ -s "$archive" ] && have_image "$ref" && return 0
  local src
  src="$(cd "$CACHE" && GOFLAGS=-mod=mod go env GOMODCACHE)/k8s.io/kubernetes@$K8S_VERSION/build/pause/linux/pause.c"
  [ -f "$src" ] || (cd "$CACHE" && GOFLAGS=-mod=mod go mod download "k8s.io/kubernetes@$K8S_VERSION")
  log "building $ref from $src"
  mkdir -p "$CACHE/pause" "$ARCHIVES"
  gcc -Os -Wall -Werror -static "-DVERSION=v$PAUSE_VERSION-flowpod" -o "$CACHE/pause/pause" "$src"
  local ctr
  ctr="$(bah from --pull-never scratch)"
  bah copy "$ctr" "$CACHE/pause/pause" /pause
  bah config --entrypoint '["/pause"]' --user 65535:65535 "$ctr"
  bah commit --rm --quiet "$ctr" "$ref" >/dev/null
  bah push --quiet "$ref" "docker-archive:$archive.tmp:$ref" >&2
  mv "$archive.tmp" "$archive"
  echo "$ref" > "$ARCHIVES/pause.ref"
}

# Where the package index is reached through a TLS-inspecting proxy, the host's CA bundle
# (PIP_CERT / SSL_CERT_FILE) is bind-mounted over the build's for its RUN steps only: pip in the
# build trusts the proxy, and no image layer keeps the machine's CA.
TRUST=()
host_ca="${PIP_CERT:-${SSL_CERT_FILE:-}}"
[ -n "$host_ca" ] && [ -f "$host_ca" ] && TRUST=(--volume "$host_ca:/etc/ssl/certs/ca-certificates.crt:ro")

mkdir -p "$CACHE"
exec 9>"$CACHE/build.lock"
flock 9
build_pause
build_base
build_image engine engine_image/Dockerfile pyproject.toml README.md LICENSE engine_image/src examples
build_image operator operator/Dockerfile pyproject.toml README.md LICENSE engine_image/src operator/src examples
bah rm --all >/dev/null 2>&1 || true
# Superseded images and build stages would otherwise grow the cache by an image per change.
bah rmi --prune >/dev/null 2>&1 || true
echo "$ARCHIVES"
