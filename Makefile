# The two commands of the quick start: `make run` and `make test`.
# Everything they need is installed by the targets themselves.

SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Lambda runs Python 3.13, and only 3.13 can compile the bytecode the stack ships (infra/,
# its tests): prefer it (pyenv on these machines), else 3.12 or the system python3 (>= 3.11),
# which run the registry and its tests but cannot build the deployment.
PYTHON ?= $(shell for p in $(HOME)/.pyenv/versions/3.13*/bin/python3.13 python3.13 python3.12 python3; do \
	  command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null && { echo $$p; break; }; \
	done)

.PHONY: install localstack ministack emulator-up emulator-down cdk proxy synth run test lint typecheck clean bench conformance

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python 3.11 or newer is required" >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# LocalStack's S3 for the tests, in its own venv (it pins libraries the registry must not
# share); tests/localstack.py starts it on the host. Its current release needs Python >= 3.12;
# with only 3.11 the last release that runs there is installed instead (same S3 behaviour).
LOCALSTACK_VENV := .localstack-venv
LOCALSTACK_PYTHON ?= $(shell \
	for p in $(HOME)/.pyenv/versions/3.1[3-9]*/bin/python3 python3.13 $(HOME)/.pyenv/versions/3.12*/bin/python3 \
	         python3.12 python3 \
	         $(HOME)/.pyenv/versions/3.11*/bin/python3 python3.11; do \
	  command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; assert sys.version_info >= (3, 12)' 2>/dev/null \
	    && { echo $$p; exit 0; }; \
	done; \
	for p in python3.11 python3 $(HOME)/.pyenv/versions/3.11*/bin/python3; do \
	  command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null \
	    && { echo $$p; exit 0; }; \
	done)
LOCALSTACK_PACKAGES_3_12 := 'localstack-core[runtime]==2026.3.0' 'cbor2<6' 'pyopenssl<25' 'cryptography<45'
LOCALSTACK_PACKAGES_3_11 := 'localstack-core[runtime]==4.13.1' 'cbor2<6' 'pyopenssl<25' 'cryptography<45' service_identity
LOCALSTACK_STAMP := $(LOCALSTACK_VENV)/.installed

localstack: $(LOCALSTACK_STAMP)

$(LOCALSTACK_STAMP):
	@test -n "$(LOCALSTACK_PYTHON)" || { echo "make test runs LocalStack's S3, which needs Python 3.11 or newer" \
	  "(3.12+ preferred): install one (e.g. pyenv install 3.13) or set LOCALSTACK_PYTHON=/path/to/python3" >&2; exit 1; }
	test -x $(LOCALSTACK_VENV)/bin/python || $(LOCALSTACK_PYTHON) -m venv $(LOCALSTACK_VENV)
	if $(LOCALSTACK_VENV)/bin/python -c 'import sys; assert sys.version_info >= (3, 12)' 2>/dev/null; then \
	  $(LOCALSTACK_VENV)/bin/python -m pip install --quiet $(LOCALSTACK_PACKAGES_3_12); \
	else \
	  $(LOCALSTACK_VENV)/bin/python -m pip install --quiet $(LOCALSTACK_PACKAGES_3_11); \
	fi
	touch $@

# MiniStack, the AWS emulator the stack is deployed into (emulator/, docs/deploy.md), in its own
# venv like LocalStack. Its interpreter also runs the functions, so it is the runtime's Python.
MINISTACK_VENV := .ministack-venv
MINISTACK_PYTHON ?= $(PYTHON)
MINISTACK_STAMP := $(MINISTACK_VENV)/.installed-1.5.33

ministack: $(MINISTACK_STAMP)

$(MINISTACK_STAMP):
	test -x $(MINISTACK_VENV)/bin/python || $(MINISTACK_PYTHON) -m venv $(MINISTACK_VENV)
	$(MINISTACK_VENV)/bin/python -m pip install --quiet 'ministack==1.5.33'
	touch $@

# The stack, deployed into MiniStack on https://127.0.0.1:4566; prints the API's URL last.
# EMULATOR_ARGS passes more, e.g. EMULATOR_ARGS="--port 4600 -c maxRepositoryDepth=2".
emulator-up: install cdk ministack
	$(BIN)/python -m emulator up $(EMULATOR_ARGS)

emulator-down:
	@test -x $(BIN)/python || { echo "nothing to stop (no $(VENV))"; exit 0; }
	$(BIN)/python -m emulator down

# The pinned AWS CDK CLI (package-lock.json) for synth/deploy and the infra tests.
# jsii (CDK's Node bridge) warns on Node 20 at every start; the CLI works on it.
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
CDK_STAMP := node_modules/.installed

cdk: $(CDK_STAMP)

$(CDK_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# A real forward proxy for the client's proxy tests (tests/proxykit.py): Debian's tinyproxy.
proxy:
	@command -v tinyproxy >/dev/null || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq tinyproxy; }

# Synthesize the AWS stack (docs/deploy.md); a stale cdk.out keeps old assets, so start clean.
synth: install cdk
	rm -rf cdk.out
	npx cdk synth --quiet $(CDK_ARGS)

run: install
	$(BIN)/vmregistry serve

# Static checks first (seconds), then every test; pytest exits 5 if it ran none.
test: install localstack cdk ministack proxy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

# Benchmarks against CNCF distribution (docs/bench.md); not part of `make test`.
# LocalStack (make localstack) is for the S3-mode section, MiniStack for the deployed stack's.
bench: install localstack cdk ministack
	@command -v docker-registry >/dev/null && command -v wrk >/dev/null && command -v skopeo >/dev/null || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq docker-registry wrk skopeo; }
	$(BIN)/python -m pip install --quiet -r bench/requirements.txt
	$(BIN)/python -m bench $(BENCH_ARGS)

# The OCI distribution-spec conformance suite, then skopeo and podman (README: Conformance); not
# part of `make test` (.ci/run runs it after). CONFORMANCE_SERVERS: vmregistry-fs, vmregistry-s3
# (LocalStack), distribution (the reference, with its known failures).
CONFORMANCE_SERVERS ?= vmregistry-fs vmregistry-s3
conformance: install $(if $(findstring s3,$(CONFORMANCE_SERVERS)),localstack)
	@command -v docker-registry >/dev/null && command -v skopeo >/dev/null && command -v podman >/dev/null || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); $$SUDO apt-get update -qq && \
	  $$SUDO apt-get install -y -qq docker-registry skopeo podman; }
	$(BIN)/python -m conformance $(addprefix --server ,$(CONFORMANCE_SERVERS)) $(CONFORMANCE_ARGS)

clean:
	rm -rf $(VENV) $(LOCALSTACK_VENV) $(MINISTACK_VENV) .emulator build cdk.out node_modules .pytest_cache .mypy_cache .ruff_cache
