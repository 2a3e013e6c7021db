#!/usr/bin/env bash
# Builds one of the checking tools the tests use, helm or promtool, from its pinned wrapper module
# (hack/tools/<tool>/go.mod + go.sum) into a cache outside the repository, and prints the binary's path on its last
# line of stdout.
#
#   hack/build-tool.sh helm               # build if not cached, print the path of the helm binary
#   hack/build-tool.sh promtool
#   DISYNC_CONTROLPLANE_CACHE=/some/dir   # override the cache root (default ~/.cache/disync-operator)
#
# Why from modules: no prebuilt binaries can be downloaded here, and the pinned wrapper modules give the same
# versions on every machine (as hack/build-controlplane.sh does for the control plane).
set -euo pipefail

TOOL=${1:?usage: build-tool.sh helm|promtool}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
case $TOOL in
  helm) MODULE=helm.sh/helm/v3 PACKAGE=helm.sh/helm/v3/cmd/helm
        # helm prints this as its version (`helm version`); without it, a module build says v3.x-dev-ish defaults.
        VERSION_FLAG="-X helm.sh/helm/v3/internal/version.version=%s" VERSION_ARGS=(version) ;;
  promtool) MODULE=github.com/prometheus/prometheus PACKAGE=github.com/prometheus/prometheus/cmd/promtool
        VERSION_FLAG="-X github.com/prometheus/common/version.Version=%s" VERSION_ARGS=(--version) ;;
  *) echo "unknown tool $TOOL (helm or promtool)" >&2; exit 2 ;;
esac
DIR="$ROOT/hack/tools/$TOOL"
modver() { awk -v m="$1" '$1 == m {print $2; exit}' "$DIR/go.mod"; }
VERSION=$(modver "$MODULE")
[[ -n $VERSION ]] || { echo "cannot read the pinned $MODULE version from $DIR/go.mod" >&2; exit 1; }
# shellcheck disable=SC2059  # the format is ours
LDFLAGS="-s -w $(printf -- "$VERSION_FLAG" "$VERSION")"
if [[ $TOOL == helm ]]; then
  # The Kubernetes version `helm template` and `helm lint` assume without a cluster: its client-go's, as helm's own
  # release build sets it (left unset, it is 1.20).
  client_minor=$(modver k8s.io/client-go | cut -d. -f2)
  LDFLAGS+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$client_minor"
fi
CACHE_ROOT=${DISYNC_CONTROLPLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/disync-operator}
BIN="$CACHE_ROOT/$TOOL-$VERSION"
STAMP="$TOOL=$VERSION go.sum=$(sha256sum < "$DIR/go.sum" | cut -c1-16) ldflags=$(sha256sum <<< "$LDFLAGS" | cut -c1-16)"

log() { echo "[$TOOL] $*" >&2; }

if [[ -x $BIN/$TOOL && "$(cat "$BIN/.stamp" 2>/dev/null)" == "$STAMP" ]]; then
  log "using cached $BIN/$TOOL"
  echo "$BIN/$TOOL"
  exit 0
fi

# shellcheck source=hack/go-build.sh
source "$ROOT/hack/go-build.sh"
require_go "$DIR/go.mod" "$TOOL $VERSION"
go_build_env
mkdir -p "$BIN"
tmp=$(mktemp -d "$BIN/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT


start=$(date +%s)
log "first build of $TOOL $VERSION into $BIN; later runs reuse the cache"
log "[1/2] downloading Go modules"
( cd "$DIR" && go mod download ) & progress "downloading $TOOL's modules" $!
log "[2/2] compiling $TOOL"
( cd "$DIR" && go build -p "$PARALLEL" -trimpath -ldflags "$LDFLAGS" -o "$tmp/$TOOL" "$PACKAGE" ) &
progress "compiling $TOOL" $!
mv "$tmp/$TOOL" "$BIN/$TOOL"
echo "$STAMP" > "$BIN/.stamp"
log "built in $(( $(date +%s) - start ))s: $(du -sh "$BIN/$TOOL" | cut -f1)"
"$BIN/$TOOL" "${VERSION_ARGS[@]}" >&2
echo "$BIN/$TOOL"
