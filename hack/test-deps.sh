#!/usr/bin/env bash
# System packages the test suite needs beyond Python and Go, from Debian's archive (installed once; a check after):
#   libfaketime - shifts one operator process's wall clock (tests/reliability/test_exactly_once.py: a handover
#                 between nodes whose clocks disagree).
set -euo pipefail
log() { echo "[test-deps] $*" >&2; }

if compgen -G '/usr/lib/*/faketime/libfaketimeMT.so.1' >/dev/null; then
  exit 0
fi
if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
  log "libfaketime is missing: install Debian's libfaketime (apt-get install libfaketime) and run again"
  exit 1
fi
log "installing libfaketime from Debian's archive"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends libfaketime >/dev/null
compgen -G '/usr/lib/*/faketime/libfaketimeMT.so.1' >/dev/null || { log "libfaketime did not install"; exit 1; }
