#!/usr/bin/env bash
# A real single-node Kubernetes cluster on this machine, inside a network namespace of its own (`make node`).
#
#   hack/node.sh            build what is missing, start the node, print the kubeconfig, run until Ctrl-C (or
#                           SIGTERM), then remove everything it made
#   hack/node.sh down       remove what a killed run left behind (processes by pid, cgroups, links, the netns, files)
#   hack/node.sh status     say whether a node is up and where its kubeconfig is (exit 1 if none)
#
# Parts: etcd and kube-apiserver (hack/build-controlplane.sh), kube-controller-manager, kube-scheduler, kubelet,
# kube-proxy, containerd + runc and the CNI plugins (hack/build-node.sh). No cluster DNS: nothing here resolves names
# (the operator reaches the API server by the service environment variables and DataWorks by an address).
#
# Isolation, and what it changes on the host:
# - network: every part runs in the network namespace `disync-node`, reached from the host only through a veth
#   pair: dsn-host 10.99.0.1/24 on the host, eth0 10.99.0.2/24 inside. The namespace has no default route and the
#   host gets no route or NAT rule: no node, pod or service address can reach anything but this machine. Pods
#   reach the host end (the DataWorks emulator) through the bridge plugin's masquerade, inside the namespace.
# - mounts: the parts run in a private mount namespace with their own /run, /var/lib and /var/log (bound from the
#   run directory), so containerd's, runc's, the kubelet's and the CNI's state never lands in the host's; every
#   mount the node makes dies with that namespace.
# - cgroups: pods go under /disync-node in each cgroup hierarchy (the kubelet's cgroupRoot), removed at the end.
# - kernel tunables: the kubelet insists on host-wide settings (vm.overcommit_memory=1, kernel.panic=10,
#   kernel.panic_on_oops=1) and fails to start if it cannot set them. The node's mount namespace shows it files
#   with those values instead of /proc/sys's, so the host's own stay as they are.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
NETNS=disync-node
NODE_NAME=disync-node
HOST_IF=dsn-host
HOST_IP=10.99.0.1
NODE_IP=10.99.0.2
POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.96.0.0/24
API_SERVICE_IP=10.96.0.1
CGROUP_PARENT=disync-node
RUN=${DISYNC_NODE_DIR:-/tmp/disync-node}
CGROUP_FS=/sys/fs/cgroup

log() { echo "[node] $*" >&2; }
die() { log "$*"; exit 1; }

# Every hierarchy the kubelet's cgroupfs driver writes to: the v1 ones mounted here, and the unified one.
cgroup_hierarchies() {
  awk '$3 == "cgroup" || $3 == "cgroup2" {print $2}' /proc/self/mounts | grep "^$CGROUP_FS/"
}

# --- teardown -----------------------------------------------------------------------------------------------------

# Pids of the node: everything in its network namespace (the supervisor, the daemons and containerd's shims) and
# everything in its cgroups (the containers, which have network namespaces of their own). Never a pid from a file
# alone: after a crash it may name someone else's process by now.
node_pids() {
  { if [[ -e /run/netns/$NETNS ]]; then ip netns pids "$NETNS" 2>/dev/null || true; fi
    local h
    for h in $(cgroup_hierarchies); do
      if [[ -d $h/$CGROUP_PARENT ]]; then find "$h/$CGROUP_PARENT" -name cgroup.procs -exec cat {} + 2>/dev/null || true; fi
    done
  } | { grep -E '^[0-9]+$' || true; } | sort -un | { grep -vx "$$" || true; }
}

# The supervisor's pid, if it is still the supervisor (in the node's network namespace).
supervisor_pid() {
  local pid
  pid=$(cat "$RUN/supervisor.pid" 2>/dev/null) || return 1
  [[ -e /run/netns/$NETNS && -e /proc/$pid/ns/net ]] || return 1
  [[ $(stat -L -c %i "/proc/$pid/ns/net") == "$(stat -L -c %i "/run/netns/$NETNS")" ]] || return 1
  echo "$pid"
}

kill_node_pids() {
  local sig=$1 pid
  for pid in $(node_pids); do kill "-$sig" "$pid" 2>/dev/null || true; done
}

