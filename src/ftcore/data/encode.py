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

from ftcore.data.builtin_templates import CAPABLE
from ftcore.data.templates import Span, render_completion, render_messages, renders, with_system_prompt
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
        return render_messages(messages, tokenizer, options.template, options.train_on_inputs, example.get("tools"))
    if shape == "completion":
        return render_completion(example["prompt"], example["completion"], eos, options.train_on_inputs)
    text = example["text"]
    return (text + eos, [(0, len(text) + len(eos))]) if text else ("", [])


def labels_from_spans(input_ids: list[int], offsets: list[tuple[int, int]], spans: list[Span]) -> list[int]:
    """Each token id where the token overlaps a trained span, else ``-100`` (tokens of no characters never train)."""
    if len(offsets) != len(input_ids):
        raise ValueError("input_ids and offsets differ in length")
    if len(spans) == 1:  # most examples (one answer): one pass, no sorting assumptions
        (s_start, s_end), = spans
        return [token if end > start and end > s_start and start < s_end else IGNORE
                for token, (start, end) in zip(input_ids, offsets, strict=True)]
    labels = [IGNORE] * len(input_ids)
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
    # A chat template writes its own BOS.
    encoded = token_ids_and_offsets(tokenizer, [text for text, _ in rendered], add_special_tokens=shape != "messages")
    rows = [(ids, labels_from_spans(ids, offsets, spans)) for (ids, offsets), (_, spans) in zip(encoded, rendered, strict=True)]
    return _finish(rows, options)


def token_ids_and_offsets(tokenizer: Any, texts: list[str], add_special_tokens: bool) -> list[tuple[list[int], list[Any]]]:
    """Token ids and character offsets of each text, as ``tokenizer(texts, return_offsets_mapping=True)`` gives them.

    The Rust tokenizer's own batch is read directly (transformers' conversion of every encoding to its dict of
    lists costs as much as a third of the tokenizing): one ordinary call on the first text first sets the Rust
    tokenizer's state as transformers does (no truncation or padding, special tokens as configured) and must
    agree with it; a tokenizer where it does not is answered by the ordinary call for the whole batch.
    """
    if not texts:
        return []
    first = tokenizer(texts[:1], add_special_tokens=add_special_tokens, return_offsets_mapping=True,
                      return_attention_mask=False)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        encodings = backend.encode_batch(texts, add_special_tokens=add_special_tokens)
        rows = [(e.ids, e.offsets) for e in encodings]
        if rows[0] == (first["input_ids"][0], [tuple(o) for o in first["offset_mapping"][0]]):
            return rows
    encoded = tokenizer(texts, add_special_tokens=add_special_tokens, return_offsets_mapping=True,
                        return_attention_mask=False)
    return list(zip(encoded["input_ids"], encoded["offset_mapping"], strict=True))


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


#: What a conversation may use that a template might not render -> how the data says so.
_FEATURES = {
    "tools": "has a tool list (tools)",
    "tool_calls": "has tool calls or tool results",
    "reasoning": "has reasoning (reasoning_content)",
}


def check_chat_features(examples: Any, tokenizer: Any, options: EncodeOptions, where: Any) -> None:
    """Refuse conversations that use what the chat template would silently leave out of the text.

    A template that ignores ``tools``, tool calls or reasoning would train the model on conversations with those
    parts missing; the first example that uses one names its place (``where(i)``) and a built-in template that
    renders it.
    """
    for feature, index in features_used(examples).items():
        if not renders(feature, tokenizer, options.template):
            raise DataError(
                f"{where(index)}: the conversation {_FEATURES[feature]} but the chat template does not render "
                f"{'them' if feature != 'reasoning' else 'it'}, so the model would never see "
                f"{'them' if feature != 'reasoning' else 'it'}; set data.chat_template: {CAPABLE[feature]} "
                "(built in) or a template that does"
            )


def features_used(examples: Any) -> dict[str, int]:
    """The first example using each of tools, tool calls/results and reasoning, read from the Arrow columns."""
    import pyarrow as pa
    import pyarrow.compute as pc

    table = examples.with_format("arrow")[:]
    found: dict[str, int] = {}
    if "tools" in table.column_names:
        _first(found, "tools", pc.is_valid(table.column("tools")))
    messages = table.column("messages").combine_chunks()
    flat = pc.list_flatten(messages)
    parents = pc.list_parent_indices(messages)
    fields = {f.name for f in flat.type} if pa.types.is_struct(flat.type) else set()
    if "tool_calls" in fields:
        _first(found, "tool_calls", pc.is_valid(pc.struct_field(flat, "tool_calls")), parents)
    if "role" in fields and "tool_calls" not in found:
        _first(found, "tool_calls", pc.equal(pc.struct_field(flat, "role"), "tool"), parents)
    if "reasoning_content" in fields:
        reasoning = pc.struct_field(flat, "reasoning_content")
        _first(found, "reasoning", pc.and_(pc.is_valid(reasoning), pc.not_equal(reasoning, "")), parents)
    return found


def _first(found: dict[str, int], feature: str, mask: Any, parents: Any = None) -> None:
    import pyarrow.compute as pc

    at = pc.index(pc.fill_null(mask, False), True).as_py()
    if at >= 0:
        found[feature] = parents[at].as_py() if parents is not None else at


def require_fast(tokenizer: Any) -> None:
    """Masking needs character offsets, which only fast (Rust) tokenizers give."""
    if not getattr(tokenizer, "is_fast", False):
        raise DataError(
            f"tokenizer {type(tokenizer).__name__} is not a fast tokenizer; ft needs one for exact loss masking",
            hint="load it with use_fast=True or convert it with the tokenizers library",
        )
