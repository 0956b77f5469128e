"""A local checkpoint behind the worker: generate, embed, classify and phone steps in batches."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from pydantic import ValidationError

from mcp.errors import BackendError, InvalidPayload, UnknownAction
from mcp.settings import ModelSpec, Settings
from schemas.payloads import PAYLOADS, Payload
from workers.backends.base import Backend, Result, ResultOrError, TaskContext
from workers.backends.checkpoint import Checkpoint, load_checkpoint
from workers.backends.generation import GenerationOutput, GenerationRequest, generate_batch
from workers.backends.isolation import as_task_error, run_isolated, stopped_early
from workers.backends.sampling import sampling_key
from workers.backends.scoring import classify_with_head, classify_with_lm, embed_texts
from workers.backends.text_inputs import chat_ids, prompt_ids
from workers.phone import build_phone_messages, parse_phone_answer

ACTIONS_BY_KIND: dict[str, frozenset[str]] = {
    "causal_lm": frozenset({"generate", "embed", "classify", "phone_step"}),
    "vision_lm": frozenset({"generate", "phone_step"}),
    "sequence_classifier": frozenset({"embed", "classify"}),
    "encoder": frozenset({"embed"}),
}


class TransformersBackend(Backend):
    """Any local checkpoint the transformers Auto classes load, glm-tiny included."""

    def __init__(self, spec: ModelSpec, settings: Settings) -> None:
        super().__init__(spec)
        self.settings = settings
        self._checkpoint: Checkpoint | None = None

    def load(self) -> None:
        if self._checkpoint is None:
            self._checkpoint = load_checkpoint(self.spec, self.settings)

    @property
    def checkpoint(self) -> Checkpoint:
        if self._checkpoint is None:
            raise BackendError(f"model {self.spec.name!r} is not loaded; call load() first")
        return self._checkpoint

    def batch_key(self, action: str, payload: dict[str, Any]) -> Hashable:
        if action in ("generate", "phone_step"):
            return sampling_key(action, payload)
        return (action,)

    def run_batch(self, action: str, batch: list[TaskContext]) -> list[ResultOrError]:
        runners: dict[str, Callable[[list[TaskContext]], list[ResultOrError]]] = {
            "generate": self._generate,
            "embed": self._embed,
            "classify": self._classify,
            "phone_step": self._phone_step,
        }
        runner = runners.get(action)
        if runner is None or action not in ACTIONS_BY_KIND[self.checkpoint.kind]:
            kind = self.checkpoint.kind
            error = UnknownAction(f"model {self.spec.name!r} ({kind}) cannot run {action!r}")
            return [as_task_error(error) for _ in batch]
        return run_isolated(runner, batch)

    # ------------------------------------------------------------ generate / phone_step

    def _generate(self, batch: list[TaskContext]) -> list[ResultOrError]:
        def prepare(ctx: TaskContext, payload: Any) -> tuple[GenerationRequest, list[Any] | None]:
            messages = [m.model_dump() for m in payload.messages] if payload.messages else None
            if messages is None and self.checkpoint.kind == "vision_lm":
                messages = [{"role": "user", "content": payload.prompt}]
            return self._request(ctx, payload, messages, payload.prompt), messages

        def finish(ctx: TaskContext, payload: Any, output: GenerationOutput) -> Result:
            return {
                "text": output.text,
                "finish_reason": output.finish_reason,
                "usage": output.usage(),
            }

        return self._run_generation("generate", batch, prepare, finish)

    def _phone_step(self, batch: list[TaskContext]) -> list[ResultOrError]:
        vision = self.checkpoint.kind == "vision_lm"

        def prepare(ctx: TaskContext, payload: Any) -> tuple[GenerationRequest, list[Any] | None]:
            from workers.backends.vision import hf_image_part

            messages = build_phone_messages(payload.model_dump(), hf_image_part if vision else None)
            return self._request(ctx, payload, messages, None), messages

        def finish(ctx: TaskContext, payload: Any, output: GenerationOutput) -> Result:
            return {**parse_phone_answer(output.text), "usage": output.usage()}

        return self._run_generation("phone_step", batch, prepare, finish)

    def _request(
        self, ctx: TaskContext, payload: Any, messages: list[Any] | None, prompt: str | None
    ) -> GenerationRequest:
        checkpoint = self.checkpoint
        ids: list[int] = []
        if checkpoint.kind != "vision_lm":
            ids = (
                chat_ids(checkpoint, messages) if messages else prompt_ids(checkpoint, prompt or "")
            )
        return GenerationRequest(
            prompt_ids=ids,
            max_new_tokens=payload.max_tokens,
            temperature=payload.temperature,
            top_p=getattr(payload, "top_p", 1.0),
            stop=list(getattr(payload, "stop", []) or []),
            seed=getattr(payload, "seed", None),
            on_token=ctx.on_token if getattr(payload, "stream", True) else None,
            cancelled=ctx.cancelled,
        )

    def _run_generation(
        self,
        action: str,
        batch: list[TaskContext],
        prepare: Callable[[TaskContext, Any], tuple[GenerationRequest, list[Any] | None]],
        finish: Callable[[TaskContext, Any, GenerationOutput], Result],
    ) -> list[ResultOrError]:
        outcomes: list[ResultOrError | None] = [None] * len(batch)
        ready: list[tuple[int, Any, GenerationRequest, list[Any] | None]] = []
        for index, ctx in enumerate(batch):
            if ctx.cancelled():
                outcomes[index] = stopped_early(ctx)
                continue
            try:
                payload = self._validated(action, ctx)
                request, messages = prepare(ctx, payload)
                ready.append((index, payload, request, messages))
            except Exception as exc:
                outcomes[index] = exc
        if ready:
            outputs = self._generate_outputs([(r, m) for _, _, r, m in ready])
            for (index, payload, _, _), output in zip(ready, outputs, strict=True):
                ctx = batch[index]
                if output.finish_reason == "cancelled":
                    outcomes[index] = stopped_early(ctx)
                else:
                    outcomes[index] = finish(ctx, payload, output)
        return [o if o is not None else BackendError("task produced no result") for o in outcomes]

    def _generate_outputs(
        self, requests: list[tuple[GenerationRequest, list[Any] | None]]
    ) -> list[GenerationOutput]:
        checkpoint = self.checkpoint
        if checkpoint.kind == "vision_lm":
            from workers.backends.vision import generate_with_processor

            return [
                generate_with_processor(checkpoint, messages or [], request)
                for request, messages in requests
            ]
        return generate_batch(checkpoint, [request for request, _ in requests])

    # ------------------------------------------------------------ embed / classify

    def _embed(self, batch: list[TaskContext]) -> list[ResultOrError]:
        payloads = [self._validated("embed", ctx) for ctx in batch]
        texts = [[p.input] if isinstance(p.input, str) else list(p.input) for p in payloads]
        vectors, token_counts = embed_texts(self.checkpoint, [t for group in texts for t in group])
        outcomes: list[ResultOrError] = []
        cursor = 0
        for group in texts:
            mine = vectors[cursor : cursor + len(group)]
            tokens = sum(token_counts[cursor : cursor + len(group)])
            cursor += len(group)
            outcomes.append(
                {
                    "embeddings": mine,
                    "dim": len(mine[0]) if mine else 0,
                    "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
                }
            )
        return outcomes

    def _classify(self, batch: list[TaskContext]) -> list[ResultOrError]:
        payloads = [self._validated("classify", ctx) for ctx in batch]
        texts = [p.input for p in payloads]
        labels = [list(p.labels) for p in payloads]
        if self.checkpoint.kind == "sequence_classifier":
            scores = classify_with_head(self.checkpoint, texts, labels)
        else:
            scores = classify_with_lm(self.checkpoint, texts, labels)
        return [{"label": max(s, key=s.__getitem__), "scores": s} for s in scores]

    # ------------------------------------------------------------ helpers

    def _validated(self, action: str, ctx: TaskContext) -> Any:
        schema: type[Payload] = PAYLOADS[action]
        try:
            return schema.model_validate(ctx.payload)
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_context=False)
            first = errors[0]
            where = ".".join(str(part) for part in first["loc"]) or "payload"
            raise InvalidPayload(f"{action} payload: {where}: {first['msg']}", errors) from None
