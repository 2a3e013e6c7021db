# Sourced by hack/build-controlplane.sh and hack/build-tool.sh: what building from pinned Go modules needs in both.
# Expects a `log` function.

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
