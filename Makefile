# The README's commands. Every target creates the environment first when it is missing.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin
export RISK_DATA_DIR ?= $(CURDIR)/data
export DAGSTER_HOME ?= $(RISK_DATA_DIR)/dagster_home
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/$(VENV)
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: setup demo drift-demo canary-demo simulate online-rollback online-status chaos test test-fast dev mlflow serve consume bench bench-online bench-pit bench-sdk bench-serving bench-realtime bench-entities bench-entity-read bench-duplicates bench-scale bench-ui-run stop lint format clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet "uv==$(UV_VERSION)"

# Re-sync whenever the lock changes. (The dbt manifest is parsed by assets/features/dbt.py
# whenever a dbt file is newer than it.)
$(VENV)/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen
	touch $@

$(DAGSTER_HOME)/dagster.yaml: resources/dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp resources/dagster.yaml $@

setup: $(VENV)/.synced $(DAGSTER_HOME)/dagster.yaml

demo: setup
	$(BIN)/python -m demo.run

# A season of operation (60 days by default) as the daemon runs it, in its own data folder
# ($(RISK_DATA_DIR)/simulation) whose history ends 60 days before yesterday, with short label
# delays and fraud maturity (stated in its output); see demo/simulate.py. SIM_ARGS: more options
# (--drift-day N, --worse-day N).
SIM_DAYS ?= 60
SIM_ARGS ?=
simulate: setup
	mkdir -p $(RISK_DATA_DIR)/simulation/dagster_home
	cp resources/dagster.yaml $(RISK_DATA_DIR)/simulation/dagster_home/dagster.yaml
	RISK_DATA_DIR=$(RISK_DATA_DIR)/simulation DAGSTER_HOME=$(RISK_DATA_DIR)/simulation/dagster_home \
	RISK_DEMO_END=$$(date -u -d "$(SIM_DAYS) days ago - 1 day" +%F) \
	$(BIN)/python -m demo.simulate --days $(SIM_DAYS) $(SIM_ARGS)

# Drift from the day after the demo's data: the sensor fires, the retrain meets the gate.
drift-demo: setup
	$(BIN)/python -m demo.drift

# A release through shadow -> canary -> full: a worse one halted, a good one promoted.
canary-demo: setup
	$(BIN)/python -m demo.canary

test: setup
	$(BIN)/pytest -m "not benchmark"

test-fast: setup
	$(BIN)/pytest -m "not benchmark and not integration"

# The Dagster UI on 127.0.0.1:$(DAGSTER_PORT) (schedules and sensors on), and the drift reports
# its asset pages link to on $(REPORTS_PORT) (RISK_REPORTS_URL).
DAGSTER_PORT ?= 3000
REPORTS_PORT ?= 3001
export RISK_REPORTS_URL ?= http://127.0.0.1:$(REPORTS_PORT)
dev: setup
	mkdir -p $(RISK_DATA_DIR)/reports
	$(BIN)/python -m http.server $(REPORTS_PORT) --bind 127.0.0.1 --directory $(RISK_DATA_DIR)/reports >/dev/null 2>&1 & \
	trap "kill $$!" EXIT; $(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p $(DAGSTER_PORT)

# The MLflow UI on the local registry (runs, metrics, plots, versions and why each is champion).
MLFLOW_PORT ?= 5000
mlflow: setup
	$(BIN)/mlflow ui --backend-store-uri "$$($(BIN)/python -c 'from riskcore import settings; print(settings.load().tracking_uri())')" \
	  --host 127.0.0.1 --port $(MLFLOW_PORT)

# The scoring service on 127.0.0.1:$(RISK_SERVING_PORT) with the local registry's champions and
# the embedded online store `make demo` filled; dev mode (API key dev-api-key-not-for-production)
# unless RISK_API_KEYS is set.
export RISK_SERVING_PORT ?= 8000
serve: setup
	REDIS_URL="$${REDIS_URL:-$$($(BIN)/python -m resources.local_redis url)}" \
	RISK_SERVING_DEV="$${RISK_SERVING_DEV:-$$([ -z "$$RISK_API_KEYS" ] && echo 1 || echo 0)}" \
	$(BIN)/python -m serving

# The Redis Stream consumer of purchase events (RISK_EVENTS_STREAM, default risk:events) into
# the real-time state of the online store `make serve` reads.
consume: setup
	REDIS_URL="$${REDIS_URL:-$$($(BIN)/python -m resources.local_redis url)}" \
	$(BIN)/python -m serving.event_stream

bench: setup
	$(BIN)/python -m benchmarks.snapshot_partition

bench-online: setup
	$(BIN)/python -m benchmarks.online_store

bench-pit: setup
	$(BIN)/python -m benchmarks.point_in_time

# Feast, the SDK's comparison, in its own virtualenv (its pins clash with ours).
FEAST_VENV := $(TOOLS)/feast
# A stamp, not bin/python: that is a symlink, whose target's old date made every run rebuild it.
$(FEAST_VENV)/.installed: benchmarks/feast_requirements.txt | $(UV)
	$(UV) venv --clear --python $(PYTHON) $(FEAST_VENV)
	$(UV) pip install --python $(FEAST_VENV)/bin/python -r benchmarks/feast_requirements.txt
	touch $@

bench-sdk: setup $(FEAST_VENV)/.installed
	FEAST_PYTHON=$(FEAST_VENV)/bin/python $(BIN)/python -m benchmarks.sdk

bench-serving: setup
	$(BIN)/python -m benchmarks.serving $(SERVING_ARGS)

bench-realtime: setup
	$(BIN)/python -m benchmarks.realtime

# The nightly cycle at scale (builds each N's history once into ~/.cache/risk-feature-store/scale).
# SCALE_ARGS, e.g. --customers 1000000 3000000 10000000
bench-entities: setup
	$(BIN)/python -m benchmarks.entities

bench-entity-read: setup
	$(BIN)/python -m benchmarks.entity_read

# The duplicate-id check against a 30-day window at 10M customers (60M stored ids, built once).
bench-duplicates: setup
	$(BIN)/python -m benchmarks.duplicate_check

bench-scale: setup
	$(BIN)/python -m benchmarks.scale $(SCALE_ARGS)

bench-ui-run: setup
	$(BIN)/python -m benchmarks.ui_run

# An operator's way back when a bad snapshot got through: the previous generation serves again
# (within RISK_ONLINE_ROLLBACK_WINDOW_S of the load), and the bad as_of is not loaded again.
online-rollback: setup
	$(BIN)/python -m demo.online_store rollback --reason "$${REASON:?set REASON=why}"

online-status: setup
	$(BIN)/python -m demo.online_store status

# The fault suite against the service on the demo's data (after `make demo`): demo/chaos.py.
chaos: setup
	$(BIN)/python -m demo.chaos

# The embedded online store (a redis-server in $(RISK_DATA_DIR)/online_store) outlives the
# process that started it, so `make demo`, `make dev` and `make serve` share it: this stops it.
stop: setup
	$(BIN)/python -m resources.local_redis stop

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff check --fix . && $(BIN)/ruff format .

clean:
	-[ -x $(BIN)/python ] && $(BIN)/python -m resources.local_redis stop
	rm -rf $(RISK_DATA_DIR) dbt_project/target dbt_project/logs
