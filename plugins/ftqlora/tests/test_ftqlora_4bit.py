"""ftqlora beyond the contract suite: merging into the dequantized 4-bit base, FSDP storage, a clear stop without bitsandbytes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

IDS = [[5, 17, 42, 99, 7, 300, 12, 64], [1, 2, 3, 4, 5, 6, 7, 8]]


def logits(model):
    import torch

    with torch.no_grad():
        return model(torch.tensor(IDS)).logits


def load_plain(path: Path):
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def make_qlora_run(run_dir: Path, base_dir: Path) -> Path:
    """A finished ``qlora`` run directory by hand: a LoRA adapter (random B, so it changes outputs), tokenizer,
    ``ft_config.yaml`` and ``ft_run.json``."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False,
                      task_type="CAUSAL_LM")
    get_peft_model(model, lora).save_pretrained(run_dir)
    AutoTokenizer.from_pretrained(base_dir).save_pretrained(run_dir)
    config = {"model": str(base_dir), "method": "qlora", "method_options": {"r": 4, "alpha": 8},
              "output_dir": str(run_dir), "data": {"train": "train.jsonl"}}
    (run_dir / "ft_config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    manifest = {"status": "complete", "method": "qlora", "output": "adapter", "base_model": str(base_dir)}
    (run_dir / "ft_run.json").write_text(json.dumps(manifest))
    return run_dir


def adapter_on_4bit_base_logits(run_dir: Path, base_dir: Path):
    """Logits of the adapter on the NF4 base it was trained on, the way peft runs it before any merge."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=torch.float32)
    base = AutoModelForCausalLM.from_pretrained(base_dir, quantization_config=quant, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, str(run_dir))
    # bitsandbytes repacks 4-bit weights for a bf16 CPU kernel on the first eval-mode forward; train
    # mode (no dropout in these models) keeps the NF4 matmul the adapter was trained with.
    model.train(True)
    return logits(model)


def test_qlora_run_merges_into_dequantized_base(tmp_path: Path, tiny_model_dir: Path, fresh_plugins: None) -> None:
    import torch
    from peft import PeftModel

    from ftcore.jobs.merge import merge_run

    run = make_qlora_run(tmp_path / "run", tiny_model_dir)
    out = merge_run(run, tmp_path / "merged")
    expected = adapter_on_4bit_base_logits(run, tiny_model_dir)
    merged = load_plain(out)
    assert "quantization_config" not in json.loads((out / "config.json").read_text())
    assert all(p.dtype == torch.float32 for p in merged.parameters())
    torch.testing.assert_close(logits(merged), expected, atol=1e-5, rtol=1e-4)
    # Merging into the original float weights instead would be measurably off: the adapter learned on NF4.
    float_merge = logits(PeftModel.from_pretrained(load_plain(tiny_model_dir), str(run)).train(True))
    assert (float_merge - expected).abs().max() > 1e-3


def run_config(tmp_path: Path, model_dir: Path, **training) -> object:
    from ftcore.config.schema import build_config

    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"text": f"example {i}"}) + "\n" for i in range(8)))
    return build_config({"model": str(model_dir), "method": "qlora", "output_dir": str(tmp_path / "run"),
                         "data": {"train": str(data), "max_seq_len": 32}, "training": {"max_steps": 2, **training}})


def test_fsdp_stores_the_4bit_base_in_the_parameter_dtype(tmp_path: Path, tiny_model_dir: Path) -> None:
    import torch
    from ftqlora import QLoraOptions
    from ftqlora.quant import quantization_kwargs

    options = QLoraOptions(compute_dtype="bfloat16")
    plain = quantization_kwargs(options, run_config(tmp_path, tiny_model_dir))
    assert plain["quantization_config"].bnb_4bit_quant_storage == torch.uint8  # no FSDP: left alone
    sharded = quantization_kwargs(options, run_config(tmp_path, tiny_model_dir, fsdp={}))
    assert sharded["quantization_config"].bnb_4bit_quant_storage == torch.bfloat16


def test_without_bitsandbytes_qlora_stops_before_loading(tmp_path: Path, tiny_model_dir: Path,
                                                        monkeypatch: pytest.MonkeyPatch, fresh_plugins: None) -> None:
    """Where bitsandbytes is missing, qlora says so and what to use instead, before any model is read."""
    import importlib.util

    from ftcore.errors import FtError
    from ftcore.jobs.train import run_training

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "bitsandbytes" else real_find_spec(name, *a))

    def load_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the 4-bit check")

    monkeypatch.setattr("ftcore.models.loading.load_model", load_model)
    monkeypatch.setenv("FT_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(FtError, match="method qlora needs bitsandbytes.*use method lora"):
        run_training(run_config(tmp_path, tiny_model_dir))
    assert not (tmp_path / "run").exists() and not list(tmp_path.glob(".run*"))
