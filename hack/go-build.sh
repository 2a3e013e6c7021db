# Sourced by the hack/build-*.sh scripts: what building from pinned Go modules needs, and the heartbeat of every long
# step. Expects a `log` function.

# require_go <go.mod> <what>: stop with a clear message if the local Go is older than the module asks.
require_go() {
  local need have
  need=$(awk '/^go /{print $2}' "$1")
  have=$(go env GOVERSION | sed 's/^go//')
  if [[ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -1)" != "$need" ]]; then
    log "Go $need or newer is needed to build $2; found $have"
    exit 1
  fi
}

# Static binaries, the modules' own go.sum, no toolchain download; two cores and no swap on our machines: cap
# parallel compiles unless told otherwise.
go_build_env() {
  export CGO_ENABLED=0 GOWORK=off GOTOOLCHAIN=${GOTOOLCHAIN:-local} GOFLAGS=-mod=readonly
  PARALLEL=${GOBUILD_P:-2}
}

# progress <what> <pid>: a heartbeat while a long step runs, so nobody stares at a silent terminal; returns its status.
progress() {
  local what=$1 pid=$2 t0
  t0=$(date +%s)
  while kill -0 "$pid" 2>/dev/null; do
    sleep 15
    kill -0 "$pid" 2>/dev/null && log "  still $what ($(( $(date +%s) - t0 ))s so far)"
  done
  wait "$pid"
}
