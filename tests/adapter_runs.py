"""Hand-built run directories for the merge / upload / generate tests.

A real adapter saved with plain ``peft`` on the tiny model, its tokenizer, an ``ft_config.yaml`` and an
``ft_run.json`` manifest laid out as docs/architecture.md describes, without running ``ft train``.
LoRA B matrices start random (``init_lora_weights=False``) so merging changes the weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml


def make_adapter_run(run_dir: Path, base_dir: Path, *, method: str = "lora", dora: bool = False, eval_scores: dict | None = None) -> Path:
    """Save a LoRA (or DoRA) adapter of ``base_dir`` plus tokenizer, config and manifest into ``run_dir``."""
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
