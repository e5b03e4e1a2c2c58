"""Reward ``reward_model``: completions scored by a reward model trained with ftpref's ``rm`` (or any sequence
classifier with one output). Loaded once per run by ``setup_reward`` on the policy's device; torn down at the end.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class RewardModelOptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str = Field(description="The run directory of an `ft train --method rm` run (or a sequence classifier).")
    batch_size: int = Field(16, ge=1, description="Completions scored per forward pass.")
    max_length: int = Field(1024, ge=8, description="Longest prompt + completion scored, in tokens (longer ones are "
                            "cut from the left, keeping the completion's end).")

    @field_validator("path")
    @classmethod
    def _a_scorer(cls, path: str) -> str:
        config = Path(path) / "config.json"
        if not config.is_file():
            raise ValueError(f"no model at {path} (no config.json): give the run directory of `ft train --method rm`")
        architectures = json.loads(config.read_text(encoding="utf-8")).get("architectures") or []
        if not any(a.endswith("ForSequenceClassification") for a in architectures):
            raise ValueError(f"{path} is a {', '.join(architectures) or 'model'}, not a reward model: train one with "
                             "`ft train --method rm` (ftpref)")
        return path


def load_scorer(options: RewardModelOptions, context: Any) -> dict[str, Any]:
    """The reward model and its tokenizer, on the policy's device, in eval mode."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(options.path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.truncation_side = "left"
    model = AutoModelForSequenceClassification.from_pretrained(options.path).to(context.device).eval()
    model.config.pad_token_id = tokenizer.pad_token_id
    return {"model": model, "tokenizer": tokenizer}


def score(prompts: list[str], completions: list[str], options: RewardModelOptions, state: dict[str, Any]) -> list[float]:
    """The reward model's score of each prompt + completion."""
    import torch

    model, tokenizer = state["model"], state["tokenizer"]
    texts = [p + c for p, c in zip(prompts, completions, strict=True)]
    scores: list[float] = []
    for start in range(0, len(texts), options.batch_size):
        batch = tokenizer(texts[start:start + options.batch_size], padding=True, truncation=True,
                          max_length=options.max_length, return_tensors="pt").to(model.device)
        with torch.no_grad():
            scores.extend(model(**batch).logits[:, 0].float().tolist())
    return scores


def release(state: dict[str, Any] | None) -> None:
    """Drop the reward model (and the GPU memory it held)."""
    if not state:
        return
    state.clear()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
