"""Preference metrics: how often, and by how much, a model prefers the chosen answer to the rejected one.

Both score a model by its own log-likelihood of each answer given the prompt (summed over the answer's tokens,
the end-of-sequence token included, with the prompt rendered by the run's chat template as in training). That
is the quantity DPO's implicit reward moves: after preference tuning, the chosen answers gain on the rejected
ones, so ``ft benchmark`` shows base vs tuned on held-out pairs.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from ftpref.encode import render_example


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def _answer_ids(tokenizer: Any, prompt: str, answer: str) -> tuple[list[int], int]:
    """Token ids of prompt + answer + eos, and where the answer starts (where prompt and full tokens diverge)."""
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    full = tokenizer(prompt + answer, add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is not None and (not full or full[-1] != tokenizer.eos_token_id):
        full = [*full, tokenizer.eos_token_id]
    return full, max(1, _common_prefix(prompt_ids, full))


def answer_logprobs(model: Any, tokenizer: Any, sequences: list[tuple[list[int], int]], batch_size: int) -> list[float]:
    """Summed log-probability of each sequence's tokens from its answer start on."""
    import torch

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    scores: list[float] = []
    for start in range(0, len(sequences), batch_size):
        batch = sequences[start:start + batch_size]
        width = max(len(ids) for ids, _ in batch)
        ids = torch.tensor([s + [pad] * (width - len(s)) for s, _ in batch], device=model.device)
        mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s, _ in batch], device=model.device)
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float().log_softmax(-1)
        picked = logits.gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
        for row, (seq, answer_start) in enumerate(batch):
            scores.append(float(picked[row, answer_start - 1:len(seq) - 1].sum()))
    return scores


def margins(context: dict[str, Any]) -> list[float]:
    """Per pair: log-probability of the chosen answer minus that of the rejected one."""
    tokenizer = context["tokenizer"]
    settings = SimpleNamespace(template=context["template"], system_prompt=context.get("system_prompt"))
    sequences = []
    for example in context["examples"]:
        text = render_example(example, ("chosen", "rejected"), tokenizer, settings)
        sequences += [_answer_ids(tokenizer, text["prompt"], text["chosen"]),
                      _answer_ids(tokenizer, text["prompt"], text["rejected"])]
    scores = answer_logprobs(context["model"], tokenizer, sequences, int(context.get("batch_size") or 8))
    return [chosen - rejected for chosen, rejected in zip(scores[::2], scores[1::2], strict=True)]


def compute(name: str, context: dict[str, Any]) -> Any:
    """``preference_accuracy`` (share of pairs with a positive margin) or ``reward_margin`` (mean margin)."""
    from ftcore import MetricResult, PluginError

    if "model" not in context:
        raise PluginError(f"metric {name!r} scores a model on preference pairs; it runs in ft evaluate / ft benchmark")
    values = margins(context)
    if name == "preference_accuracy":
        return MetricResult({name: sum(v > 0 for v in values) / len(values)}, {"pairs": len(values)})
    return MetricResult({name: sum(values) / len(values)}, {"pairs": len(values), "unit": "nats (summed log-prob)"})
