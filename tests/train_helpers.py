"""Helpers shared by the training tests (no tests here): a learnable dataset and config writing."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import yaml

WORDS = ["red", "green", "blue", "cat", "dog", "bird", "fish", "tree", "river", "one", "two", "three"]


def write_reversal_text(path: Path, n: int = 64, seed: int = 0) -> Path:
    """``n`` text records of a deterministic task (reverse six words) that a tiny model learns quickly."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as handle:
        for _ in range(n):
            words = [rng.choice(WORDS) for _ in range(6)]
            text = "Reverse: " + " ".join(words) + " -> " + " ".join(reversed(words))
            handle.write(json.dumps({"text": text}) + "\n")
    return path


def write_reversal_pairs(path: Path, n: int = 24) -> Path:
    """``n`` prompt/completion records of a word-reversal task (2-5 words each), as JSON lines."""
    words = ["red", "blue", "cat", "dog", "sun", "sea", "tree", "rock"]
    with path.open("w", encoding="utf-8") as handle:
        for i in range(n):
            picked = [words[(i * 3 + k * 5) % len(words)] for k in range(2 + i % 4)]
            handle.write(json.dumps({"prompt": "Reverse: " + " ".join(picked) + " ->",
                                     "completion": " " + " ".join(reversed(picked))}) + "\n")
    return path


def run_config(model: Path | str, data: Path, output_dir: Path, method: str = "lora", **training: Any) -> dict[str, Any]:
    """A small run config as a mapping: 30 steps of batch 4, logging every 5 steps."""
    options = {
        "lora": {"r": 8, "alpha": 16, "dropout": 0.0},
        "qlora": {"r": 8, "alpha": 16, "dropout": 0.0},
        "full": {},
    }.get(method, {})
    return {
        "model": str(model),
        "method": method,
        "method_options": options,
        "output_dir": str(output_dir),
        "seed": 0,
        "data": {"train": str(data), "max_seq_len": 64},
        "training": {
            "max_steps": 30,
            "learning_rate": 5e-3 if method != "full" else 2e-3,
            "lr_scheduler": "constant",
            "batch_size": 4,
            "gradient_accumulation": 1,
            "logging_steps": 5,
            "save_steps": 15,
            **training,
        },
    }


def write_config(path: Path, raw: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def logged_losses(run_dir: Path) -> list[float]:
    """Training losses from a run directory's metrics.jsonl, in step order."""
    lines = (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [entry["loss"] for entry in map(json.loads, lines) if "loss" in entry]


def siblings(path: Path) -> list[str]:
    """Names next to ``path`` that belong to it (the run itself and any staging/old directory)."""
    return sorted(p.name for p in path.parent.iterdir() if p.name.lstrip(".").startswith(path.name))


def tiny_trainable(model_dir: Path, method: str, segments: bool = False) -> Any:
    """The tiny model in float32, in training mode: ``full``, or ``lora`` (r=4 on q/v, no dropout, B drawn so that A
    gets gradients); ``segments`` switches it to ft's per-example attention."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="sdpa", dtype=torch.float32)
    if segments:
        from ftcore.models.attention import use_segment_attention

        use_segment_attention(model)
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"]))
        for name, param in model.named_parameters():  # LoRA B starts at zero: give it values so A gets gradients
            if "lora_B" in name:
                torch.nn.init.normal_(param, std=0.02)
    return model.train()
