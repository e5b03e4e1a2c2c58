"""ftpairrank held to ftcore's contract suites with its own data and its own evidence of learning."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

from ftcore.testing.suites import FormatContract, MethodContract

PAIRS = [("Opposite of up:", " down", " up"), ("Opposite of hot:", " cold", " hot"),
         ("Opposite of big:", " small", " big"), ("Opposite of old:", " new", " old")]


def write_pairs(path: Path, repeats: int = 4) -> Path:
    """A JSONL file of ``{query, better, worse}`` records."""
    rows = [{"query": q, "better": b, "worse": w} for q, b, w in PAIRS] * repeats
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def margins(model_or_run: Path) -> list[float]:
    """Mean log-probability of the better answer minus the worse one, for each pair, under a model or run."""
    import torch
    from datasets import Dataset
    from ftpairrank.encode import encode_pairs
    from ftpairrank.trainer import collate_pairs, mean_logprobs

    from ftcore.models.loading import load_for_inference

    model, tokenizer = load_for_inference(model_or_run)
    rows = encode_pairs(Dataset.from_list([{"query": q, "better": b, "worse": w} for q, b, w in PAIRS]), tokenizer, 32)
    batch = collate_pairs(list(rows), tokenizer.pad_token_id)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    better, worse = mean_logprobs(logits, batch["labels"]).chunk(2)
    return (better - worse).tolist()


class TestPairRank(MethodContract):
    method = "pairrank"
    options: ClassVar[dict[str, Any]] = {"beta": 2.0}
    bad_options: ClassVar[list[dict[str, Any]]] = [{"beta": 0}, {"bta": 1.0}]
    steps = 12
    learning_rate = 5e-3

    def write_data(self, directory: Path) -> Path:
        return write_pairs(directory / "pairs.jsonl")

    def check_learned(self, run_dir: Path, model_dir: Path) -> None:
        before, after = margins(model_dir), margins(run_dir)
        assert sum(after) / len(after) > sum(before) / len(before) + 0.5, (before, after)
        assert all(a > b for a, b in zip(after, before, strict=True)), (before, after)


class TestRanked(FormatContract):
    format = "ranked"
    records: ClassVar[list[dict[str, Any]]] = [{"query": "q", "better": "a", "worse": "b", "id": 7}]
    expected: ClassVar[list[dict[str, Any]]] = [{"query": "q", "better": "a", "worse": "b", "id": 7}]
    bad_record: ClassVar[dict[str, Any]] = {"query": "q", "better": 3, "worse": "b"}
