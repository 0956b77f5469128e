"""`embed` and `classify` on a local checkpoint: one forward pass per chunk of rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from mcp.errors import BackendError, InvalidPayload
from workers.backends.checkpoint import Checkpoint
from workers.backends.text_inputs import max_input_tokens, pad_right, plain_ids

ROWS_PER_FORWARD = 64
CLASSIFY_PROMPT = "Text: {text}\nLabel:"


def embed_texts(
    checkpoint: Checkpoint, texts: Sequence[str]
) -> tuple[list[list[float]], list[int]]:
    """(L2-normalised mean-pooled vectors, tokens read per text) for the texts, in order."""
    limit = max_input_tokens(checkpoint)
    rows = [plain_ids(checkpoint, text, limit) for text in texts]
    vectors: list[list[float]] = []
    backbone = checkpoint.model.base_model
    with torch.inference_mode():
        for start in range(0, len(rows), ROWS_PER_FORWARD):
            ids, mask = pad_right(
                rows[start : start + ROWS_PER_FORWARD], checkpoint.pad_token_id, checkpoint.device
            )
            hidden = backbone(input_ids=ids, attention_mask=mask).last_hidden_state.float()
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
            vectors.extend(F.normalize(pooled, p=2, dim=-1).cpu().tolist())
    return vectors, [len(r) for r in rows]


def classify_with_head(
    checkpoint: Checkpoint, texts: Sequence[str], labels: Sequence[Sequence[str]]
) -> list[dict[str, float]]:
    """Probabilities from the classification head, renormalised over the labels asked."""
    id2label = {int(k): str(v) for k, v in (checkpoint.model.config.id2label or {}).items()}
    by_name = {name.lower(): index for index, name in id2label.items()}
    limit = max_input_tokens(checkpoint)
    rows = [plain_ids(checkpoint, text, limit) for text in texts]
    results: list[dict[str, float]] = []
    with torch.inference_mode():
        for start in range(0, len(rows), ROWS_PER_FORWARD):
            ids, mask = pad_right(
                rows[start : start + ROWS_PER_FORWARD], checkpoint.pad_token_id, checkpoint.device
            )
            logits = checkpoint.model(input_ids=ids, attention_mask=mask).logits.float()
            for offset, row_logits in enumerate(logits):
                asked = labels[start + offset]
                unknown = [label for label in asked if label.lower() not in by_name]
                if unknown:
                    raise InvalidPayload(
                        f"labels {unknown} are not among this model's labels",
                        {"labels": sorted(id2label.values())},
                    )
                picked = row_logits[[by_name[label.lower()] for label in asked]]
                probs = torch.softmax(picked, dim=-1).tolist()
                results.append(dict(zip(asked, probs, strict=True)))
    return results


def classify_with_lm(
    checkpoint: Checkpoint, texts: Sequence[str], labels: Sequence[Sequence[str]]
) -> list[dict[str, float]]:
    """Softmax over labels of log P(label | text) under the language model."""
    lm_head = checkpoint.model.get_output_embeddings()
    if lm_head is None:
        raise BackendError("this checkpoint has neither a classification head nor an LM head")
    tokenizer = checkpoint.tokenizer
    limit = max_input_tokens(checkpoint)
    pairs: list[tuple[list[int], list[int]]] = []
    for text, task_labels in zip(texts, labels, strict=True):
        prompt = plain_ids(checkpoint, CLASSIFY_PROMPT.format(text=text))
        for label in task_labels:
            answer = list(tokenizer(" " + label, add_special_tokens=False)["input_ids"])
            answer = answer or [checkpoint.pad_token_id]
            pairs.append((prompt[-max(1, limit - len(answer)) :], answer[: limit - 1]))
    log_likelihoods = _answer_log_likelihoods(checkpoint, lm_head, pairs)
    results: list[dict[str, float]] = []
    cursor = 0
    for task_labels in labels:
        scores = torch.tensor(log_likelihoods[cursor : cursor + len(task_labels)])
        cursor += len(task_labels)
        results.append(dict(zip(task_labels, torch.softmax(scores, 0).tolist(), strict=True)))
    return results


def _answer_log_likelihoods(
    checkpoint: Checkpoint, lm_head: Any, pairs: list[tuple[list[int], list[int]]]
) -> list[float]:
    backbone = checkpoint.model.base_model
    totals: list[float] = []
    with torch.inference_mode():
        for start in range(0, len(pairs), ROWS_PER_FORWARD):
            chunk = pairs[start : start + ROWS_PER_FORWARD]
            ids, mask = pad_right(
                [p + a for p, a in chunk], checkpoint.pad_token_id, checkpoint.device
            )
            hidden = backbone(input_ids=ids, attention_mask=mask).last_hidden_state
            rows, columns, targets = [], [], []
            for row, (prompt, answer) in enumerate(chunk):
                for i, token in enumerate(answer):
                    rows.append(row)
                    columns.append(len(prompt) + i - 1)  # the position that predicts the token
                    targets.append(token)
            logits = lm_head(hidden[rows, columns]).float()
            picked = torch.log_softmax(logits, dim=-1)[range(len(targets)), targets]
            sums = torch.zeros(len(chunk), device=picked.device).index_add_(
                0, torch.tensor(rows, device=picked.device), picked
            )
            totals.extend(sums.cpu().tolist())
    return totals
