#!/usr/bin/env bash
# Builds the parts of the single-node cluster `make node` runs, beside the control plane of
# hack/build-controlplane.sh, into a cache outside the repository keyed by their versions, and prints that
# directory on the last line of stdout:
#   kubelet, kube-proxy, kube-scheduler, kube-controller-manager  (hack/node/k8s: k8s.io/kubernetes, the control
#                                                                   plane's version)
#   containerd, containerd-shim-runc-v2, ctr                      (hack/node/containerd)
#   runc                                                          (hack/node/runc; cgo + the host's libseccomp)
#   cni/bridge, cni/host-local, cni/loopback, cni/portmap         (hack/node/cni)
#   pause + pause.tar                                             (kubernetes' build/pause/linux/pause.c from the
#                                                                   module above, static; an OCI archive for containerd)
#
#   DISYNC_CONTROLPLANE_CACHE=/some/dir   # override the cache root (default ~/.cache/disync-operator)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
NODE="$ROOT/hack/node"
modver() { awk -v m="$1" '($1 == m) {print $2; exit} ($1 == "require" && $2 == m) {print $3; exit}' "$2"; }
K8S_VERSION=$(modver k8s.io/kubernetes "$NODE/k8s/go.mod")
CP_K8S_VERSION=$(modver k8s.io/kubernetes "$ROOT/hack/controlplane/k8s/go.mod")
CONTAINERD_VERSION=$(modver github.com/containerd/containerd/v2 "$NODE/containerd/go.mod")
RUNC_VERSION=$(modver github.com/opencontainers/runc "$NODE/runc/go.mod")
CNI_VERSION=$(modver github.com/containernetworking/plugins "$NODE/cni/go.mod")
for v in K8S_VERSION CONTAINERD_VERSION RUNC_VERSION CNI_VERSION; do
  [[ -n ${!v} ]] || { echo "cannot read $v from hack/node/*/go.mod" >&2; exit 1; }
done
# The node runs the control plane's own version: one version to reason about (the skew policy would allow an older
# kubelet, but v1.37's still runs on a cgroup v1 host when told to: failCgroupV1: false in hack/node.sh).
[[ $K8S_VERSION == "$CP_K8S_VERSION" ]] || { echo "hack/node/k8s pins $K8S_VERSION, the control plane $CP_K8S_VERSION" >&2; exit 1; }

CACHE_ROOT=${DISYNC_CONTROLPLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/disync-operator}
BIN="$CACHE_ROOT/node-k8s-$K8S_VERSION-containerd-$CONTAINERD_VERSION-runc-$RUNC_VERSION-cni-$CNI_VERSION"
STAMP="go.sum=$(cat "$NODE"/*/go.sum | sha256sum | cut -c1-16) script=$(sha256sum < "$0" | cut -c1-16)"
PARTS=(kubelet kube-proxy kube-scheduler kube-controller-manager containerd containerd-shim-runc-v2 ctr runc
       cni/bridge cni/host-local cni/loopback cni/portmap pause pause.tar)

log() { echo "[node-build] $*" >&2; }

cached=1
for p in "${PARTS[@]}"; do [[ -e $BIN/$p ]] || cached=0; done
if [[ $cached == 1 && "$(cat "$BIN/.stamp" 2>/dev/null)" == "$STAMP" ]]; then
  log "using cached node binaries in $BIN"
  echo "$BIN"
  exit 0
fi

# shellcheck source=hack/go-build.sh
source "$ROOT/hack/go-build.sh"
for m in k8s containerd runc cni; do require_go "$NODE/$m/go.mod" "$m"; done
go_build_env
for tool in gcc buildah; do
  command -v $tool >/dev/null || { log "$tool is needed (apt-get install gcc libseccomp-dev pkg-config buildah)"; exit 1; }
done
pkg-config --exists libseccomp || { log "runc's seccomp support needs libseccomp-dev and pkg-config"; exit 1; }

