"""Packing and the collators handed to ``transformers.Trainer``.

Packing concatenates examples into rows of at most ``max_seq_len`` tokens and stores ``position_ids`` that
restart at 0 for every example. The packed collator flattens a batch into one ``[1, total]`` row, as
``transformers.DataCollatorWithFlattening`` does; transformers then derives the sequence boundaries from the
position resets (``find_packed_sequence_indices``, only when no KV cache is built: the collator passes
``use_cache=False``) and masks attention block-diagonally (flash-attention gets
``cu_seqlens`` from the same resets), so no example attends to another and no padding is computed. The first
label of every packed example is ``-100``: it would otherwise be predicted from the previous example.
We chose position resets over 4-D block masks because they need no model-specific mask plumbing and cost
nothing on flash-attention; on CPU/SDPA the kernel still runs over the whole row with a mask.
"""

from __future__ import annotations

from typing import Any

from ftcore.data.encode import IGNORE


def pack_rows(examples: list[tuple[list[int], list[int]]], max_seq_len: int) -> dict[str, list[list[int]]]:
    """Greedily pack ``(input_ids, labels)`` examples, in order, into rows of at most ``max_seq_len``."""
    rows: dict[str, list[list[int]]] = {"input_ids": [], "labels": [], "position_ids": []}
    ids: list[int] = []
    labels: list[int] = []
    positions: list[int] = []
    for ex_ids, ex_labels in examples:
        if ids and len(ids) + len(ex_ids) > max_seq_len:
            _flush(rows, ids, labels, positions)
            ids, labels, positions = [], [], []
        ids += ex_ids
        labels += [IGNORE, *ex_labels[1:]]
        positions += range(len(ex_ids))
    if ids:
        _flush(rows, ids, labels, positions)
    return rows


def _flush(rows: dict[str, list[list[int]]], ids: list[int], labels: list[int], positions: list[int]) -> None:
    rows["input_ids"].append(ids)
    rows["labels"].append(labels)
    rows["position_ids"].append(list(positions))


class PaddingCollator:
    """Pads a batch to its longest example: ``input_ids`` with the pad id, ``labels`` with -100."""

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None, padding_side: str = "right") -> None:
        self.pad_token_id = pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of
        self.padding_side = padding_side

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        width = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        batch: dict[str, list[list[int]]] = {"input_ids": [], "labels": [], "attention_mask": []}
        for feature in features:
            ids, labels = list(feature["input_ids"]), list(feature["labels"])
            gap = width - len(ids)
            batch["input_ids"].append(self._pad(ids, [self.pad_token_id] * gap))
            batch["labels"].append(self._pad(labels, [IGNORE] * gap))
            batch["attention_mask"].append(self._pad([1] * len(ids), [0] * gap))
        return {key: torch.tensor(value, dtype=torch.long) for key, value in batch.items()}

    def _pad(self, values: list[int], padding: list[int]) -> list[int]:
        return padding + values if self.padding_side == "left" else values + padding


class PackedCollator:
    """Flattens packed rows, or single examples, into one ``[1, total]`` sequence with position resets (padding-free).

    An unpacked example gets positions ``0..n-1`` and its first label masked, as a packed example does.
    """

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        batch: dict[str, list[int]] = {"input_ids": [], "labels": [], "position_ids": []}
        for feature in features:
            if "position_ids" not in feature:
                feature = {"input_ids": feature["input_ids"], "labels": [IGNORE, *list(feature["labels"])[1:]],
                           "position_ids": range(len(feature["input_ids"]))}
            for key in batch:
                batch[key] += list(feature[key])
        flat: dict[str, Any] = {key: torch.tensor([value], dtype=torch.long) for key, value in batch.items()}
        # transformers only derives the per-example mask from position resets when no KV cache is built;
        # a model left with use_cache=True (eval mode, a custom trainer) would otherwise attend across examples.
        flat["use_cache"] = False
        return flat
