"""Run directories for the tests that read runs (merge, generate, evaluate, benchmark).

:func:`make_adapter_run` builds one by hand: a real adapter saved with plain ``peft`` on the tiny model,
its tokenizer, an ``ft_config.yaml`` and an ``ft_run.json`` manifest laid out as docs/architecture.md
describes, without running ``ft train``. LoRA B matrices start random (``init_lora_weights=False``) so
merging changes the weights. :func:`trained_run` trains one through ``ftcore.jobs.train`` on a task the tiny
model starts to learn, with an eval split.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from data_helpers import write_jsonl

WORDS = ["red", "green", "blue", "yellow", "black", "white", "cat", "dog", "bird", "fish", "tree", "river"]


def make_adapter_run(run_dir: Path, base_dir: Path, *, method: str = "lora", dora: bool = False, eval_scores: dict | None = None,
                     hub_id: str | None = None) -> Path:
    """Save a LoRA (or DoRA) adapter of ``base_dir`` plus tokenizer, config and manifest into ``run_dir``.

    ``hub_id``: the Hub id the manifest records for the base (as a run records one it could tell).
    """
    import peft
    import torch
    import transformers
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False,
                      use_dora=dora, task_type="CAUSAL_LM")
    model = get_peft_model(model, lora)
    if dora:  # DoRA's magnitude starts at the weight norm; move it so the merge has something to fold in
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "lora_magnitude_vector" in name:
                    param.mul_(1.1)
    run_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(run_dir)
    AutoTokenizer.from_pretrained(base_dir).save_pretrained(run_dir)
    config = {
        "model": str(base_dir),
        "method": method,
        "method_options": {"r": 4, "alpha": 8},
        "output_dir": str(run_dir),
        "seed": 42,
        "data": {"train": "tatsu-lab/alpaca", "max_seq_len": 64},
        "training": {"max_steps": 3, "learning_rate": 1e-3},
    }
    (run_dir / "ft_config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    manifest = {
        "status": "complete",
        "method": method,
        "base_model": str(base_dir),
        "base_model_provenance": {"hub_id": hub_id, "revision": None, "commit": None, "found_by": "model id" if hub_id else None},
        "output": "adapter",
        "versions": {"ftcore": "0.1.0", "torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__},
        "data": {"fingerprint": "0123456789abcdef", "stats": {"kept": 12, "truncated": 1}},
        "seed": 42,
    }
    (run_dir / "ft_run.json").write_text(json.dumps(manifest, indent=2))
    (run_dir / "metrics.jsonl").write_text('{"step": 1, "loss": 6.1}\n{"step": 3, "loss": 5.7}\n')
    (run_dir / "checkpoints" / "checkpoint-2").mkdir(parents=True)
    (run_dir / "checkpoints" / "checkpoint-2" / "trainer_state.json").write_text("{}")
    if eval_scores is not None:
        (run_dir / "eval").mkdir()
        (run_dir / "eval" / "eval.json").write_text(json.dumps(eval_scores))
    return run_dir


def repeat_task(words_a: list[str], words_b: list[str]) -> list[dict]:
    """A task the tiny model can start to learn in a few steps: repeat two words."""
    return [{"prompt": f"Repeat: {a} {b}\nAnswer:", "completion": f" {a} {b}"} for a in words_a for b in words_b]


def trained_run(tmp_path_factory: pytest.TempPathFactory, base_dir: Path) -> Path:
    """A LoRA run of the tiny model trained through ``ftcore.jobs.train`` (once per test process), with an eval split."""
    from ftcore.config.schema import load_config
    from ftcore.jobs.train import run_training

    root = tmp_path_factory.getbasetemp() / "ft-eval-run"
    run_dir = root / "run"
    if (run_dir / "ft_run.json").is_file():
        return run_dir
    root.mkdir(exist_ok=True)
    train = write_jsonl(root / "train.jsonl", repeat_task(WORDS, WORDS[:4]))
    config = load_config(
        None,
        model=str(base_dir), method="lora", output_dir=str(run_dir), method_options={"r": 8, "alpha": 16},
        data={"train": str(train), "eval_ratio": 0.1, "cache_dir": str(root / "cache")},
        # fp32: its eval loss is compared with ft evaluate's perplexity (fp32) to 1e-4; "auto" would evaluate
        # under bf16 autocast on CPUs with bf16 instructions.
        training={"max_steps": 20, "learning_rate": 1e-2, "lr_scheduler": "constant", "batch_size": 8,
                  "gradient_accumulation": 1, "logging_steps": 5, "save_steps": 1000, "precision": "fp32"},
    )
    run_training(config)
    return run_dir
