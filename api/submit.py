"""Accepting a task: validate, guard, record durably in Kafka, then make it visible in Redis."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from datetime import timedelta

import orjson

from api.errors import status_of
from api.inputs.claim import Prepared
from api.metrics import REFUSED, SUBMIT_SECONDS, count_submitted
from api.services import Services
from mcp.applied import Queued
from mcp.errors import (
    AutoGLMError,
    BrokerUnavailable,
    IdempotencyConflict,
    PayloadTooLarge,
    QuotaExceeded,
    RecordRefused,
)
from mcp.kafka import ensure_topics
from mcp.names import TaskIds, lane_partition
from mcp.records import Record, content_type_for, record
from mcp.telemetry import tracing
from mcp.webhooks.ssrf import check_callback_url
from schemas import (
    AsyncTask,
    Idempotency,
    SubmitRequest,
    SubmitResponse,
    TaskEvent,
    TaskLinks,
    TaskStatus,
    TraceContext,
    utcnow,
)

TOPIC_RETRY_S = 2.0
Answers = list[tuple[int, SubmitResponse | AutoGLMError]]
Seal = Callable[[Answers], list[Record]]


_ANSWER = SubmitResponse.__pydantic_validator__


def accepted(task: AsyncTask) -> SubmitResponse:
    # The hottest answer: pydantic's validator builds it from a dict in 1.4 us, where
    # `model_construct` (Python, two models) took 3.4 us.
    base = f"/v1/tasks/{task.task_id}"
    answer: SubmitResponse = _ANSWER.validate_python(
        {
            "task_id": task.task_id,
            "status": TaskStatus.QUEUED,
            "created_at": task.created_at,
            "links": {"self": base, "cancel": f"{base}/cancel", "stream": f"{base}/stream"},
        }
    )
    return answer


def fingerprint(body: SubmitRequest, files: dict[str, bytes] | None = None) -> str:
    data = body.model_dump(mode="json")
    if files:  # raw file parts count as the payload fields they stand for
        data["files"] = {name: hashlib.sha256(raw).hexdigest() for name, raw in files.items()}
    canonical = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


def task_records(services: Services, task: AsyncTask) -> tuple[list[Record], Queued]:
    """The task for its model's topic and its `queued` event: one transaction, both or neither."""
    key = task.task_id.encode()
    headers: tuple[tuple[str, bytes], ...] = (("schema", b"AsyncTask/1"),)
    if task.trace.traceparent:
        headers += (("traceparent", task.trace.traceparent.encode()),)
    event = TaskEvent.of(task, TaskStatus.QUEUED, at=task.created_at, task=task)
    lane = services.topics.tasks(task.model, task.priority)
    count = services.partitions.get(lane)
    partition = lane_partition(task.project, count) if count else -1
    wire = content_type_for(services.settings.kafka.encoding)
    queued = Queued(event, record(services.topics.events, key, event, wire))
    return [record(lane, key, task, wire, headers, partition), queued.record], queued


