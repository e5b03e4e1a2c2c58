"""Canonical examples -> token ids and labels, with truncation or dropping counted per reason.

Labels are the token ids where a token overlaps a trained character span (assistant turns, completions, raw
text) and ``-100`` elsewhere; character offsets come from a fast tokenizer's ``return_offsets_mapping``, so
the mask is exact whatever the template and however the tokenizer merges characters.
"""

from __future__ import annotations

import bisect
import itertools
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
    """Each token id where the token overlaps a trained span, else ``-100`` (tokens of no characters never train)."""
    labels = [IGNORE] * len(input_ids)
    if len(offsets) != len(input_ids):
        raise ValueError("input_ids and offsets differ in length")
    # Tokens of characters come in text order (special tokens a post-processor adds have empty (0, 0) offsets):
    # each span covers one run of them, found by bisection instead of testing every token against every span.
    reach = list(itertools.accumulate((end for _, end in offsets), max))
    for s_start, s_end in spans:
        for k in range(bisect.bisect_right(reach, s_start), len(offsets)):
            start, end = offsets[k]
            if end > start:
                if start >= s_end:
                    break
                if end > s_start:
                    labels[k] = input_ids[k]
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
