# ferroloop: the one entry point for people and CI. `make help` lists targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
# The release profile (LTO) is what users get; PROFILE=quick builds faster for test matrices.
PROFILE ?= release
STAMP := $(VENV)/.deps-stamp
SOURCES := $(shell find crates python -type f \( -name '*.rs' -o -name '*.py' -o -name '*.pyi' -o -name 'Cargo.toml' \) 2>/dev/null) Cargo.toml pyproject.toml
BUILT := $(VENV)/.built-$(PROFILE)

.PHONY: help
help: ## list targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  \033[1m%-18s\033[0m %s\n", $$1, $$2}'

$(STAMP): Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# An optional integration the tests exercise when it is there (no dependency of ferroloop).
	$(PY) -m pip install -q opentelemetry-api
	$(PY) -m pip install -q "maturin>=1.9,<2" pytest ruff uvloop matplotlib httptools \
	  aiohttp uvicorn websockets httpx anyio asyncpg redis trustme pytest-asyncio
	touch $@

# The database servers of tests/test_databases.py, from Debian's packages when missing (as root
# with apt-get; otherwise those tests skip and say why). A missing package is not an error here.
.PHONY: services
services: ## install PostgreSQL and Redis servers for the client-library tests, if missing
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	{ command -v postgres || ls /usr/lib/postgresql/*/bin/postgres; } >/dev/null 2>&1 \
	  || missing="$$missing postgresql"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing$$missing (Debian packages)"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q$$missing >/dev/null \
	    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q$$missing >/dev/null; } \
	    || echo "could not install$$missing: their tests will skip"; \
	else echo "not installed:$$missing (their tests will skip)"; fi

.PHONY: venv
venv: $(STAMP) ## create .venv with the build and test dependencies

$(BUILT): $(STAMP) $(SOURCES)
	rm -f $(VENV)/.built-*
	. $(VENV)/bin/activate && maturin develop -q --profile $(PROFILE)
	touch $@

.PHONY: build
build: $(BUILT) ## build ferroloop into .venv (PROFILE=release|quick)

.PHONY: test-rust
test-rust: ## cargo test of the pure-Rust core
	cargo test -q -p ferroloop-core

.PHONY: test-python
test-python: build services ## pytest on asyncio and ferroloop, then again with PYTHONASYNCIODEBUG=1
	$(PY) -m pytest -q tests
	PYTHONASYNCIODEBUG=1 $(PY) -m pytest -q -x tests

.PHONY: conformance
conformance: build ## CPython's test.test_asyncio on ferroloop, failing on unlisted failures
	$(PY) tests/conformance/run.py
	$(PY) tests/conformance/run.py --module test_subprocess --policy ferroloop
	@if $(PY) -c 'import sys; sys.exit(sys.version_info < (3, 14))'; then \
	  $(PY) tests/conformance/run.py --module test_subprocess --policy bare; fi

# Virtual time (ferroloop.testing): CPython's timing-dependent modules on loops whose clock jumps
# after 20 ms of real quiet; expected_failures_virtual.txt lists what keeps real time.
VIRTUAL_MODULES := test_timeouts test_waitfor test_locks test_queues test_taskgroups test_tasks \
  test_futures test_staggered test_streams test_server test_sock_lowlevel test_events \
  test_sendfile test_subprocess test_ssl test_sslproto test_runners test_eager_task_factory
.PHONY: conformance-virtual
conformance-virtual: build ## CPython's timing-dependent asyncio tests on ferroloop's virtual-time loop
	$(PY) tests/conformance/run.py --loop ferroloop --virtual-time 0.02 --test-timeout 30 \
	  $(addprefix --module ,$(VIRTUAL_MODULES))

.PHONY: test
test: test-rust test-python conformance ## every test: Rust core, Python suite, conformance

# -k: conformance still runs when pytest failed, and every version runs, so one run shows the
# whole matrix. The editable installs share python/ferroloop/_ferroloop.cpython-3XY-*.so, so a
# quick build here replaced $(VENV)'s build of the same Python: drop its stamp to rebuild it.
# Free-threaded builds (3.13t) are not supported, so they are not picked.
# 3.14 and 3.15 run in a Debian forky chroot (.ci/forky) when this machine has no such Python.
.PHONY: test-all-pythons
PYTHONS ?= 3.10 3.11 3.12 3.13 3.14 3.15
test-all-pythons: ## on every Python in PYTHONS (default 3.10-3.15) present: build (quick), pytest twice, conformance
	@failed=""; for v in $(PYTHONS); do \
	  py=$$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/$$v.*/bin/python 2>/dev/null | grep -v 't/bin/python$$' | sort -V | tail -1); \
	  if [ -z "$$py" ]; then py=$$(command -v python$$v || true); fi; \
	  run=""; \
	  if [ -z "$$py" ] && { [ "$$v" = 3.14 ] || [ "$$v" = 3.15 ]; }; then \
	    if .ci/forky make; then py=/usr/bin/python$$v; run=".ci/forky run"; \
	    else echo "== Python $$v: no chroot here (see above), skipped"; continue; fi; \
	  fi; \
	  if [ -z "$$py" ]; then echo "== Python $$v: not installed, skipped"; continue; fi; \
	  echo "== Python $$v ($$py$${run:+, in the forky chroot})"; \
	  $$run $(MAKE) --no-print-directory -k test-python conformance PYTHON=$$py VENV=.venv-$$v PROFILE=quick \
	    || failed="$$failed $$v"; \
	done; \
	rm -f $(VENV)/.built-*; \
	if [ -n "$$failed" ]; then echo "== FAILED on Python$$failed"; exit 1; fi; \
	echo "== all Pythons passed"

