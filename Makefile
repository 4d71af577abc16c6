# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP_RUN := $(VENV)/.installed-run
STAMP_DEV := $(VENV)/.installed-dev

.PHONY: run test lint bench clean chaos-tools fuse-tools browser-tools

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP_RUN): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(STAMP_DEV): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(STAMP_RUN)

run: $(STAMP_RUN)
	$(BIN)/raftex up --nodes 3 --data-dir data --demo-market

# The chaos suite's namespace plane drops packets with iptables: as root, install it if missing
# (without it, packet loss falls back to the nodes' own hooks).
chaos-tools:
	@if [ "$$(id -u)" = 0 ] && ! command -v iptables >/dev/null && command -v apt-get >/dev/null; then \
		(apt-get update -qq && apt-get install -y -qq iptables) >/dev/null 2>&1 \
		|| echo "iptables not installed: packet loss runs through the nodes' hooks"; \
	fi

# The power and disk nemeses mount a FUSE file system per node: Debian's fuse3 (libfuse3 and
# fusermount3), installed as root when missing (those runs are skipped where it cannot be had).
fuse-tools:
	@if [ "$$(id -u)" = 0 ] && ! command -v fusermount3 >/dev/null && command -v apt-get >/dev/null; then \
		(apt-get update -qq && apt-get install -y -qq fuse3) >/dev/null 2>&1 \
		|| echo "fuse3 not installed: the power and disk nemeses are skipped"; \
	fi

# The UI test drives a real headless Chromium: Debian's chromium and chromium-driver, installed
# as root when missing (the test is skipped where they cannot be had).
browser-tools:
	@if [ "$$(id -u)" = 0 ] && ! command -v chromedriver >/dev/null && command -v apt-get >/dev/null; then \
		(apt-get update -qq && apt-get install -y -qq chromium chromium-driver) >/dev/null 2>&1 \
		|| echo "chromium not installed: the browser UI test is skipped"; \
	fi

test: $(STAMP_DEV) chaos-tools fuse-tools browser-tools
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

bench: $(STAMP_RUN)
	$(BIN)/raftex bench engine --json

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
