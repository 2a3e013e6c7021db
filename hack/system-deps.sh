#!/usr/bin/env bash
# Debian packages a target needs beyond Python and Go, installed from Debian's archive when missing (root, as CI and
# the developers' machines are), then checked. A new machine has none of them; a machine that ran it once has all.
#   hack/system-deps.sh test   libfaketime: one operator process's wall clock shifted (tests/reliability/
#                              test_exactly_once.py: a handover between nodes whose clocks disagree)
#   hack/system-deps.sh node   what `make node`/`make e2e` build and run with: gcc, libseccomp-dev and pkg-config
#                              (runc), buildah and debootstrap (the image), iproute2, iptables, util-linux and
#                              openssl (the node's namespace, veth and certificates)
set -euo pipefail
log() { echo "[system-deps] $*" >&2; }

case "${1:-}" in
  test) packages=(libfaketime) ;;
  node) packages=(gcc libseccomp-dev pkg-config buildah debootstrap iproute2 iptables util-linux openssl) ;;
  *) log "usage: $0 test|node"; exit 2 ;;
esac

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
  log "missing Debian packages: ${missing[*]} (apt-get install ${missing[*]}), then run again"
  exit 1
fi
log "installing ${missing[*]} from Debian's archive"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
for package in "${missing[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || { log "$package did not install"; exit 1; }
done
