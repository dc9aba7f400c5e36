# Set-up is part of every target: the first `make serve` or `make test` on a
# fresh machine creates .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev
PORT ?= 9000

.PHONY: serve client test trial twisted-suite lint apidocs format bench bench-levers bench-limits clean matrix

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The editable install copies the plugin file into site-packages (hatchling's
# force-include), so a changed plugin file needs a reinstall too.
$(RUN_STAMP): pyproject.toml twisted/plugins/tcplife_plugins.py | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(DEV_STAMP): pyproject.toml twisted/plugins/tcplife_plugins.py | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,lint,bench,docs]'
	touch $@ $(RUN_STAMP)

serve: $(RUN_STAMP)
	$(BIN)/twist tcpecho --port $(PORT)

# One echo through `make serve`'s server; the log goes to stderr, the echo to stdout.
client: $(RUN_STAMP)
	$(BIN)/twist --log-file=+ tcpclient --port $(PORT) --message hello

test: $(DEV_STAMP)
	$(BIN)/python -m pytest

# The same suite under Twisted's own runner, on the default reactor and on
# tcplife's direct-dispatch reactor.
trial: $(DEV_STAMP)
	$(BIN)/python -m twisted.trial tests
	$(BIN)/python -m twisted.trial --reactor tcplife-direct tests

# Twisted's own reactor and transport tests (twisted.internet.test.test_tcp,
# test_tls, test_unix, test_fdset, test_socket; twisted.test.test_tcp,
# test_ssl) on the stock epoll reactor, on tcplife-direct, and on both of
# these listening through tcplife's ports, compared (under a minute).
# Expected deviations, each with its reason: tests/twistedsuite/deviations.txt.
twisted-suite: $(DEV_STAMP)
	$(BIN)/python -m tests.twistedsuite

# --- Version matrix -------------------------------------------------------
# The suite (python -m pytest) on the oldest Python the classifiers name, with
# every dependency and test dependency at its pyproject.toml floor, then
# Twisted's tests of twisted-suite there; and on the newest Python with the
# newest releases.  Each leg in a new virtualenv under build/matrix/; a leg
# whose Python is not installed (pythonX.Y on PATH or under pyenv) is skipped
# with one line (5 to 8 minutes here with both).
# One leg: make matrix MATRIX_ARGS="--leg lowest"
MATRIX_ARGS ?=
matrix: $(DEV_STAMP)
	$(BIN)/python -m tests.matrix $(MATRIX_ARGS)
# --------------------------------------------------------------------------

lint: $(DEV_STAMP)
	$(BIN)/ruff check src tests twisted
	$(BIN)/ruff format --check src tests twisted
	$(BIN)/mypy
	$(BIN)/lint-imports

# The API reference in build/apidocs (settings: pyproject's [tool.pydoctor]);
# any docstring error or unresolved link fails the build.
apidocs: $(DEV_STAMP)
	rm -rf build/apidocs
	$(BIN)/pydoctor --quiet

format: $(DEV_STAMP)
	$(BIN)/ruff format src tests twisted
	$(BIN)/ruff check --fix src tests twisted

# tcplife against asyncio, uvloop and bare Twisted, then tcpclient against a
# C epoll client and uvloop (about 4 minutes).
# More options: make bench BENCH_ARGS="--json bench.json --chart bench.png"
BENCH_ARGS ?=
bench: $(DEV_STAMP)
	$(BIN)/python -m tcplife.bench $(BENCH_ARGS)

# What each speed lever buys: tcplife against itself with one lever off
# (about 4 minutes).  More options: make bench-levers LEVERS_ARGS="--cases rr --markdown"
LEVERS_ARGS ?=
bench-levers: $(DEV_STAMP)
	$(BIN)/python -m tcplife.bench.levers $(LEVERS_ARGS)

# Server memory against clients that never read (at once, and in rounds),
# and per idle connection.  More options:
# make bench-limits LIMITS_ARGS="--scenarios rounds --rounds 12"
LIMITS_ARGS ?=
bench-limits: $(DEV_STAMP)
	$(BIN)/python -m tcplife.bench.limits $(LIMITS_ARGS)

clean:
	rm -rf $(VENV) dist build .pytest_cache .mypy_cache .ruff_cache _trial_temp* tests.*/
