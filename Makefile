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
TEST_PROCESSES ?= 2

.PHONY: demo test bench bench-scale bench-serving bench-pages bench-predictions mutation lint format migrate serve clean

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

# Most tests run side by side, one process per core; those with a worker process, a browser or
# timing in them run alone afterwards.
ALONE := browser or worker or serial
test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_PROCESSES) -m "not ($(ALONE))"
	$(BIN)/python -m pytest -p no:xdist -m "$(ALONE)"

bench: $(STAMP)
	$(BIN)/python -m bench

# PostgreSQL and Redis at scale (see bench/scale.py): SCALE_CASES=sync,copy for a quick profile.
bench-scale: $(STAMP)
	ORDERS=$(ORDERS) WORKERS=$(WORKERS) $(BIN)/python -m bench.scale

# The production web server under signed webhooks, driven by wrk (Debian's package); see bench/serving.py.
bench-serving: $(STAMP)
	$(BIN)/python -m bench.serving

# Page latencies at a million orders on the production server (PAGES_ORDERS=...); see bench/pages.py.
bench-pages: $(STAMP)
	$(BIN)/python -m bench.pages

# Predicted delivery on the demo's history (PREDICTION_ORDERS=1500): the backtest against its targets.
bench-predictions: $(STAMP)
	$(BIN)/python -m bench.predictions

# Mutation testing of the functions that guard money and trust (not part of `make test` or CI; about
# an hour on two shared cores). Needs a PostgreSQL DATABASE_URL; the sources, tests and settings are in
# [tool.mutmut] of pyproject.toml, the functions below. MUTANTS="apps.billing.*" runs a subset.
MUTANTS ?= \
	'apps.partners.credentials.x_webhook_secrets_accepted*' 'apps.partners.credentials.x_rotation_grace*' \
	'apps.partners.scopes.*' \
	'apps.timeline.scopes.x_judge*' 'apps.timeline.scopes.x__judge_subjects*' 'apps.timeline.scopes.x__own_*' \
	'apps.timeline.scopes.x__released_to*' 'apps.timeline.scopes.x__carried*' 'apps.timeline.scopes.x__orders_of*' \
	'apps.timeline.scopes.x__hours*' 'apps.timeline.scopes.x_future_margin*' \
	'apps.billing.services.x_evaluate_invoice_rules*' 'apps.billing.services.x_invoice_trigger*' 'apps.billing.services.x__invoice_events*' \
	'apps.billing.services.x__hold_reasons*' 'apps.billing.services.x__complete*' \
	'apps.billing.services.x__shipped*' 'apps.billing.services.x__ready_at*' \
	'apps.exceptions.services.x_detect*' 'apps.exceptions.services.x__open_*' \
	'apps.exceptions.services.x__close_cleared_*' 'apps.exceptions.services.x__resolve_automatically*' \
	'apps.outbound.services.x__request_*' 'apps.outbound.services.x__retry_after*' \
	'apps.outbound.services.x_backoff*' 'apps.outbound.services.x_breaker_admit*' \
	'apps.outbound.services.x_breaker_failed*' 'apps.outbound.services.x__cooldown*' \
	'apps.outbound.services.x__probe_stale*'

mutation: $(STAMP)
	@test -n "$$DATABASE_URL" || { echo "set DATABASE_URL to a PostgreSQL database"; exit 1; }
	rm -rf mutants
	nice -n 10 $(BIN)/mutmut run --max-children 1 $(MUTANTS)
	$(BIN)/mutmut results --all true | $(BIN)/python mutation/score.py $(MUTANTS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) var/*.sqlite3 staticfiles
