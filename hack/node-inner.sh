#!/usr/bin/env bash
# The node's supervisor, started by hack/node.sh inside the node's network namespace and a private mount namespace
# (never run it by hand). It gives the parts their own /run, /var/lib and /var/log, starts them in order, and stops
# them in reverse order on SIGTERM; if any part exits, it stops the rest and exits non-zero.
set -euo pipefail
: "${RUN:?}" "${NODE_BIN:?}" "${CP_BIN:?}" "${NODE_IP:?}" "${SERVICE_CIDR:?}" "${NODE_NAME:?}" "${PKI:?}" "${PAUSE_REF:?}"

log() { echo "[node-inner $(date +%T)] $*"; }

# Private mounts (the namespace was made with private propagation: nothing here reaches the host).
mount -t tmpfs -o mode=755 tmpfs /run
mount --bind "$RUN/var-lib" /var/lib
mount --bind "$RUN/var-log" /var/log
for f in vm.overcommit_memory kernel.panic kernel.panic_on_oops; do
  mount --bind -o ro "$RUN/sysctl/$f" "/proc/sys/${f//.//}"
done
mkdir -p /run/netns /var/lib/kubelet
# The kubelet's volume mounts must reach containerd's containers: both live in this namespace, and its root dir
# is a shared mount inside it (the kubelet checks for that).
mount --bind /var/lib/kubelet /var/lib/kubelet
mount --make-rshared /var/lib/kubelet
export PATH="$NODE_BIN:$CP_BIN:$PATH"

declare -A PIDS=()
ORDER=()
start() {  # start NAME ARGV...: run a part with its log in $RUN/logs
  local name=$1; shift
  "$@" > "$RUN/logs/$name.log" 2>&1 &
  PIDS[$name]=$!
  ORDER+=("$name")
  log "started $name (pid $!)"
}

stopping=0
stop_all() {
  stopping=1
  local i name pid
  for (( i=${#ORDER[@]}-1; i>=0; i-- )); do
    name=${ORDER[$i]}; pid=${PIDS[$name]}
    kill -TERM "$pid" 2>/dev/null || continue
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    log "stopped $name"
  done
}
trap 'stop_all; exit 0' TERM INT

wait_socket() {  # wait_socket PATH SECONDS
  local i
  for (( i=0; i<$2*10; i++ )); do [[ -S $1 ]] && return 0; sleep 0.1; done
  log "timed out waiting for $1"; return 1
}
wait_http() {  # wait_http URL SECONDS: an HTTPS endpoint that answers (any status) with our CA
  local i
  for (( i=0; i<$2*10; i++ )); do
    kubectl --kubeconfig "$RUN/controller-manager.kubeconfig" get --raw /readyz >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  log "timed out waiting for $1"; return 1
}

start etcd etcd --data-dir "$RUN/etcd" --listen-client-urls http://127.0.0.1:2379 \
  --advertise-client-urls http://127.0.0.1:2379 --listen-peer-urls http://127.0.0.1:2380 \
  --log-level warn --unsafe-no-fsync --quota-backend-bytes 8589934592

# --service-account-extend-token-expiration=false: a projected token stops working when it expires, as on a cluster
# past the legacy-token transition, so a test of the kubelet's rotation proves the new token is used.
start kube-apiserver kube-apiserver \
  --etcd-servers=http://127.0.0.1:2379 \
  --bind-address=0.0.0.0 --advertise-address="$NODE_IP" --secure-port=6443 \
  --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
  --client-ca-file="$PKI/ca.crt" \
  --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
  --kubelet-preferred-address-types=InternalIP \
  --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-extend-token-expiration=false \
  --service-cluster-ip-range="$SERVICE_CIDR" \
  --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
  --profiling=false --v=0

start containerd containerd --config "$RUN/containerd.toml"
wait_socket /run/containerd/containerd.sock 60
ctr --address /run/containerd/containerd.sock -n k8s.io images import --local "$NODE_BIN/pause.tar" >/dev/null
log "imported $PAUSE_REF"

wait_http "the API server" 120
start kube-controller-manager kube-controller-manager \
  --kubeconfig="$RUN/controller-manager.kubeconfig" \
  --authentication-kubeconfig="$RUN/controller-manager.kubeconfig" \
  --authorization-kubeconfig="$RUN/controller-manager.kubeconfig" \
  --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
  --use-service-account-credentials=true --leader-elect=false --bind-address=127.0.0.1 \
  --v=0
start kube-scheduler kube-scheduler --kubeconfig="$RUN/scheduler.kubeconfig" \
  --authentication-kubeconfig="$RUN/scheduler.kubeconfig" --authorization-kubeconfig="$RUN/scheduler.kubeconfig" \
  --leader-elect=false --bind-address=127.0.0.1 --v=0
start kubelet kubelet --config="$RUN/kubelet.yaml" --kubeconfig="$RUN/kubelet.kubeconfig" \
  --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" --v=1
start kube-proxy kube-proxy --config="$RUN/kube-proxy.yaml" --v=0

# Any part that exits ends the node: a half-running cluster would only mislead.
while true; do
  if ! wait -n; then :; fi
  (( stopping )) && break
  for name in "${ORDER[@]}"; do
    if ! kill -0 "${PIDS[$name]}" 2>/dev/null; then
      log "$name exited; its log:"
      tail -30 "$RUN/logs/$name.log"
      stop_all
      exit 1
    fi
  done
done
