"""``method_options.bits: 8``: LoRA on an LLM.int8 base trains, reports 8 bits to the estimate, and merges into
the dequantized int8 weights it trained against."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def test_8bit_base_trains_and_merges(tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from ftcore.config.schema import build_config
    from ftcore.contract.plugins import get_registry
    from ftcore.jobs.merge import merge_run
    from ftcore.jobs.train import run_training

    monkeypatch.setenv("FT_CACHE_DIR", str(tmp_path / "cache"))
    torch.set_num_threads(1)
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"text": "one two three four five six " * 3}) + "\n" for _ in range(16)))
    config = build_config({
        "model": str(tiny_model_dir), "method": "qlora", "output_dir": str(tmp_path / "run"),
        "method_options": {"bits": 8, "r": 8, "alpha": 16},
        "data": {"train": str(data), "max_seq_len": 32},
        "training": {"max_steps": 12, "learning_rate": 1e-2, "lr_scheduler": "constant", "batch_size": 4,
                     "logging_steps": 1, "save_steps": 12},
    })
    spec = get_registry().method("qlora")
    assert spec.bits_for(spec.options(**config.method_options)) == 8
    result = run_training(config)
    losses = [e["loss"] for e in map(json.loads, (result.run_dir / "metrics.jsonl").read_text().splitlines()) if "loss" in e]
    assert len(losses) == 12
    from ftcore.testing.suites import answer_loss

    # It learned, judged on fixed rows (untrained vs reloaded), not the logged curve: 1.23 measured on an AMD EPYC.
    drop = answer_loss(tiny_model_dir, result.run_dir) - answer_loss(result.run_dir, result.run_dir)
    assert drop > 0.4, drop

    ids = torch.tensor([[5, 17, 42, 99, 7, 300, 12, 64]])
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, quantization_config=BitsAndBytesConfig(load_in_8bit=True),
                                                dtype=torch.float32, device_map={"": "cpu"})
    with torch.no_grad():
        untuned = base.eval()(input_ids=ids).logits.float()
        expected = PeftModel.from_pretrained(base, str(result.run_dir)).eval()(input_ids=ids).logits.float()

    out = merge_run(result.run_dir, tmp_path / "merged")
    assert "quantization_config" not in json.loads((out / "config.json").read_text())
    merged = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    with torch.no_grad():
        got = merged(input_ids=ids).logits
    # The int8 layers multiply in float16, so agreement is to float16 rounding: at most 0.035 apart on an AMD EPYC
    # (2e-2 failed there), while the adapter moves the logits by up to 0.89. Held to 0.15, far from both.
    assert (got - expected).abs().max() < 0.15, (got - expected).abs().max()
    assert (got - untuned).abs().max() > 0.5, "the merged model lost the adapter"
