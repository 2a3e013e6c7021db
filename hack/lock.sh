#!/usr/bin/env bash
# Writes the image's lock file: every runtime dependency of pyproject.toml (the `dependencies` list, no extras) pinned
# to one version with the hashes of all its published files, for `pip install --require-hashes` in the Dockerfile.
#
#   hack/lock.sh [OUTPUT]     # default requirements.lock; `make lock` runs it
#
# uv keeps the versions already pinned in OUTPUT when they still satisfy pyproject.toml, so re-running it after an
# unrelated edit changes nothing; tests/integration/test_packaging.py re-runs it on a copy to prove the lock is current.
# One resolution for every platform (--universal), for the Python the image runs (3.11).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUTPUT=${1:-$ROOT/requirements.lock}
UV=${UV:-$ROOT/.venv/bin/uv}
cd "$ROOT"
exec "$UV" pip compile pyproject.toml --quiet --universal --python-version 3.11 --generate-hashes \
  --custom-compile-command "make lock" --annotation-style line --output-file "$OUTPUT"
