"""Tokenize ``ranked_pair`` examples: two sequences per example, sharing the query."""

from __future__ import annotations

from typing import Any

IGNORE = -100


def _sequence(query: list[int], answer: list[int], max_len: int) -> tuple[list[int], list[int]]:
    ids = (query + answer)[:max_len]
    labels = ([IGNORE] * len(query) + answer)[:max_len]
    return ids, labels


def encode_pairs(examples: Any, tokenizer: Any, max_len: int) -> Any:
    """``better_ids``/``better_labels``/``worse_ids``/``worse_labels`` for each example."""
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []

    def encode(batch: dict[str, list[str]]) -> dict[str, list[list[int]]]:
        out: dict[str, list[list[int]]] = {"better_ids": [], "better_labels": [], "worse_ids": [], "worse_labels": []}
        for query, better, worse in zip(batch["query"], batch["better"], batch["worse"], strict=True):
            q = tokenizer(query, add_special_tokens=False)["input_ids"]
            for side, answer in (("better", better), ("worse", worse)):
                ids, labels = _sequence(q, tokenizer(answer, add_special_tokens=False)["input_ids"] + eos, max_len)
                out[f"{side}_ids"].append(ids)
                out[f"{side}_labels"].append(labels)
        return out

    return examples.map(encode, batched=True, remove_columns=examples.column_names)
