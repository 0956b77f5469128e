"""Operating the platform: every process's /metrics after a few tasks, the series the Grafana
dashboard and the KEDA ScaledObject use, and the queue depth while workers are away."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from mcp.names import Topics
from tests.harness import ROOT, Platform, free_port, submit, submit_echo, wait_for, wait_statuses
from tests.mcp.webhooks.conftest import Receiver

pytestmark = pytest.mark.integration

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
Samples = dict[str, list[tuple[dict[str, str], float]]]


def scrape(url: str) -> Samples:
    """Every sample of a /metrics page by sample name (families by name too, even empty)."""
    text = httpx.get(url, timeout=10).text
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        samples.setdefault(family.name, [])
        if family.type == "counter":
            samples.setdefault(f"{family.name}_total", [])
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def total(samples: Samples, name: str, **labels: str) -> float:
    return sum(
        v for ls, v in samples.get(name, []) if all(ls.get(k) == x for k, x in labels.items())
    )


def referenced() -> set[str]:
    """Metric names the dashboard and the ScaledObject query."""
    dashboard = json.loads((ROOT / "deploy/grafana/autoglm.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    for doc in yaml.safe_load_all((ROOT / "deploy/k8s/keda.yaml").read_text()):
        exprs += [t["metadata"].get("query", "") for t in doc["spec"]["triggers"]]
    exprs.append((ROOT / "deploy/helm/autoglm-mcp/templates/keda.yaml").read_text())
    return {name for expr in exprs for name in re.findall(r"autoglm_[a-z0-9_]+", expr)}


def gpu_present() -> bool:
    try:
        import pynvml

        pynvml.nvmlInit()
        return bool(pynvml.nvmlDeviceGetCount())
    except Exception:
        return False


def test_every_process_answers_metrics_with_its_series(platform: Platform) -> None:
    ports = {name: free_port() for name in ("worker", "dispatcher", "projector")}
    platform = platform.variant(server={"run_projector": False})  # the standalone one projects
    platform.api()
    platform.worker("echo", "0", "--metrics-port", str(ports["worker"]))
    platform._proc("dispatcher", ["dispatcher", "--metrics-port", str(ports["dispatcher"])])
    platform._proc("projector", ["projector", "--metrics-port", str(ports["projector"])])
    receiver = Receiver()
    try:
        with platform.client() as client:
            body = {"model": "echo", "action": "generate", "callback_url": receiver.url("/hook")}
            ids = [
                submit(client, {**body, "payload": {"n": i}}, traceparent=TRACEPARENT).json()[
                    "task_id"
                ]
                for i in range(5)
            ]
            wait_statuses(client, ids, {"succeeded"}, timeout=60)
            wait_for(lambda: len(receiver.on("/hook")) >= 5, 60, "five webhooks")
            # Tracing is off: the submitter's own trace context reaches the receiver untouched.
            assert {r.headers.get("traceparent") for r in receiver.on("/hook")} == {TRACEPARENT}
            api = scrape(f"{platform.url}/metrics")
    finally:
        receiver.close()
    url = "http://127.0.0.1:{}/metrics"
    worker = scrape(url.format(ports["worker"]))
    # The worker and the projector count what they committed; wait for the last commit.
    wait_for(
        lambda: (
            total(scrape(url.format(ports["projector"])), "autoglm_projector_events_total") >= 10
        ),
        30,
        "projected events",
    )
    dispatcher = scrape(url.format(ports["dispatcher"]))
    projector = scrape(url.format(ports["projector"]))

    assert total(worker, "autoglm_worker_tasks_total", model="echo", outcome="succeeded") == 5
    for name in ("queue_wait", "run", "end_to_end"):
        assert total(worker, f"autoglm_worker_{name}_seconds_count", model="echo") == 5, name
    assert total(worker, "autoglm_worker_batch_size_sum", model="echo") >= 5
    assert total(worker, "autoglm_worker_transaction_commit_seconds_count") >= 1
    assert total(worker, "autoglm_worker_result_write_seconds_count", model="echo") >= 1
    lanes = {ls["topic"] for ls, _ in worker["autoglm_worker_consumer_lag"]}
    assert lanes == set(Topics.of(platform.settings).lanes("echo"))
    assert "autoglm_worker_tokens_generated_total" in worker
    assert ("autoglm_gpu_utilization_ratio" in worker) == gpu_present()

    delivered = total(
        dispatcher, "autoglm_webhook_deliveries_total", outcome="delivered", status_class="2xx"
    )
    assert delivered == 5
    assert total(dispatcher, "autoglm_webhook_delivery_seconds_count") == 5
    assert total(dispatcher, "autoglm_webhook_dead") == 0
    for name in ("scheduled", "due", "in_flight"):
        assert f"autoglm_webhook_{name}" in dispatcher

    assert total(projector, "autoglm_projector_events_total", status="succeeded") >= 5
    assert "autoglm_projector_consumer_lag" in projector

    posts = total(
        api,
        "autoglm_http_request_duration_seconds_count",
        route="/v1/tasks",
        method="POST",
        status="202",
    )
    assert posts == 5, api.get("autoglm_http_request_duration_seconds_count")
    assert total(api, "autoglm_http_request_duration_seconds_count", route="/v1/tasks/{task_id}")
    # Where a submission's time goes before its 202: the Kafka commit, then the `queued` write.
    assert total(api, "autoglm_group_commit_seconds_count") >= 1
    assert total(api, "autoglm_after_commit_seconds_count") >= 1
    # The dispatcher's journal commits through the same group commit.
    assert total(dispatcher, "autoglm_group_commit_seconds_count") >= 1

    # Each process settled its heap once started (`mcp.heap`): its collector's pauses are watched.
    processes = {"api": api, "worker": worker, "dispatcher": dispatcher, "projector": projector}
    for name, samples in processes.items():
        assert "autoglm_gc_pause_seconds_count" in samples, name

    exported = set(api) | set(worker) | set(dispatcher) | set(projector)
    missing = {n for n in referenced() if n not in exported}
    if not gpu_present():
        missing = {n for n in missing if not n.startswith("autoglm_gpu_")}
    assert not missing, f"the dashboard or the ScaledObject use series nobody exports: {missing}"


def test_sigusr1_writes_every_threads_stack_to_the_log_and_the_process_goes_on(
    platform: Platform,
) -> None:
    procs = {
        "api": platform.api(),
        "worker": platform.worker("echo", "0"),
        "dispatcher": platform._proc("dispatcher", ["dispatcher"]),
    }
    wait_for(lambda: "dispatcher" in procs["dispatcher"].log(), 60, "the dispatcher to log")
    for name, proc in procs.items():
        assert proc.popen is not None
        proc.popen.send_signal(signal.SIGUSR1)
        wait_for(lambda p=proc: "Current thread" in p.log(), 30, f"{name}'s stack dump")
        dump = proc.log()
        assert dump.count("Thread 0x") >= 2, dump[-3000:]  # all threads, not only the main one
        assert 'File "' in dump
    with platform.client() as client:  # each goes on serving
        task_ids = submit_echo(client, 3)
        wait_statuses(client, task_ids, {"succeeded"}, timeout=60)
    assert all(proc.alive for proc in procs.values())


def test_queue_lag_grows_while_workers_are_away_and_drains_after(platform: Platform) -> None:
    platform.api()
    with platform.client() as client:
        ids = submit_echo(client, 40)
        echo = queue_of(client, "echo")
        assert echo["backlog"] == 40
        assert echo["lag"] >= 40
        assert echo["oldest_queued_age_s"] is not None
        ids += submit_echo(client, 20)
        assert queue_of(client, "echo")["lag"] >= 60
        platform.worker("echo")
        wait_statuses(client, ids, {"succeeded"}, timeout=90)
        # A drained partition still counts the commit marker of the API's last transaction.
        partitions = 3 * platform.settings.kafka.partitions
        wait_for(lambda: queue_of(client, "echo")["lag"] <= partitions, 30, "lag drained")
        echo = queue_of(client, "echo")
        assert echo["backlog"] == 0
        assert echo["completed_last_minute"] == 60
        assert echo["queue_wait_p50_s"] is not None
        assert echo["queue_wait_p95_s"] >= echo["queue_wait_p50_s"]


def queue_of(client: httpx.Client, model: str) -> dict[str, object]:
    response = client.get("/v1/queues")
    assert response.status_code == 200, response.text
    return next(q for q in response.json()["queues"] if q["model"] == model)


def test_the_scaled_object_scales_on_lag_and_gpu_utilisation() -> None:
    """Offline: the ScaledObject's shape, its group name and thresholds."""
    (doc,) = yaml.safe_load_all(Path(ROOT / "deploy/k8s/keda.yaml").read_text())
    assert doc["kind"] == "ScaledObject"
    spec = doc["spec"]
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (4, 16)
    kinds = {t["type"]: t["metadata"] for t in spec["triggers"]}
    assert kinds["kafka"]["consumerGroup"] == Topics(prefix="").group("worker.glm-4-9b-chat")
    assert "topic" not in kinds["kafka"]  # all three lanes
    assert float(kinds["prometheus"]["threshold"]) == 0.75
    assert "autoglm_gpu_utilization_ratio" in kinds["prometheus"]["query"]
