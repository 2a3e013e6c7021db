#!/usr/bin/env bash
# Builds the operator's image from the Dockerfile as written, with Debian's buildah, on a Python 3.11 base image
# made here from Debian's packages (debootstrap), and writes it as an OCI archive for the node's containerd.
# Prints the archive's path on the last line of stdout.
#
#   hack/build-image.sh                   # base image if missing (cached), then the operator's image
#   IMAGE=localhost/disync-operator:e2e   # the image's name (default)
#
# The base is NOT the official python:3.11 image (which cannot be pulled here): Debian 12's python3.11 (3.11.2) at
# /usr/bin/python3.11, `python` from python-is-python3, venv and ensurepip from python3-venv, pip from python3-pip. The Dockerfile's
# PYTHON_IMAGE build argument is the only difference from a release build.
# Building reaches PyPI (the build stage's setuptools, the locked wheels) and Debian's mirror, as any build does;
# buildah's storage lives in the cache, not in the host's /var/lib/containers.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE_ROOT=${DISYNC_CONTROLPLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/disync-operator}
IMAGE=${IMAGE:-localhost/disync-operator:e2e}
SUITE=bookworm
BASE=localhost/disync-node/python:3.11-$SUITE-debootstrap
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
OUT="$CACHE_ROOT/images"
BSTORE=(--root "$CACHE_ROOT/buildah/root" --runroot "$CACHE_ROOT/buildah/runroot" --storage-driver vfs)

log() { echo "[image] $*" >&2; }
for tool in buildah debootstrap; do
  command -v $tool >/dev/null || { log "$tool is needed (apt-get install buildah debootstrap)"; exit 1; }
done
mkdir -p "$OUT"
# shellcheck source=hack/go-build.sh
source "$ROOT/hack/go-build.sh"  # progress, the heartbeat of a long step

start=$(date +%s)
if buildah "${BSTORE[@]}" inspect --type image "$BASE" >/dev/null 2>&1; then
  log "using the cached base image $BASE"
else
  log "[base] debootstrap $SUITE with python3.11 into a base image $BASE (once; cached)"
  work=$(mktemp -d "$CACHE_ROOT/.base.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  ( debootstrap --variant=minbase --include=python3.11,python3-venv,python3-pip,python-is-python3,ca-certificates \
      "$SUITE" "$work/rootfs" "$MIRROR" > "$work/debootstrap.log" 2>&1 ) & progress "running debootstrap" $! \
    || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
  # An image carries no package lists, caches or device nodes (the runtime provides /dev).
  rm -rf "$work/rootfs"/var/lib/apt/lists/* "$work/rootfs"/var/cache/apt/*.bin "$work/rootfs"/var/cache/apt/archives/*.deb \
    "$work/rootfs"/var/log/* "$work/rootfs"/dev/*
  tar -C "$work/rootfs" --numeric-owner -cf "$work/rootfs.tar" .
  ctr_id=$(buildah "${BSTORE[@]}" from scratch)
  buildah "${BSTORE[@]}" add "$ctr_id" "$work/rootfs.tar" / >/dev/null
  buildah "${BSTORE[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 --cmd '["python3"]' \
    --label org.opencontainers.image.description="Debian $SUITE python3.11 (debootstrap), for disync-operator's e2e" \
    "$ctr_id"
  buildah "${BSTORE[@]}" commit -q --rm --format oci "$ctr_id" "$BASE" >/dev/null
  rm -rf "$work"; trap - EXIT
  log "[base] done in $(( $(date +%s) - start ))s"
fi

t1=$(date +%s)
log "[build] buildah bud -f Dockerfile --build-arg PYTHON_IMAGE=$BASE -t $IMAGE"
# --network host: the build's RUN steps reach PyPI as a docker build would (buildah's default would need a CNI
# network of its own on the host). --isolation chroot: no second runtime needed for the build. No --layers: with
# it, Debian's buildah 1.28 skips materialising a cached build stage, and the runtime stage's
# `RUN --mount=type=bind,from=build` then finds no /wheels ("couldn't find .../wheels on host to bind mount").
# The host's CA bundle, read-only, over the base image's: a machine whose HTTPS goes through a TLS-inspecting proxy
# (this one) trusts that proxy's CA only there, and Debian's pip reads the system bundle. A bind mount of a RUN
# step adds nothing to the image's layers.
trust=()
if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
  trust=(--volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)
fi
( cd "$ROOT" && buildah "${BSTORE[@]}" bud --quiet --isolation chroot --network host --format oci "${trust[@]}" \
    --build-arg "PYTHON_IMAGE=$BASE" --build-arg "REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
    -f Dockerfile -t "$IMAGE" . > "$OUT/build.log" 2>&1 ) & progress "building the image" $! \
  || { tail -30 "$OUT/build.log" >&2; exit 1; }
log "[build] done in $(( $(date +%s) - t1 ))s"
archive="$OUT/$(echo "$IMAGE" | tr '/:' '__').tar"
rm -f "$archive"
buildah "${BSTORE[@]}" push -q "$IMAGE" "oci-archive:$archive:$IMAGE"
# The previous build's image and the build stage are untagged now (vfs keeps a full copy of each): drop them.
buildah "${BSTORE[@]}" rmi --prune >/dev/null 2>&1 || true
log "image $IMAGE: $(du -h "$archive" | cut -f1) archive at $archive (total $(( $(date +%s) - start ))s)"
echo "$archive"
