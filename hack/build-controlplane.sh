#!/usr/bin/env bash
# Builds the local test control plane (kube-apiserver, kubectl, etcd) from Go modules into a cache outside the
# repository, keyed by version, and prints the directory holding the binaries on its last line of stdout.
#
#   hack/build-controlplane.sh            # build if not cached, print the bin dir
#   DISYNC_CONTROLPLANE_CACHE=/some/dir   # override the cache root (default ~/.cache/disync-operator)
#
# Why from modules: no prebuilt binaries can be downloaded here, and building from the pinned wrapper modules
# (hack/controlplane/{k8s,etcd}/go.mod + go.sum) gives the same versions on every machine.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
modver() { awk -v m="$1" '$1 == m {print $2; exit} $1 == "require" && $2 == m {print $3; exit}' "$2"; }
K8S_VERSION=$(modver k8s.io/kubernetes "$ROOT/hack/controlplane/k8s/go.mod")
ETCD_VERSION=$(modver go.etcd.io/etcd/server/v3 "$ROOT/hack/controlplane/etcd/go.mod")
[[ -n $K8S_VERSION && -n $ETCD_VERSION ]] || { echo "cannot read pinned versions from hack/controlplane/*/go.mod" >&2; exit 1; }
CACHE_ROOT=${DISYNC_CONTROLPLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/disync-operator}
BIN="$CACHE_ROOT/k8s-$K8S_VERSION-etcd-$ETCD_VERSION"
STAMP="k8s=$K8S_VERSION etcd=$ETCD_VERSION go.sum=$(cat "$ROOT"/hack/controlplane/*/go.sum | sha256sum | cut -c1-16)"

log() { echo "[controlplane] $*" >&2; }

if [[ -x $BIN/kube-apiserver && -x $BIN/kubectl && -x $BIN/etcd && "$(cat "$BIN/.stamp" 2>/dev/null)" == "$STAMP" ]]; then
  log "using cached binaries in $BIN"
  echo "$BIN"
  exit 0
fi

# Pre-flight: the wrapper modules declare the Go version the pinned releases need.
# shellcheck source=hack/go-build.sh
source "$ROOT/hack/go-build.sh"
require_go "$ROOT/hack/controlplane/k8s/go.mod" "kubernetes $K8S_VERSION"
go_build_env
mkdir -p "$BIN"
tmp=$(mktemp -d "$BIN/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

MINOR=$(echo "$K8S_VERSION" | cut -d. -f2)
VERSION_FLAGS="-X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1"
VERSION_FLAGS+=" -X k8s.io/component-base/version.gitMinor=$MINOR -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
VERSION_FLAGS+=" -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$MINOR"

start=$(date +%s)
log "first build of the local control plane (kubernetes $K8S_VERSION, etcd $ETCD_VERSION) into $BIN"
log "this takes several minutes on a small machine; later runs reuse the cache"


log "[1/3] downloading Go modules"
( cd "$ROOT/hack/controlplane/k8s" && go mod download ) & progress "downloading kubernetes modules" $!
( cd "$ROOT/hack/controlplane/etcd" && go mod download ) & progress "downloading etcd modules" $!

log "[2/3] compiling etcd"
( cd "$ROOT/hack/controlplane/etcd" && go build -p "$PARALLEL" -trimpath -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3 ) &
progress "compiling etcd" $!

log "[3/3] compiling kube-apiserver and kubectl"
( cd "$ROOT/hack/controlplane/k8s" && go build -p "$PARALLEL" -trimpath -ldflags "-s -w $VERSION_FLAGS" -o "$tmp/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl ) &
progress "compiling kube-apiserver and kubectl" $!

mv "$tmp/etcd" "$tmp/kube-apiserver" "$tmp/kubectl" "$BIN/"
echo "$STAMP" > "$BIN/.stamp"
log "built in $(( $(date +%s) - start ))s: $(du -sh "$BIN" | cut -f1) in $BIN"
"$BIN/kube-apiserver" --version >&2
"$BIN/etcd" --version 2>&1 | sed -n 1p >&2
echo "$BIN"
