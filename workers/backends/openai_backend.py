"""A model served elsewhere behind an OpenAI-compatible API (vLLM, SGLang: how AutoGLM-Phone runs).

The server batches on its own, so the tasks of a batch go out as concurrent requests
(`embed` as one request), each reported as soon as its answer is complete. Connection
failures, 429 and 5xx are retried with back-off until the first token arrives; after that a
failure fails the task, since its tokens were streamed.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any, TypeVar

import httpx
import orjson

from mcp.errors import BackendError, InvalidPayload, ModelLoadError, UnknownAction
from mcp.settings import ModelSpec, Settings
from schemas.payloads import PAYLOADS
from workers.backends.base import Backend, Report, Result, ResultOrError, TaskContext
from workers.backends.isolation import as_task_error, run_isolated, stopped_early
from workers.backends.sampling import sampling_key
from workers.phone import build_phone_messages, parse_phone_answer

T = TypeVar("T")

MAX_ATTEMPTS = 4
BACKOFF_BASE_S = 0.2
BACKOFF_MAX_S = 5.0
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 120.0
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
RETRYABLE_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError)


class UpstreamError(BackendError):
    """The OpenAI-compatible server refused or failed the request."""

    code = "upstream_error"


class UpstreamRefused(UpstreamError):
    """The server answered 4xx: the same request is refused on every attempt."""

    permanent = True


class _Retryable(UpstreamError):
    """A failure worth another try (connection, 429, 5xx) before the first token."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


def openai_image_part(data: str) -> dict[str, Any]:
    url = data if data.startswith("data:") else f"data:image/png;base64,{data}"
    return {"type": "image_url", "image_url": {"url": url}}


class OpenAIBackend(Backend):
    concurrency = 8  # the server batches on its own: slow requests hold up no other

    def __init__(self, spec: ModelSpec, settings: Settings) -> None:
        super().__init__(spec)
        self.settings = settings
        self.model_name = spec.served_model_name or spec.name
        self._client: httpx.Client | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._token_lock = threading.Lock()

    def load(self) -> None:
        if not self.spec.url:
            raise ModelLoadError(f"model {self.spec.name!r}: the openai backend needs a url")
        headers = {"Authorization": f"Bearer {self.spec.api_key}"} if self.spec.api_key else {}
        slots = self.spec.concurrency or self.concurrency
        workers = max(1, min(self.spec.max_batch_size * slots, 256))
        self._client = httpx.Client(
            base_url=self.spec.url.rstrip("/"),
            headers=headers,
            limits=httpx.Limits(max_connections=workers, max_keepalive_connections=workers),
        )
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix=f"openai-{self.spec.name}")

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        if self._client is not None:
            self._client.close()

    def batch_key(self, action: str, payload: dict[str, Any]) -> Hashable:
        if action in ("generate", "phone_step"):
            return sampling_key(action, payload)
        return (action,)

    def run_batch(self, action: str, batch: list[TaskContext]) -> list[ResultOrError]:
        results: list[ResultOrError] = [BackendError("task produced no result")] * len(batch)

        def keep(index: int, result: ResultOrError) -> None:
            results[index] = result

        self.run_streaming(action, batch, keep)
        return results

    def run_streaming(self, action: str, batch: list[TaskContext], report: Report) -> None:
        """Each member is its own request: it is reported when its answer is complete."""
        if action == "embed":
            for index, result in enumerate(run_isolated(self._embed, batch)):
                report(index, result)
            return
        one: dict[str, Callable[[TaskContext], Result]] = {
            "generate": self._generate,
            "phone_step": self._phone_step,
        }
        runner = one.get(action)
        if runner is None:
            error = UnknownAction(f"the openai backend does not offer {action!r}")
            for index in range(len(batch)):
                report(index, as_task_error(error))
            return
        if self._pool is None:
            raise BackendError(f"model {self.spec.name!r} is not loaded; call load() first")
        futures = {self._pool.submit(runner, ctx): index for index, ctx in enumerate(batch)}
        for future in as_completed(futures):
            try:
                report(futures[future], future.result())
            except Exception as exc:
                report(futures[future], as_task_error(exc))

    # ------------------------------------------------------------ actions

    def _generate(self, ctx: TaskContext) -> Result:
        payload = _validated("generate", ctx)
        body: dict[str, Any] = {
            "model": self.model_name,
            "max_tokens": payload.max_tokens,
            "temperature": payload.temperature,
            "top_p": payload.top_p,
        }
        if payload.stop:
            body["stop"] = list(payload.stop)
        if payload.seed is not None:
            body["seed"] = payload.seed
        if payload.messages is not None:
            body["messages"] = [m.model_dump() for m in payload.messages]
            path = "/chat/completions"
        else:
            body["prompt"] = payload.prompt
            path = "/completions"
        return self._complete(ctx, path, body, stream=payload.stream)

    def _phone_step(self, ctx: TaskContext) -> Result:
        payload = _validated("phone_step", ctx)
        body = {
            "model": self.model_name,
            "messages": build_phone_messages(payload.model_dump(), openai_image_part),
            "max_tokens": payload.max_tokens,
            "temperature": payload.temperature,
        }
        answer = self._complete(ctx, "/chat/completions", body, stream=True)
        return {**parse_phone_answer(answer["text"]), "usage": answer["usage"]}

    def _embed(self, batch: list[TaskContext]) -> list[ResultOrError]:
        payloads = [_validated("embed", ctx) for ctx in batch]
        groups = [[p.input] if isinstance(p.input, str) else list(p.input) for p in payloads]
        flat = [text for group in groups for text in group]
        reply = self._post_json(batch[0], "/embeddings", {"model": self.model_name, "input": flat})
        data = sorted(reply.get("data") or [], key=lambda item: int(item.get("index", 0)))
        if len(data) != len(flat):
            raise UpstreamError(f"server returned {len(data)} embeddings for {len(flat)} inputs")
        vectors = [_normalised(item["embedding"]) for item in data]
        outcomes: list[ResultOrError] = []
        cursor = 0
        for group in groups:
            mine = vectors[cursor : cursor + len(group)]
            cursor += len(group)
            outcomes.append(
                {"embeddings": mine, "dim": len(mine[0]), "usage": reply.get("usage", {})}
            )
        return outcomes

    # ------------------------------------------------------------ HTTP

    def _complete(self, ctx: TaskContext, path: str, body: dict[str, Any], stream: bool) -> Result:
        if not (stream and ctx.on_token is not None):
            reply = self._post_json(ctx, path, body)
            choice = (reply.get("choices") or [{}])[0]
            text = (choice.get("message") or {}).get("content") or choice.get("text") or ""
            return _completion(text, choice.get("finish_reason"), reply.get("usage"))
        body = {**body, "stream": True, "stream_options": {"include_usage": True}}
        pieces: list[str] = []
        return self._with_retries(
            ctx, lambda: self._stream_once(ctx, path, body, pieces), started=lambda: bool(pieces)
        )

    def _stream_once(
        self, ctx: TaskContext, path: str, body: dict[str, Any], pieces: list[str]
    ) -> Result:
        finish_reason: str | None = None
        usage: dict[str, Any] | None = None
        with self.client.stream("POST", path, json=body, timeout=_timeout(ctx)) as response:
            _raise_for_status(response, read_body=True)
            for chunk in _sse_events(response.iter_lines()):
                if ctx.cancelled():
                    raise _EarlyStop("stopped while the answer streamed in")
                usage = chunk.get("usage") or usage
                for choice in chunk.get("choices") or []:
                    delta = (choice.get("delta") or {}).get("content") or choice.get("text") or ""
                    if delta:
                        pieces.append(delta)
                        self._emit(ctx, delta)
                    finish_reason = choice.get("finish_reason") or finish_reason
        return _completion("".join(pieces), finish_reason, usage)

    def _emit(self, ctx: TaskContext, delta: str) -> None:
        assert ctx.on_token is not None
        with self._token_lock:  # the worker's callback never runs twice at once
            ctx.on_token(delta)

    def _post_json(self, ctx: TaskContext, path: str, body: dict[str, Any]) -> dict[str, Any]:
        def once() -> dict[str, Any]:
            response = self.client.post(path, json=body, timeout=_timeout(ctx))
            _raise_for_status(response, read_body=False)
            try:
                return dict(response.json())
            except ValueError as exc:
                raise UpstreamError(f"{path}: the server did not answer JSON") from exc

        return self._with_retries(ctx, once)

    def _with_retries(
        self, ctx: TaskContext, attempt: Callable[[], T], started: Callable[[], bool] = bool
    ) -> T:
        for number in range(1, MAX_ATTEMPTS + 1):
            try:
                return attempt()
            except _EarlyStop:
                raise stopped_early(ctx) from None
            except (_Retryable, *RETRYABLE_ERRORS) as exc:
                if started() or number == MAX_ATTEMPTS or ctx.cancelled():
                    raise UpstreamError(f"{self.spec.url}: {exc} (attempt {number})") from exc
                retry_after = exc.retry_after if isinstance(exc, _Retryable) else None
                time.sleep(_backoff(number, retry_after))
            except httpx.TimeoutException as exc:
                raise UpstreamError(f"{self.spec.url}: timed out: {exc}") from exc
        raise AssertionError("unreachable")

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            raise BackendError(f"model {self.spec.name!r} is not loaded; call load() first")
        return self._client


