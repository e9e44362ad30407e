# Control Tower: `make demo` serves a seeded demo, `make test` runs the whole suite.
# Both set everything up on a fresh machine with Python 3.11+ (a .venv in this folder).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
DEMO_USER ?= demo
DEMO_PASSWORD ?= control-tower-demo
DEMO_RATE ?= 1
ORDERS ?= 20000
WORKERS ?= 2

.PHONY: demo test bench bench-scale lint format migrate serve clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: export DEBUG ?= 1
demo: $(STAMP)
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py seed_demo --user $(DEMO_USER) --password $(DEMO_PASSWORD)
	@echo ""
	@echo "  Control Tower is starting at http://$(HOST):$(PORT)/"
	@echo "  Sign in as $(DEMO_USER) / $(DEMO_PASSWORD)   (admin: http://$(HOST):$(PORT)/admin/)"
	@echo "  Partner feeds are simulated in the background (X12, EDIFACT, CSV, webhooks, API)."
	@echo ""
	@trap 'kill 0' EXIT INT TERM; \
	$(BIN)/python manage.py runserver --noreload $(HOST):$(PORT) & \
	sleep 4; $(BIN)/python manage.py simulate --rate $(DEMO_RATE) --orders-per-batch 4 \
		--base-url http://$(HOST):$(PORT) > var/simulate.log 2>&1 & \
	wait

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python -m bench

# PostgreSQL and Redis at scale (see bench/scale.py): SCALE_CASES=sync,copy for a quick profile.
bench-scale: $(STAMP)
	ORDERS=$(ORDERS) WORKERS=$(WORKERS) $(BIN)/python -m bench.scale

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) var/*.sqlite3 staticfiles
