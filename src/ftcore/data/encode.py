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
KEPT, TRUNCATED, SPLIT = "kept", "truncated", "split"
#: Statuses of the examples that train (a split one trains as several rows: :func:`split_rows`).
TRAINED_STATUSES = (KEPT, TRUNCATED, SPLIT)
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
    overflow: str | None

    def overflow_for(self, shape: str) -> str:
        """What happens to an example of ``shape`` longer than ``max_seq_len``: ``data.overflow``, else raw text is
        split into chunks (continued pre-training keeps every token) and other examples are truncated."""
        return self.overflow or ("split" if shape == "text" else "truncate")


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
    """``datasets.map`` function (batched): examples -> ``input_ids``, ``labels``, ``status``, ``full_length`` and
    ``reasoning_dropped`` (:func:`reasoning_dropped`)."""
    if shape == "tokens":
        rows = [(list(i), list(lab)) for i, lab in zip(batch["input_ids"], batch["labels"], strict=True)]
        return {**_finish(rows, options, shape), "reasoning_dropped": [0] * len(rows)}
    size = len(next(iter(batch.values())))
    rendered = [example_text({k: v[i] for k, v in batch.items()}, shape, tokenizer, options) for i in range(size)]
    # A chat template writes its own BOS.
    encoded = token_ids_and_offsets(tokenizer, [text for text, _ in rendered], add_special_tokens=shape != "messages")
    rows = [(ids, labels_from_spans(ids, offsets, spans)) for (ids, offsets), (_, spans) in zip(encoded, rendered, strict=True)]
    out = _finish(rows, options, shape)
    out["reasoning_dropped"] = ([reasoning_dropped(messages, text) for messages, (text, _) in zip(batch["messages"], rendered, strict=True)]
                                if shape == "messages" else [0] * size)
    return out


def reasoning_dropped(messages: list[dict[str, Any]], text: str) -> int:
    """How many assistant messages' reasoning is missing from ``text``, the rendered conversation (templates such
    as Qwen3's drop the reasoning of answers before the last user message)."""
    return sum(1 for m in messages if m.get("role") == "assistant"
               and (reasoning := (m.get("reasoning_content") or "").strip()) and reasoning not in text)


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


def _finish(rows: list[tuple[list[int], list[int]]], options: EncodeOptions, shape: str) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {"input_ids": [], "labels": [], "status": [], "full_length": []}
    overflow = options.overflow_for(shape)
    for ids, labels in rows:
        out["full_length"].append(len(ids))
        ids, labels, status = _fit(ids, labels, options.max_seq_len, overflow)
        out["input_ids"].append(ids)
        out["labels"].append(labels)
        out["status"].append(status)
    return out


def _fit(ids: list[int], labels: list[int], max_seq_len: int, overflow: str) -> tuple[list[int], list[int], str]:
    """Apply max_seq_len: keep, split (whole, for :func:`split_rows`), truncate or drop (the status says which, or
    why it was dropped)."""
    if not ids:
        return [], [], EMPTY
    # The first label is never predicted (the model shifts labels by one), so it cannot carry the loss.
    if not _trains(labels):
        return [], [], NOTHING_TRAINED
    if len(ids) <= max_seq_len:
        return ids, labels, KEPT
    if overflow == "split":
        return ids, labels, SPLIT
    if overflow == "drop":
        return [], [], TOO_LONG
    ids, labels = ids[:max_seq_len], labels[:max_seq_len]
    return (ids, labels, TRUNCATED) if _trains(labels) else ([], [], TRUNCATED_AWAY)


def chunks(ids: list[int], labels: list[int], max_seq_len: int) -> list[tuple[list[int], list[int]]]:
    """A long example as rows of at most ``max_seq_len`` tokens in which every token after the first is predicted
    exactly once: each row after the first starts with the previous row's last token as context only (its label
    masked), since a row's first token is never a prediction target."""
    if len(ids) <= max_seq_len:
        return [(ids, labels)]
    rows = [(ids[:max_seq_len], labels[:max_seq_len])]
    step = max_seq_len - 1
    for start in range(step, len(ids) - 1, step):
        rows.append((ids[start:start + max_seq_len], [IGNORE, *labels[start + 1:start + max_seq_len]]))
    return rows


def split_rows(table: Any, max_seq_len: int) -> Any:
    """An Arrow table of ``input_ids`` + ``labels`` rows with each row longer than ``max_seq_len`` replaced, in
    place, by its :func:`chunks` (each its own example: attention never crosses from one chunk to another)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not len(table) or pc.max(pc.list_value_length(table.column("input_ids"))).as_py() <= max_seq_len:
        return table
    rows = [piece for ids, labels in zip(table.column("input_ids").to_pylist(), table.column("labels").to_pylist(),
                                         strict=True)
            for piece in chunks(ids, labels, max_seq_len)]
    return pa.table({"input_ids": pa.array([r[0] for r in rows], table.schema.field("input_ids").type),
                     "labels": pa.array([r[1] for r in rows], table.schema.field("labels").type)})


def _trains(labels: list[int]) -> bool:
    """Whether a label after the first is trained (counted in C: this runs for every example)."""
    return len(labels) > 1 and len(labels) - labels.count(IGNORE) > (labels[0] != IGNORE)


#: What a conversation may use that a template might not render -> how the data says so.
_FEATURES = {
    "tools": "has a tool list (tools)",
    "tool_calls": "has tool calls or tool results",
    "reasoning": "has reasoning (reasoning_content)",
}
_SHORT = {"tools": "tools", "tool_calls": "tools", "reasoning": "reasoning"}


def check_chat_features(examples: Any, tokenizer: Any, options: EncodeOptions, where: Any) -> None:
    """Refuse conversations that use what the chat template would silently leave out of the text.

    A template that ignores ``tools``, tool calls or reasoning would train the model on conversations with those
    parts missing; the first example that uses one names its place (``where(i)``) and a built-in template that
    renders it.
    """
    used = features_used(examples)
    # The built-in template to suggest renders everything the data uses, not only the feature refused first.
    suggested = CAPABLE["reasoning"] if "reasoning" in used else CAPABLE["tools"]
    for feature, index in used.items():
        if not renders(feature, tokenizer, options.template):
            also = [_SHORT[f] for f in used if f != feature and _SHORT[f] != _SHORT[feature]]
            raise DataError(
                f"{where(index)}: the conversation {_FEATURES[feature]} but the chat template does not render "
                f"{'them' if feature != 'reasoning' else 'it'}, so the model would never see "
                f"{'them' if feature != 'reasoning' else 'it'}; set data.chat_template: {suggested} "
                "(built in" + (f", it also renders the {' and '.join(also)} this data has" if also else "")
                + ") or a template that does"
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
