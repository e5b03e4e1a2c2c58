"""Canonical examples -> token ids and labels, with truncation or dropping counted per reason.

Labels are the token ids where a token overlaps a trained character span (assistant turns, completions, raw
text) and ``-100`` elsewhere; character offsets come from a fast tokenizer's ``return_offsets_mapping``, so
the mask is exact whatever the template and however the tokenizer merges characters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ftcore.data.templates import Span, render_completion, render_messages, with_system_prompt
from ftcore.errors import DataError

IGNORE = -100
KEPT, TRUNCATED = "kept", "truncated"
TOO_LONG = "longer than max_seq_len"
NOTHING_TRAINED = "no trained tokens (no assistant turn or empty response)"
TRUNCATED_AWAY = "no trained tokens left after truncation"
EMPTY = "empty text"


@dataclass(frozen=True)
class EncodeOptions:
    """Everything that decides how an example becomes tokens (all of it is in the cache fingerprint)."""

    template: str
    train_on_inputs: bool
    system_prompt: str | None
    max_seq_len: int
    overflow: str


def example_text(example: dict[str, Any], shape: str, tokenizer: Any, options: EncodeOptions) -> tuple[str, list[Span]]:
    """The text an example is trained on and the character spans that carry the loss."""
    eos = tokenizer.eos_token or ""
    if shape == "messages":
        messages = with_system_prompt(example["messages"], options.system_prompt)
        return render_messages(messages, tokenizer, options.template, options.train_on_inputs)
    if shape == "completion":
        return render_completion(example["prompt"], example["completion"], eos, options.train_on_inputs)
    text = example["text"]
    return (text + eos, [(0, len(text) + len(eos))]) if text else ("", [])


def labels_from_spans(input_ids: list[int], offsets: list[tuple[int, int]], spans: list[Span]) -> list[int]:
    """Each token id where the token overlaps a trained span, else ``-100``."""
    labels = []
    for token, (start, end) in zip(input_ids, offsets, strict=True):
        trained = any(start < s_end and end > s_start for s_start, s_end in spans if end > start)
        labels.append(token if trained else IGNORE)
    return labels


def encode_batch(batch: dict[str, list[Any]], tokenizer: Any, shape: str, options: EncodeOptions) -> dict[str, list[Any]]:
    """``datasets.map`` function (batched): examples -> ``input_ids``, ``labels``, ``status``, ``full_length``."""
    if shape == "tokens":
        rows = [(list(i), list(lab)) for i, lab in zip(batch["input_ids"], batch["labels"], strict=True)]
        return _finish(rows, options)
    size = len(next(iter(batch.values())))
    rendered = [example_text({k: v[i] for k, v in batch.items()}, shape, tokenizer, options) for i in range(size)]
    encoded = tokenizer(
        [text for text, _ in rendered],
        add_special_tokens=shape != "messages",  # a chat template writes its own BOS
        return_offsets_mapping=True,
        return_attention_mask=False,
    )
    rows = [
        (ids, labels_from_spans(ids, offsets, spans))
        for ids, offsets, (_, spans) in zip(encoded["input_ids"], encoded["offset_mapping"], rendered, strict=True)
    ]
    return _finish(rows, options)


def _finish(rows: list[tuple[list[int], list[int]]], options: EncodeOptions) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {"input_ids": [], "labels": [], "status": [], "full_length": []}
    for ids, labels in rows:
        out["full_length"].append(len(ids))
        ids, labels, status = _fit(ids, labels, options)
        out["input_ids"].append(ids)
        out["labels"].append(labels)
        out["status"].append(status)
    return out


def _fit(ids: list[int], labels: list[int], options: EncodeOptions) -> tuple[list[int], list[int], str]:
    """Apply max_seq_len: keep, truncate or drop (the status says which, or why it was dropped)."""
    if not ids:
        return [], [], EMPTY
    # The first label is never predicted (the model shifts labels by one), so it cannot carry the loss.
    if not _trains(labels):
        return [], [], NOTHING_TRAINED
    if len(ids) <= options.max_seq_len:
        return ids, labels, KEPT
    if options.overflow == "drop":
        return [], [], TOO_LONG
    ids, labels = ids[: options.max_seq_len], labels[: options.max_seq_len]
    return (ids, labels, TRUNCATED) if _trains(labels) else ([], [], TRUNCATED_AWAY)


def _trains(labels: list[int]) -> bool:
    return any(label != IGNORE for label in labels[1:])


def require_fast(tokenizer: Any) -> None:
    """Masking needs character offsets, which only fast (Rust) tokenizers give."""
    if not getattr(tokenizer, "is_fast", False):
        raise DataError(
            f"tokenizer {type(tokenizer).__name__} is not a fast tokenizer; ft needs one for exact loss masking",
            hint="load it with use_fast=True or convert it with the tokenizers library",
        )