.PHONY: python-3.14 python-3.15
python-3.14 python-3.15: ## make (once) and cache the Debian chroot with Pythons 3.14 and 3.15 that test-all-pythons uses (root)
	.ci/forky make

# Wheels as users get them: release builds linked by zig against glibc 2.17 (manylinux2014), so
# no manylinux container is needed; 3.14 and 3.15 are built in the forky chroot where this machine
# has no such Python. Every wheel is checked (tag, libraries, glibc symbols, licenses, version).
.PHONY: wheels
wheels: ## dist/: sdist + one manylinux_2_17 x86_64 wheel per CPython in PYTHONS (default 3.10-3.15), checked
	PYTHONS="$(PYTHONS)" .ci/wheels build

.PHONY: wheels-cross
wheels-cross: ## dist/: aarch64 and musllinux wheels, where their Rust standard library can be had here
	PYTHONS="$(PYTHONS)" .ci/wheels cross

.PHONY: test-wheels
test-wheels: ## install each x86_64 wheel of dist/ into a fresh venv of its Python, no Rust on PATH: smoke + fast tests
	PYTHONS="$(PYTHONS)" .ci/wheels test

.PHONY: bench
bench: build bench-tools bench-peers ## side-by-side micro and network benchmarks: asyncio, uvloop, ferroloop and every other loop that installs (benchmarks/results/); BASELINE=dir adds another ferroloop build
	$(if $(BASELINE),FERROLOOP_BASELINE=$(abspath $(BASELINE))) $(PY) benchmarks/run.py $(BENCH_ARGS)

# The other loops, each from PyPI by name; one that does not install on this Python is skipped
# by the reports with a note.
PEERS := uvloop "rloop>=0.5,<0.6" rsloop zuvloop aiofastnet
.PHONY: bench-peers
bench-peers: $(STAMP)
	@for p in $(PEERS); do $(PY) -m pip install -q "$$p" 2>/dev/null \
	  || echo "$$p could not be installed on this Python: the reports compare the other loops"; done

.PHONY: bench-instructions
bench-instructions: build bench-peers ## instructions per operation of the micro benchmarks under callgrind, per loop: steady on a busy machine
	$(PY) benchmarks/instructions.py --loops asyncio,uvloop,ferroloop,rloop,rsloop,zuvloop

.PHONY: bench-semantics
bench-semantics: build bench-peers ## which of asyncio's scheduling rules each loop keeps (context, clock, errors, order)
	$(PY) benchmarks/semantics.py asyncio uvloop ferroloop rloop rsloop zuvloop uvloop+aiofastnet

# `make bench-py3.14 BENCH_ARGS=--quick`: the benchmarks on another Python; 3.14 and 3.15 in the
# forky chroot when this machine has no such Python of its own.
.PHONY: bench-py%
bench-py%:
	@py=$$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/$*.*/bin/python 2>/dev/null | grep -v 't/bin/python$$' | sort -V | tail -1); \
	if [ -z "$$py" ]; then py=$$(command -v python$* || true); fi; \
	if [ -n "$$py" ]; then $(MAKE) bench PYTHON=$$py VENV=.venv-$* PROFILE=release; \
	else .ci/forky make && .ci/forky run $(MAKE) bench PYTHON=/usr/bin/python$* VENV=.venv-$* \
	  PROFILE=release BENCH_ARGS="$(BENCH_ARGS)" $(if $(BASELINE),BASELINE=$(BASELINE)); fi