class _EarlyStop(BackendError):
    """The task was cancelled or ran out of time while its answer streamed in."""


def _validated(action: str, ctx: TaskContext) -> Any:
    try:
        return PAYLOADS[action].model_validate(ctx.payload)
    except ValueError as exc:
        raise InvalidPayload(f"{action} payload: {exc}") from None


def _timeout(ctx: TaskContext) -> httpx.Timeout:
    remaining = ctx.deadline - time.monotonic()
    read = max(0.1, min(READ_TIMEOUT_S, remaining))
    return httpx.Timeout(read, connect=min(CONNECT_TIMEOUT_S, read))


def _backoff(attempt: int, retry_after: float | None) -> float:
    if retry_after is not None:
        return min(retry_after, BACKOFF_MAX_S)
    delay = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2.0 ** (attempt - 1))
    return delay * random.uniform(0.8, 1.2)


def _raise_for_status(response: httpx.Response, read_body: bool) -> None:
    if response.status_code < 400:
        return
    if read_body:
        response.read()
    if response.status_code in RETRYABLE_STATUS:
        retry_after = response.headers.get("retry-after")
        seconds = float(retry_after) if retry_after and retry_after.isdigit() else None
        raise _Retryable(f"HTTP {response.status_code}", seconds)
    raise UpstreamRefused(
        f"HTTP {response.status_code} from {response.request.url.path}",
        {"status": response.status_code, "body": response.text[:2000]},
    )


def _sse_events(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        if data:
            yield orjson.loads(data)


def _completion(text: str, finish_reason: str | None, usage: dict[str, Any] | None) -> Result:
    return {
        "text": text,
        "finish_reason": finish_reason or "stop",
        "usage": usage or {},
    }


def _normalised(vector: list[float]) -> list[float]:
    norm = sum(x * x for x in vector) ** 0.5
    return [x / norm for x in vector] if norm > 0 else list(vector)
