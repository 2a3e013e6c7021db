# disync-operator — the two commands a newcomer needs are `make run` and `make test`; both do their own set-up.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
PYTEST_ARGS ?=

.PHONY: help venv controlplane tools test-deps test test-unit run lint lock crd chart-files bench chaos clean node node-deps node-down node-bins image e2e e2e-chaos

help:
	@echo "make run    - local control plane + DataWorks emulator + the operator, examples applied (Ctrl-C stops)"
	@echo "make test   - full test suite against a real kube-apiserver/etcd and the emulator"
	@echo "make lint   - ruff check, ruff format --check, mypy --strict (CI runs it beside make test)"
	@echo "make tools  - build (or find cached) helm and promtool for the chart and alert checks"
	@echo "make node   - a real single-node cluster (kubelet, containerd, runc) in a network namespace (Ctrl-C stops)"
	@echo "make image  - the operator's image from the Dockerfile, built by buildah, as an OCI archive"
	@echo "make e2e    - the image on the node: Helm and kustomize installs, failover, PDB (starts a node if none is up)"
	@echo "make lock   - rewrite requirements.lock (the image's hash-pinned runtime dependencies) after a pyproject edit"
	@echo "make crd    - regenerate deploy/crds from the pydantic models (and the chart's copies: make chart-files)"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "[setup] installing disync-operator and its test dependencies into $(VENV)"
	@$(PY) -m pip install -q --disable-pip-version-check -U pip
	@$(PY) -m pip install -q --disable-pip-version-check -e '.[test,dev]'
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)

controlplane:
	@bash hack/build-controlplane.sh >/dev/null

# helm and promtool, for the chart and alerting checks: built from pinned Go modules, cached like the control plane.
tools:
	@bash hack/build-tool.sh helm >/dev/null
	@bash hack/build-tool.sh promtool >/dev/null

# Debian packages the tests need (libfaketime), installed when missing (hack/system-deps.sh).
test-deps:
	@bash hack/system-deps.sh test

# pytest exits 5 when it collects nothing; that must fail the run rather than pass silently. tests/e2e needs a real
# node and the built image: `make e2e` runs it.
test: venv controlplane tools test-deps
	@$(PY) -m pytest -q -p no:cacheprovider --ignore=tests/e2e $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "no tests were collected" >&2; exit 1; fi; exit $$rc

test-unit: venv
	@$(PY) -m pytest -q tests/unit tests/inprocess $(PYTEST_ARGS)

run: venv
	@$(VENV)/bin/disync-operator dev $(RUN_ARGS)

lint: venv
	@$(VENV)/bin/ruff check operator tests bench hack
	@$(VENV)/bin/ruff format --check operator tests bench hack
	@$(VENV)/bin/mypy --strict

lock: venv
	@bash hack/lock.sh

crd: venv
	@$(VENV)/bin/disync-operator crd > deploy/crds/disyncinstances.yaml
	@$(MAKE) -s chart-files

# The Helm chart can read only files inside it: copies of the CRD, the alerts and the dashboard (a test compares them),
# and its values.schema.json, generated (settings from the operator's settings model).
CHART := deploy/helm/disync-operator
chart-files: venv
	@$(PY) hack/gen_chart_schema.py > $(CHART)/values.schema.json
	@cp deploy/crds/disyncinstances.yaml $(CHART)/files/disyncinstances.yaml
	@cp deploy/monitoring/prometheusrule.yaml $(CHART)/files/prometheusrule.yaml
	@cp deploy/monitoring/dashboard.json $(CHART)/files/dashboard.json

# The operator under measurement runs from a virtualenv with its runtime dependencies only, as in the image.
RUNTIME_VENV := .venv-runtime
RUNTIME_STAMP := $(RUNTIME_VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)

$(RUNTIME_STAMP): pyproject.toml
	@test -x $(RUNTIME_VENV)/bin/python || $(PYTHON) -m venv $(RUNTIME_VENV)
	@echo "[setup] installing disync-operator and its runtime dependencies only into $(RUNTIME_VENV)"
	@$(RUNTIME_VENV)/bin/python -m pip install -q --disable-pip-version-check -e .
	@rm -f $(RUNTIME_VENV)/.installed-* && touch $@

# The idiomatic kopf operator bench VS compares with runs from kopf and the official SDK only (what its user installs).
CONTENDER_VENV := .venv-contender
CONTENDER_PINS := 'kopf>=1.45.2,<1.46' alibabacloud-tea-openapi==0.4.6 alibabacloud-dataworks-public20200518==10.1.1
CONTENDER_STAMP := $(CONTENDER_VENV)/.installed-$(shell echo $(CONTENDER_PINS) | sha256sum | cut -c1-12)

$(CONTENDER_STAMP):
	@test -x $(CONTENDER_VENV)/bin/python || $(PYTHON) -m venv $(CONTENDER_VENV)
	@echo "[setup] installing kopf and the official DataWorks SDK into $(CONTENDER_VENV) (bench VS's contender)"
	@$(CONTENDER_VENV)/bin/python -m pip install -q --disable-pip-version-check $(CONTENDER_PINS)
	@rm -f $(CONTENDER_VENV)/.installed-* && touch $@

bench: venv controlplane $(RUNTIME_STAMP) $(CONTENDER_STAMP)
	@$(PY) -m bench --operator-python $(RUNTIME_VENV)/bin/python --contender-python $(CONTENDER_VENV)/bin/python $(BENCH_ARGS)

chaos: venv controlplane test-deps
	@$(PY) -m pytest -q -m slow tests --ignore=tests/e2e $(PYTEST_ARGS)

# Debian packages the node and the image build need (hack/system-deps.sh node), installed when missing.
node-deps:
	@bash hack/system-deps.sh node

# A real single-node cluster (hack/node.sh): built from pinned Go modules into the cache, run in a network namespace
# of its own until Ctrl-C, then removed. Needs root. `make node-down` cleans up after a run that was killed.
node: controlplane node-deps
	@bash hack/node.sh up

node-down:
	@bash hack/node.sh down

image: node-deps
	@bash hack/build-image.sh >/dev/null

node-bins: controlplane node-deps
	@bash hack/build-node.sh >/dev/null

# The image on the real node: starts one if none is up (and stops it after), builds and loads the image.
# Builds come first, outside the tests' timeouts (cold: tens of minutes).
e2e: venv controlplane tools node-bins
	@archive=$$(bash hack/build-image.sh | tail -1) && \
	  E2E_IMAGE_ARCHIVE=$$archive $(PY) -m pytest -q -p no:cacheprovider -s tests/e2e $(E2E_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "no tests were collected" >&2; exit 1; fi; exit $$rc

# The slow ones on the real node (10,000 resources under the memory limit, bench P6).
e2e-chaos: venv controlplane tools node-bins
	@archive=$$(bash hack/build-image.sh | tail -1) && \
	  E2E_IMAGE_ARCHIVE=$$archive $(PY) -m pytest -q -p no:cacheprovider -s -m slow tests/e2e $(E2E_ARGS)

clean:
	rm -rf $(VENV) $(RUNTIME_VENV) $(CONTENDER_VENV) build dist .pytest_cache .mypy_cache .ruff_cache