# Real libraries against real servers: the test suite's redis-server and PostgreSQL (`make
# services`), wrk; the libraries come from the registry by name. APPS_ARGS=--quick: one short round.
.PHONY: bench-apps
bench-apps: build bench-tools services ## real applications (uvicorn, aiohttp, redis-py, asyncpg, websockets, httpx, subprocess) on each loop, interleaved (benchmarks/results/apps.*)
	@$(PY) -m pip install -q starlette "rloop>=0.5,<0.6" 2>/dev/null \
	  || $(PY) -m pip install -q starlette \
	  || echo "starlette or rloop could not be installed: those columns will show errors"
	$(PY) benchmarks/apps.py $(APPS_ARGS)

# wrk drives the HTTP point of the demo and `make bench`; from Debian's packages when missing
# (as root with apt-get; otherwise that point says it was skipped and why).
.PHONY: bench-tools
bench-tools:
	@command -v wrk >/dev/null && exit 0; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing wrk (Debian package)"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >/dev/null \
	    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >/dev/null; } \
	    || echo "could not install wrk: the HTTP point will be skipped"; \
	else echo "wrk not installed: the HTTP point will be skipped"; fi

.PHONY: demo
demo: build bench-tools ## build a release and show ferroloop beside asyncio and uvloop (table + PNG chart)
	$(PY) benchmarks/demo.py

# Memory errors under valgrind's memcheck (invalid reads and writes, uses of uninitialised
# memory, definite leaks), failing on any: the Rust core's tests (debug build), then the Python
# tests of scheduling, TCP, UDP, pipes, subprocesses and TLS on ferroloop (a quick build), with
# CPython's allocator set to malloc so that memcheck sees every object. The bulk tests are left
# out (64 MiB through pipes, 340 TLS handshakes, 200 children: near or past their time limits
# under valgrind). .ci/valgrind-python.supp lists what is ignored, and why: CPython and library
# internals only. About 4 minutes on 2 cores (the build aside).
VALGRIND := valgrind -q --tool=memcheck --error-exitcode=1 --leak-check=full \
  --show-leak-kinds=definite --errors-for-leak-kinds=definite --num-callers=40
MEMCHECK_TESTS := test_scheduling test_tcp test_udp test_pipes test_subprocess test_tls
MEMCHECK_SKIP := 64_mib or many_handshakes or many_short_children
CARGO_RUNNER := CARGO_TARGET_$(shell rustc -vV | sed -n 's/^host: //p' | tr a-z.- A-Z__)_RUNNER
.PHONY: memcheck
memcheck: $(STAMP) ## valgrind memcheck: the Rust core's tests, then the Python tests of each transport on ferroloop
	$(CARGO_RUNNER)="$(VALGRIND)" cargo test -q -p ferroloop-core
	$(MAKE) --no-print-directory build PROFILE=quick
	PYTHONMALLOC=malloc $(VALGRIND) --suppressions=.ci/valgrind-python.supp \
	  --child-silent-after-fork=yes $(PY) -m pytest -q -p no:cacheprovider \
	  -k "ferroloop and not ($(MEMCHECK_SKIP))" $(patsubst %,tests/%.py,$(MEMCHECK_TESTS))

# The free-threaded check compiles the extension for CPython 3.14t and 3.15t from PyO3 config files, so
# no such interpreter is needed. The module still declares gil_used: there it runs with the GIL.
.PHONY: lint
lint: $(STAMP) ## cargo fmt --check, clippy -D warnings, free-threaded cargo check, layering rule, ruff
	$(PY) .ci/check_layers.py --self-test
	$(PY) .ci/check_layers.py
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -q -- -D warnings
	for v in 3.14 3.15; do \
	  PYO3_CONFIG_FILE=$(CURDIR)/crates/ferroloop-py/free-threaded-$$v.pyo3-config \
	    cargo check -p ferroloop-py --target-dir target/free-threaded -q || exit 1; \
	done
	$(VENV)/bin/ruff check python tests benchmarks examples .ci
	cargo fmt --manifest-path benchmarks/loadgen/Cargo.toml -- --check
	cargo clippy --manifest-path benchmarks/loadgen/Cargo.toml -q -- -D warnings

.PHONY: fmt
fmt: $(STAMP) ## format Rust and Python
	cargo fmt --all
	cargo fmt --manifest-path benchmarks/loadgen/Cargo.toml
	$(VENV)/bin/ruff format python tests benchmarks examples

.PHONY: clean
clean: ## remove build outputs and virtual environments
	cargo clean
	rm -rf .venv .venv-3.* .venv-wheels .venv-wheels-forky dist build/wheel-venvs
