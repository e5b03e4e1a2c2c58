"""The ``pairrank`` trainer: a ``transformers.Trainer`` with a pairwise loss on mean answer log-probabilities."""

from __future__ import annotations

from typing import Any

import torch
from transformers import Trainer

IGNORE = -100


def _pad(rows: list[list[int]], value: int, width: int) -> list[list[int]]:
    return [row + [value] * (width - len(row)) for row in rows]


def collate_pairs(rows: list[dict[str, list[int]]], pad: int) -> dict[str, torch.Tensor]:
    """One batch of 2B sequences: the B better ones, then the B worse ones, right-padded."""
    ids = [r["better_ids"] for r in rows] + [r["worse_ids"] for r in rows]
    labels = [r["better_labels"] for r in rows] + [r["worse_labels"] for r in rows]
    width = max(map(len, ids))
    return {
        "input_ids": torch.tensor(_pad(ids, pad, width)),
        "attention_mask": torch.tensor(_pad([[1] * len(i) for i in ids], 0, width)),
        "labels": torch.tensor(_pad(labels, IGNORE, width)),
    }


def mean_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per sequence, the mean log-probability of its labelled tokens."""
    logits, labels = logits[:, :-1].float(), labels[:, 1:]
    mask = labels != IGNORE
    picked = torch.log_softmax(logits, dim=-1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (picked * mask).sum(-1) / mask.sum(-1).clamp(min=1)


class PairRankTrainer(Trainer):
    """Loss ``-log sigmoid(beta * (logp(better) - logp(worse)))``; logs the mean margin."""

    def __init__(self, *args: Any, beta: float = 1.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.beta = beta

    def compute_loss(self, model: Any, inputs: dict[str, torch.Tensor], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        labels = inputs["labels"]
        outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        logp = mean_logprobs(outputs.logits, labels)
        better, worse = logp.chunk(2)
        margin = better - worse
        loss = -torch.nn.functional.logsigmoid(self.beta * margin).mean()
        if model.training:
            self._margin = float(margin.detach().mean())
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        if "loss" in logs and hasattr(self, "_margin"):
            logs["margin"] = self._margin
        super().log(logs, *args, **kwargs)
