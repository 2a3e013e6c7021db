#!/usr/bin/env bash
# Loads an image archive (OCI or docker-archive, e.g. from hack/build-image.sh) into the running node's containerd,
# in the namespace the kubelet uses. The node's containerd socket lives in the node's own mount namespace, so ctr
# runs there (nsenter into the supervisor's namespaces).
set -euo pipefail
ARCHIVE=${1:?usage: node-load-image.sh IMAGE-ARCHIVE}
RUN=${DISYNC_NODE_DIR:-/tmp/disync-node}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
[[ -f $RUN/ready ]] || { echo "[node] no node is up (make node)" >&2; exit 1; }
NODE_BIN=$(bash "$ROOT/hack/build-node.sh" 2>/dev/null)
ARCHIVE=$(realpath "$ARCHIVE")
t0=$(date +%s)
nsenter -t "$(cat "$RUN/supervisor.pid")" -m -n -- \
  "$NODE_BIN/ctr" --address /run/containerd/containerd.sock -n k8s.io images import --local "$ARCHIVE" >&2
echo "[node] loaded $ARCHIVE into the node's containerd in $(( $(date +%s) - t0 ))s" >&2