mkdir -p "$BIN/cni"
tmp=$(mktemp -d "$BIN/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT


start=$(date +%s)
log "first build of the node (kubernetes $K8S_VERSION, containerd $CONTAINERD_VERSION, runc $RUNC_VERSION, CNI plugins $CNI_VERSION)"
log "into $BIN; this takes many minutes on a small machine, later runs reuse the cache"

log "[1/6] downloading Go modules"
for m in k8s containerd runc cni; do
  ( cd "$NODE/$m" && go mod download ) & progress "downloading the $m modules" $!
done

MINOR=$(echo "$K8S_VERSION" | cut -d. -f2)
K8S_LDFLAGS="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1"
K8S_LDFLAGS+=" -X k8s.io/component-base/version.gitMinor=$MINOR -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
K8S_LDFLAGS+=" -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$MINOR"
log "[2/6] compiling kubelet, kube-proxy, kube-scheduler, kube-controller-manager"
( cd "$NODE/k8s" && go build -p "$PARALLEL" -trimpath -ldflags "$K8S_LDFLAGS" -o "$tmp/" \
    k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kube-controller-manager ) &
progress "compiling the kubernetes node components" $!

log "[3/6] compiling containerd, its runc shim and ctr"
# Static, without the snapshotters that need cgo or tools this node does not use (overlayfs is the one it uses).
( cd "$NODE/containerd" && go build -p "$PARALLEL" -trimpath -tags "no_btrfs no_devmapper no_zfs" \
    -ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION" -o "$tmp/" \
    github.com/containerd/containerd/v2/cmd/containerd github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 \
    github.com/containerd/containerd/v2/cmd/ctr ) &
progress "compiling containerd" $!

log "[4/6] compiling runc"
# runc's nsenter is C (cgo); seccomp through libseccomp, which RuntimeDefault (the restricted profile) needs;
# without libpathrs (a Rust library, not packaged here): runc then uses its Go pathrs-lite.
( cd "$NODE/runc" && CGO_ENABLED=1 go build -p "$PARALLEL" -trimpath -tags "seccomp urfave_cli_no_docs" \
    -ldflags "-s -w -X main.version=${RUNC_VERSION#v}" -o "$tmp/runc" github.com/opencontainers/runc ) &
progress "compiling runc" $!

log "[5/6] compiling the CNI plugins"
mkdir -p "$tmp/cni"
( cd "$NODE/cni" && go build -p "$PARALLEL" -trimpath -ldflags "-s -w" -o "$tmp/cni/" \
    github.com/containernetworking/plugins/plugins/main/bridge github.com/containernetworking/plugins/plugins/ipam/host-local \
    github.com/containernetworking/plugins/plugins/main/loopback github.com/containernetworking/plugins/plugins/meta/portmap ) &
progress "compiling the CNI plugins" $!

log "[6/6] the pod sandbox image: kubernetes' pause.c, static, in an OCI archive"
PAUSE_SRC="$(cd "$NODE/k8s" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)/build/pause"
PAUSE_TAG=$(sed -n 's/^TAG ?= *//p' "$PAUSE_SRC/Makefile" | head -1)
gcc -Os -Wall -Werror -static -DVERSION="v$PAUSE_TAG-disync" -o "$tmp/pause" "$PAUSE_SRC/linux/pause.c"
strip "$tmp/pause"
# buildah keeps its storage in the cache, not in the host's /var/lib/containers.
bstore=("--root" "$CACHE_ROOT/buildah/root" "--runroot" "$CACHE_ROOT/buildah/runroot" "--storage-driver" "vfs")
ctr_id=$(buildah "${bstore[@]}" from scratch)
buildah "${bstore[@]}" copy "$ctr_id" "$tmp/pause" /pause >/dev/null
buildah "${bstore[@]}" config --entrypoint '["/pause"]' --user 65535:65535 "$ctr_id"
buildah "${bstore[@]}" commit -q --rm --format oci "$ctr_id" "localhost/disync-node/pause:$PAUSE_TAG" >/dev/null
rm -f "$tmp/pause.tar"
buildah "${bstore[@]}" push -q "localhost/disync-node/pause:$PAUSE_TAG" "oci-archive:$tmp/pause.tar:localhost/disync-node/pause:$PAUSE_TAG"
echo "localhost/disync-node/pause:$PAUSE_TAG" > "$tmp/pause.ref"

for p in "${PARTS[@]}" pause.ref; do mv "$tmp/$p" "$BIN/$p"; done
echo "$STAMP" > "$BIN/.stamp"
log "built in $(( $(date +%s) - start ))s: $(du -sh "$BIN" | cut -f1) in $BIN"
"$BIN/kubelet" --version >&2
"$BIN/containerd" --version >&2
"$BIN/runc" --version | sed -n 1p >&2
echo "$BIN"