teardown() {
  trap - INT TERM EXIT
  local t0 h left
  t0=$(date +%s)
  log "stopping the node"
  # The supervisor stops the daemons in order (kubelet first); then whatever remains, containers included.
  local sup
  if sup=$(supervisor_pid); then
    kill -TERM "$sup" 2>/dev/null || true
    for _ in $(seq 1 150); do kill -0 "$sup" 2>/dev/null || break; sleep 0.1; done
  fi
  kill_node_pids TERM
  for _ in $(seq 1 50); do [[ -z $(node_pids) ]] && break; sleep 0.1; done
  kill_node_pids KILL
  for _ in $(seq 1 100); do [[ -z $(node_pids) ]] && break; sleep 0.1; done
  left=$(node_pids | tr '\n' ' ')
  [[ -z $left ]] || log "WARNING: processes still alive after SIGKILL: $left"
  # Cgroups, deepest first (a cgroup can be removed only once its children are gone).
  for h in $(cgroup_hierarchies); do
    [[ -d $h/$CGROUP_PARENT ]] || continue
    find "$h/$CGROUP_PARENT" -depth -type d -exec rmdir {} + 2>/dev/null || true
    [[ -d $h/$CGROUP_PARENT ]] && log "WARNING: could not remove the cgroup $h/$CGROUP_PARENT"
  done
  ip link del "$HOST_IF" 2>/dev/null || true
  [[ -e /run/netns/$NETNS ]] && ip netns del "$NETNS"
  # The mount namespace died with its last process; no mount of ours is left to hold these files.
  if grep -q " $RUN" /proc/self/mounts; then
    log "WARNING: mounts under $RUN remain on the host; not deleting it"
  else
    rm -rf "$RUN"
  fi
  log "stopped and cleaned up in $(( $(date +%s) - t0 ))s"
}

status() {
  if [[ -f $RUN/ready ]] && supervisor_pid >/dev/null; then
    echo "$RUN/kubeconfig"
    return 0
  fi
  return 1
}

case ${1:-up} in
  down) teardown; exit 0 ;;
  status) status; exit $? ;;
  up) ;;
  *) die "usage: node.sh [up|down|status]" ;;
esac

[[ $(id -u) == 0 ]] || die "the node needs root (network namespace, cgroups, mounts)"
if [[ -e /run/netns/$NETNS || -e $RUN ]]; then
  status >/dev/null && die "a node is already running (kubeconfig: $RUN/kubeconfig)"
  die "a previous run left $RUN or the netns $NETNS behind: run 'hack/node.sh down' first"
fi
for tool in ip iptables nsenter unshare openssl; do command -v $tool >/dev/null || die "$tool is needed"; done

CP_BIN=$(bash "$ROOT/hack/build-controlplane.sh")
NODE_BIN=$(bash "$ROOT/hack/build-node.sh")

t_start=$(date +%s)
trap teardown EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
mkdir -p "$RUN"/{pki,logs,var-lib,var-log,cni/net.d,sysctl}
chmod 700 "$RUN"

# --- certificates ------------------------------------------------------------------------------------------------
log "[1/5] certificates and kubeconfigs"
PKI=$RUN/pki
openssl_quiet() { openssl "$@" 2>/dev/null; }
openssl_quiet ecparam -name prime256v1 -genkey -noout -out "$PKI/ca.key"
openssl_quiet req -x509 -new -key "$PKI/ca.key" -subj "/CN=disync-node-ca" -days 30 -out "$PKI/ca.crt"
# issue NAME SUBJECT [SANS] [clientAuth|serverAuth]
issue() {
  local name=$1 subj=$2 sans=${3:-} usage=${4:-clientAuth}
  openssl_quiet ecparam -name prime256v1 -genkey -noout -out "$PKI/$name.key"
  openssl_quiet req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr"
  { echo "extendedKeyUsage=$usage"; echo "keyUsage=critical,digitalSignature,keyEncipherment"
    [[ -n $sans ]] && echo "subjectAltName=$sans"; } > "$PKI/$name.ext"
  openssl_quiet x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial -days 30 \
    -extfile "$PKI/$name.ext" -out "$PKI/$name.crt"
  rm -f "$PKI/$name.csr" "$PKI/$name.ext"
}
issue apiserver "/CN=kube-apiserver" \
  "IP:$NODE_IP,IP:$API_SERVICE_IP,IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local" \
  serverAuth
