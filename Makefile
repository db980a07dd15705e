# Keyward: `make run` and `make test` are all a newcomer needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
HOST ?= 127.0.0.1
PORT ?= 8000
EMULATOR_PORT ?= 8765

.PHONY: run test test-browser setup lint bench bench-admin clean worker beat emulator

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	@$(PY) scripts/run_dev.py --host $(HOST) --port $(PORT) --emulator-port $(EMULATOR_PORT)

test: $(STAMP)
	@bash scripts/test.sh $(ARGS)

# The browser suite (Playwright + Debian's chromium, live server on PostgreSQL); not part of `make test`.
test-browser: $(STAMP)
	@bash scripts/test_browser.sh $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache --no-logo

# Every script in bench/, then one table: each speed figure, its goal, met or missed (ARGS="--full" for the goals' sizes).
bench: $(STAMP)
	@$(PY) scripts/bench_summary.py $(ARGS)

# The admin changelists at scale on PostgreSQL: `make bench-admin ARGS="--rows-scale 10"` for 1,000,000 rows.
bench-admin: $(STAMP)
	$(PY) bench/admin_bench.py $(ARGS)

worker: $(STAMP)
	$(VENV)/bin/celery -A project worker --loglevel INFO --concurrency 2

beat: $(STAMP)
	$(VENV)/bin/celery -A project beat --loglevel INFO --schedule var/celerybeat-schedule

emulator: $(STAMP)
	$(PY) manage.py run_emulator --port $(EMULATOR_PORT)

clean:
	rm -rf var .pytest_cache test-artifacts