class Submitter:
    def __init__(self, services: Services) -> None:
        self.services = services
        # The claim check's files of tasks prepared but not yet published, by task id.
        self._inputs: dict[str, Prepared] = {}
        # Their Kafka records and `queued` event, encoded once (for the size check) and kept.
        self._records: dict[str, tuple[list[Record], Queued]] = {}
        self.metrics = services.settings.telemetry.metrics
        self._topics_checked_at = 0.0
        self._ids = TaskIds(services.settings)

    def check_body_size(self, project: str, size: int) -> None:
        limit = self.services.settings.quotas.of(project).max_body_bytes
        if limit is not None and size > limit:
            raise PayloadTooLarge(
                f"the body is larger than {limit} bytes", {"max_bytes": limit, "project": project}
            )

    async def submit(
        self,
        body: SubmitRequest,
        project: str,
        idempotency_key: str | None = None,
        traceparent: str | None = None,
        files: dict[str, bytes] | None = None,
    ) -> tuple[int, SubmitResponse]:
        """(HTTP status, answer): 202 for a new task, 200 for an idempotent repeat. `files` are
        raw bytes for payload fields (multipart file parts, Protobuf `files`)."""
        started = time.perf_counter()
        try:
            if not tracing.enabled():
                return await self._submit(
                    body, project, idempotency_key, traceparent, files or {}, started
                )
            return await self._traced(
                body, project, idempotency_key, traceparent, files or {}, started
            )
        except AutoGLMError as exc:
            if self.metrics:
                REFUSED.labels(exc.code).inc()
            raise

    async def _traced(
        self,
        body: SubmitRequest,
        project: str,
        idempotency_key: str | None,
        traceparent: str | None,
        files: dict[str, bytes],
        started: float,
    ) -> tuple[int, SubmitResponse]:
        """`_submit` inside a span for the submission and one for its Kafka produce; the task
        carries the produce span's context, so the worker's span is its child."""
        topic = self.services.topics.tasks(body.model, body.priority or "normal")
        attributes = {"autoglm.model": body.model, "autoglm.action": body.action}
        with tracing.span("submit", traceparent, "SERVER", attributes) as submit:
            produce_attributes = tracing.kafka("send", topic)
            with tracing.span(
                f"send {topic}", tracing.traceparent_of(submit), "PRODUCER", produce_attributes
            ) as produce:
                status, answer = await self._submit(
                    body,
                    project,
                    idempotency_key,
                    tracing.traceparent_of(produce),
                    files,
                    started,
                )
                if submit is not None:
                    submit.set_attribute("autoglm.task_id", answer.task_id)
                    submit.set_attribute("http.response.status_code", status)
                return status, answer

    async def _submit(
        self,
        body: SubmitRequest,
        project: str,
        idempotency_key: str | None,
        traceparent: str | None,
        files: dict[str, bytes],
        started: float,
    ) -> tuple[int, SubmitResponse]:
        prepared = await self.prepare(body, project, idempotency_key, traceparent, files)
        if isinstance(prepared, SubmitResponse):
            return 200, prepared
        records, queued = self._records.pop(prepared.task_id)
        await self._publish(records, [queued], project, [idempotency_key])
        if self.metrics:
            SUBMIT_SECONDS.observe(time.perf_counter() - started)
        return 202, accepted(prepared)

    async def prepare(
        self,
        body: SubmitRequest,
        project: str,
        idempotency_key: str | None,
        traceparent: str | None = None,
        files: dict[str, bytes] | None = None,
    ) -> AsyncTask | SubmitResponse:
        """Everything before the commit: guards, the task, its inputs in the blob store (claim
        check), its idempotency record, its place in the quota. The earlier task's answer when
        the key was used before with the same body."""
        services = self.services
        services.limiter.check(project)
        spec = services.registry.resolve(body.model, body.action)
        services.registry.validate_payload(spec, body.action, body.payload)
        if body.callback_url is not None:
            await asyncio.to_thread(check_callback_url, str(body.callback_url), services.settings)
        await self.ensure_topics()
        # Large inputs are in the blob store before the Kafka commit; they are discarded when
        # the task is surely not recorded (see `_publish`).
        task_id = self._ids.new(services.partitions.get(services.topics.events))
        inputs = await services.claim.prepare(body, project, task_id, files or {})
        try:
            claim = None
            if idempotency_key:
                ttl = timedelta(seconds=services.settings.redis.idempotency_ttl_s)
                claim = Idempotency(
                    key=idempotency_key,
                    fingerprint=fingerprint(body, files),
                    expires_at=utcnow() + ttl,
                )
            task = AsyncTask.of(
                body,
                project,
                TraceContext(traceparent=traceparent),
                idempotency=claim,
                priority=body.priority or services.settings.quotas.of(project).default_priority,
                task_id=inputs.task_id,
                payload=inputs.payload,
                payload_file=inputs.payload_file,
            )
            records, queued = task_records(services, task)
            # Before the group commit and before anything is remembered: a record Kafka would
            # refuse must not cost the requests that share its transaction.
            services.producer.limits.check(records)
            if claim is not None:
                repeat = await self._repeat(project, claim, task.task_id)
                if repeat is not None:
                    await services.claim.discard(project, inputs)
                    return repeat
            await self._reserve(project, task.task_id, idempotency_key)
        except BaseException:
            await services.claim.discard(project, inputs)
            raise
        self._inputs[task.task_id] = inputs
        self._records[task.task_id] = (records, queued)
        return task

    async def _publish(
        self,
        records: list[Record],
        queued: list[Queued],
        project: str,
        keys: list[str | None],
    ) -> None:
        """One committed transaction for all `records`; on failure no key stays remembered and
        no task keeps its place in the project's quota. The after-commit hook gets `queued`."""
        events = [q.event for q in queued]
        inputs = [self._inputs.pop(event.task_id, None) for event in events]
        try:
            await self.services.producer.publish(records, note=queued)
        except (BrokerUnavailable, RecordRefused):
            # Surely not recorded: their files go too. A publish interrupted otherwise may still
            # commit; its files stay and expire with the task's retention.
            for made in inputs:
                if made is not None:
                    await self.services.claim.discard(project, made)
            for event in events:
                await self.services.active.release(project, event.task_id)
            for key in keys:
                if key:
                    await self.services.store.forget_idempotency(project, key)
            raise
        if self.metrics:
            for event in events:
                count_submitted(event.model, event.action)

    async def submit_many(
        self,
        bodies: list[tuple[SubmitRequest | AutoGLMError, str | None]],
        project: str,
        seal: Seal | None = None,
    ) -> Answers:
        """Per item (status, answer or refusal); the new tasks of all items share one committed
        transaction, so either all of them are recorded or, with a 503, none. `seal` adds
        records made from the answers (a batch's manifest) to that transaction."""
        answers: Answers = []
        fresh: list[tuple[AsyncTask, str | None]] = []
        for body, key in bodies:
            try:
                if isinstance(body, AutoGLMError):
                    raise body
                prepared = await self.prepare(body, project, key)
            except AutoGLMError as exc:
                REFUSED.labels(exc.code).inc()
                answers.append((status_of(exc), exc))
                continue
            if isinstance(prepared, SubmitResponse):
                answers.append((200, prepared))
            else:
                fresh.append((prepared, key))
                answers.append((202, accepted(prepared)))
        records: list[Record] = []
        queued: list[Queued] = []
        for task, _ in fresh:
            task_recs, one = self._records.pop(task.task_id)
            records.extend(task_recs)
            queued.append(one)
        if seal is not None:
            records.extend(seal(answers))
        if records:
            await self._publish(records, queued, project, [key for _, key in fresh])
        return answers

    async def _reserve(self, project: str, task_id: str, idempotency_key: str | None) -> None:
        """A place among the project's `max_active` queued and running tasks, or 429."""
        limit = self.services.settings.quotas.of(project).max_active
        if limit <= 0 or await self.services.active.reserve(project, task_id, limit):
            return
        if idempotency_key:
            await self.services.store.forget_idempotency(project, idempotency_key)
        raise QuotaExceeded(
            f"project {project!r} has {limit} queued and running tasks, its quota",
            retry_after_s=1.0,
            details={"max_active": limit, "project": project},
        )

    async def _repeat(
        self, project: str, claim: Idempotency, task_id: str
    ) -> SubmitResponse | None:
        key, fp = claim.key, claim.fingerprint
        existing = await self.services.store.remember_idempotency(project, key, fp, task_id)
        if existing is None:
            return None
        old_fp, old_task_id = existing
        if old_fp != fp:
            raise IdempotencyConflict(
                "this Idempotency-Key was used with a different body",
                {"idempotency_key": key, "task_id": old_task_id},
            )
        view = await self.services.store.view(old_task_id)
        return SubmitResponse(
            task_id=old_task_id,
            status=view.status if view else TaskStatus.QUEUED,
            created_at=view.created_at if view else utcnow(),
            links=TaskLinks.for_task(old_task_id),
        )

    async def ensure_topics(self) -> None:
        services = self.services
        if services.topics_ready:
            return
        now = time.monotonic()
        if now - self._topics_checked_at < TOPIC_RETRY_S:
            raise BrokerUnavailable("Kafka is not reachable")
        self._topics_checked_at = now
        try:
            counts = await asyncio.to_thread(ensure_topics, services.settings, None, 5.0)
        except Exception as exc:
            raise BrokerUnavailable(f"Kafka is not reachable: {exc}") from exc
        services.partitions = counts
        await asyncio.to_thread(services.learn_record_limits)
        services.topics_ready = True