issue admin "/O=system:masters/CN=disync-node-admin"
issue apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
issue controller-manager "/CN=system:kube-controller-manager"
issue scheduler "/CN=system:kube-scheduler"
issue kubelet "/O=system:nodes/CN=system:node:$NODE_NAME"
issue kube-proxy "/CN=system:kube-proxy"
openssl_quiet ecparam -name prime256v1 -genkey -noout -out "$PKI/sa.key"
openssl_quiet ec -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub"

# kubeconfig NAME SERVER: one per identity; the admin one (for the host) names the node's address.
kubeconfig() {
  local name=$1 server=$2
  cat > "$RUN/$name.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: disync-node
  cluster:
    server: $server
    certificate-authority: $PKI/ca.crt
users:
- name: $name
  user:
    client-certificate: $PKI/$name.crt
    client-key: $PKI/$name.key
contexts:
- name: disync-node
  context: {cluster: disync-node, user: $name}
current-context: disync-node
EOF
}
for who in controller-manager scheduler kubelet kube-proxy; do kubeconfig "$who" "https://$NODE_IP:6443"; done
kubeconfig admin "https://$NODE_IP:6443"

# --- configuration -------------------------------------------------------------------------------------------------
PAUSE_REF=$(cat "$NODE_BIN/pause.ref")
cat > "$RUN/containerd.toml" <<EOF
version = 3
# Nothing from the host's /etc/containerd.
imports = []
root = "/var/lib/containerd"
state = "/run/containerd"
[grpc]
  address = "/run/containerd/containerd.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "/var/lib/containerd-opt"
[plugins."io.containerd.nri.v1.nri"]
  disable = true
