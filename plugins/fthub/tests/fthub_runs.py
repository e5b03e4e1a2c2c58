"""Run directories for fthub's tests, laid out as docs/concepts/run-directory.md describes.

:func:`make_run` writes what ``ft train`` leaves (weights, tokenizer, ``ft_config.yaml``, ``ft_run.json``,
``metrics.jsonl``, a checkpoint) without training: a LoRA adapter saved with plain ``peft`` on the tiny
model (``adapter=True``; peft must be installed), or the tiny model's own weights as a full fine-tune's.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import yaml

#: The loss values the run "logged"; the manifest's ``train_loss_mean`` is the trainer's mean over all steps.
LOGGED = [{"step": 1, "loss": 6.1}, {"step": 3, "loss": 5.7}]
TRAIN_LOSS_MEAN = 5.95


def make_run(run_dir: Path, base_dir: Path, *, adapter: bool = True, eval_scores: dict | None = None,
             hub_id: str | None = None, data: str = "tatsu-lab/alpaca") -> Path:
    """A run directory of ``base_dir`` (its Hub id ``hub_id`` when given) trained on ``data``."""
    import torch
    import transformers

    run_dir.mkdir(parents=True, exist_ok=True)
    if adapter:
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM

        torch.manual_seed(1)
        model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
        lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False,
                          task_type="CAUSAL_LM")
        get_peft_model(model, lora).save_pretrained(run_dir)
        (run_dir / "README.md").unlink(missing_ok=True)
    for source in base_dir.iterdir():
        if adapter and source.name in ("config.json", "generation_config.json", "model.safetensors"):
            continue
        shutil.copy2(source, run_dir / source.name)
    config = {
        "model": str(base_dir), "method": "lora" if adapter else "full",
        "method_options": {"r": 4, "alpha": 8} if adapter else {}, "output_dir": str(run_dir), "seed": 42,
        "data": {"train": data, "max_seq_len": 64, "cache_dir": str(run_dir.parent / "private-cache")},
        "training": {"max_steps": 3, "learning_rate": 1e-3},
    }
    (run_dir / "ft_config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    manifest: dict[str, Any] = {
        "format": 1, "status": "complete", "method": config["method"], "output": "adapter" if adapter else "model",
        "base_model": str(base_dir),
        "base_model_provenance": {"hub_id": hub_id, "revision": None, "commit": None,
                                  "found_by": "model id" if hub_id else None},
        "global_step": 3, "train_loss": LOGGED[-1]["loss"], "train_loss_mean": TRAIN_LOSS_MEAN,
        "logs": str(run_dir / "logs"),
        "versions": {"ftcore": "0.1.0", "torch": torch.__version__, "transformers": transformers.__version__,
                     **({"peft": __import__("peft").__version__} if adapter else {})},
        "data": {"fingerprint": "0123456789abcdef",
                 "stats": {"kept": 12, "truncated": 1, "fingerprint": "0123456789abcdef"}},
        "seed": 42,
    }
    (run_dir / "ft_run.json").write_text(json.dumps(manifest, indent=2))
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in LOGGED))
    (run_dir / "checkpoints" / "checkpoint-2").mkdir(parents=True)
    (run_dir / "checkpoints" / "checkpoint-2" / "trainer_state.json").write_text("{}")
    if eval_scores is not None:
        (run_dir / "eval").mkdir()
        (run_dir / "eval" / "eval.json").write_text(json.dumps(eval_scores))
    return run_dir


def add_gguf_export(run_dir: Path, gguf_bytes: int = 4096) -> list[str]:
    """The three files ``ft export`` leaves under ``export/`` (its parity report names the run by absolute path,
    as ft export writes it); returns their run-relative names."""
    export = run_dir / "export"
    export.mkdir(exist_ok=True)
    stem = f"{run_dir.name}-f16"
    (export / f"{stem}.gguf").write_bytes(b"GGUF" + bytes(gguf_bytes - 4))
    (export / f"{stem}.Modelfile").write_text(f"FROM ./{stem}.gguf\n")
    (export / f"{stem}.parity.json").write_text(json.dumps({"file": f"{stem}.gguf", "run": str(run_dir.resolve()),
                                                            "passed": True, "max_abs_logit_diff": 0.001}, indent=2))
    return [f"export/{stem}.gguf", f"export/{stem}.Modelfile", f"export/{stem}.parity.json"]