[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "$PAUSE_REF"
[plugins."io.containerd.cri.v1.runtime"]
  # This machine kind withholds CAP_SYS_RESOURCE even from root, so no process may lower an oom_score_adj below
  # its own (runc: "failed to update /proc/self/oom_score_adj: Permission denied" for the sandbox's -998). Kept
  # no lower than containerd's own 0, as for rootless nodes; positive scores (Burstable, BestEffort) are unchanged.
  restrict_oom_score_adj = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "$NODE_BIN/runc"
        SystemdCgroup = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["$NODE_BIN/cni"]
    conf_dir = "$RUN/cni/net.d"
EOF

cat > "$RUN/cni/net.d/10-disync-node.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "disync-node",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF

# Pods must not use the host's resolvers (off this machine): their resolv.conf names the host end, where nothing
# answers DNS, so a lookup fails here instead of leaving the machine. Nothing in these tests resolves a name.
printf 'nameserver %s\noptions ndots:1\n' "$HOST_IP" > "$RUN/resolv.conf"

cat > "$RUN/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This host has cgroup v1 hierarchies (with a cgroup2 mount beside them): v1.37's kubelet refuses v1 unless told.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /$CGROUP_PARENT
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
address: $NODE_IP
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
clusterDomain: cluster.local
resolvConf: $RUN/resolv.conf
# A shared disk: evict on memory only, never because the host's disk filled with someone else's files.
evictionHard: {memory.available: 100Mi, nodefs.available: "0%", imagefs.available: "0%", nodefs.inodesFree: "0%", imagefs.inodesFree: "0%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
failSwapOn: false
serializeImagePulls: false
# Volume contents (projected tokens, ConfigMaps) refresh within seconds, not the default minute.
syncFrequency: 10s
rotateCertificates: false
EOF

cat > "$RUN/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $RUN/kube-proxy.kubeconfig}
mode: iptables
hostnameOverride: $NODE_NAME
clusterCIDR: $POD_CIDR
# Zeros: leave the host-wide conntrack table size and timeouts alone.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
EOF

# The values the kubelet wants to see (see the header); bound over /proc/sys inside the node's mount namespace.
echo 1 > "$RUN/sysctl/vm.overcommit_memory"
echo 10 > "$RUN/sysctl/kernel.panic"
echo 1 > "$RUN/sysctl/kernel.panic_on_oops"

# --- network namespace and cgroups --------------------------------------------------------------------------------
log "[2/5] network namespace $NETNS (host end $HOST_IF $HOST_IP, node $NODE_IP) and cgroups under /$CGROUP_PARENT"
ip netns add "$NETNS"
ip link add "$HOST_IF" type veth peer name eth0 netns "$NETNS"
ip addr add "$HOST_IP/24" dev "$HOST_IF"
ip link set "$HOST_IF" up
ip -n "$NETNS" addr add "$NODE_IP/24" dev eth0
ip -n "$NETNS" link set eth0 up
ip -n "$NETNS" link set lo up
ip netns exec "$NETNS" sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1
for h in $(cgroup_hierarchies); do
  mkdir -p "$h/$CGROUP_PARENT"
  if [[ -f $h/cpuset.cpus ]]; then  # a v1 cpuset child starts empty: give it the root's CPUs and memory nodes
    cat "$h/cpuset.cpus" > "$h/$CGROUP_PARENT/cpuset.cpus"
    cat "$h/cpuset.mems" > "$h/$CGROUP_PARENT/cpuset.mems"
  fi
done

# --- the node ------------------------------------------------------------------------------------------------------
log "[3/5] starting etcd, kube-apiserver, containerd, then the controllers, kubelet and kube-proxy"
export RUN NODE_BIN CP_BIN NODE_IP POD_CIDR SERVICE_CIDR NODE_NAME PKI PAUSE_REF
nsenter --net="/run/netns/$NETNS" -- unshare --mount --propagation private -- \
  bash "$ROOT/hack/node-inner.sh" > "$RUN/logs/supervisor.log" 2>&1 &
echo $! > "$RUN/supervisor.pid"

KUBECTL=("$CP_BIN/kubectl" --kubeconfig "$RUN/admin.kubeconfig")
deadline=$(( $(date +%s) + 180 ))
wait_for() {  # wait_for WHAT COMMAND...: poll until it succeeds, or fail with the supervisor's log
  local what=$1; shift
  until "$@" >/dev/null 2>&1; do
    if ! kill -0 "$(cat "$RUN/supervisor.pid")" 2>/dev/null; then
      tail -20 "$RUN/logs/supervisor.log" >&2; die "the node stopped while waiting for $what"
    fi
    (( $(date +%s) < deadline )) || { tail -20 "$RUN/logs/supervisor.log" >&2; die "timed out waiting for $what (logs: $RUN/logs)"; }
    sleep 0.5
  done
}
wait_for "the API server" "${KUBECTL[@]}" get --raw /readyz
log "[4/5] API server ready after $(( $(date +%s) - t_start ))s; waiting for the node to be Ready"
wait_for "the node to register" "${KUBECTL[@]}" get node "$NODE_NAME"
wait_for "the node to be Ready" "${KUBECTL[@]}" wait --for=condition=Ready "node/$NODE_NAME" --timeout=5s
# Pods get the default ServiceAccount only once the controller-manager made it.
wait_for "the default ServiceAccount" "${KUBECTL[@]}" -n default get serviceaccount default
ln -s admin.kubeconfig "$RUN/kubeconfig"
touch "$RUN/ready"
log "[5/5] node Ready after $(( $(date +%s) - t_start ))s"
cat >&2 <<EOF

  kubeconfig:  $RUN/kubeconfig
  try:         kubectl --kubeconfig $RUN/kubeconfig get nodes
  host end:    $HOST_IP (the DataWorks emulator listens here; pods reach it)
  images:      hack/node-load-image.sh IMAGE-ARCHIVE
  logs:        $RUN/logs/
  Ctrl-C stops the node and removes everything it made.

EOF
echo "$RUN/kubeconfig"
# Run until the supervisor ends (a part died) or we are told to stop (the traps call teardown).
while kill -0 "$(cat "$RUN/supervisor.pid")" 2>/dev/null; do sleep 1; done
tail -20 "$RUN/logs/supervisor.log" >&2
die "the node's supervisor ended (see above)"
