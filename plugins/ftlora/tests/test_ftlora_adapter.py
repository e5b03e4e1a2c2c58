"""ftlora's LoRA functions on the tiny model: target discovery, attaching, and what a trained adapter becomes."""

from __future__ import annotations

from pathlib import Path

import pytest
from ftlora import LoraOptions, attach_lora, find_target_modules, load_lora, lora_tensor_shapes, merge_lora

from ftcore.errors import ModelError

IDS = [[5, 17, 42, 99, 7, 300, 12, 64]]


def tiny(model_dir: Path):
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)


def logits(model):
    import torch

    with torch.no_grad():
        return model(torch.tensor(IDS)).logits


def saved_adapter(tiny_model_dir: Path, path: Path) -> Path:
    """A LoRA adapter with random B matrices (so it changes outputs), saved as peft saves it."""
    import torch

    torch.manual_seed(0)
    model = attach_lora(tiny(tiny_model_dir), LoraOptions(r=4, target_modules=["q_proj", "v_proj", "down_proj"]))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    model.save_pretrained(path)
    return path


def test_targets_are_every_linear_layer_but_the_head(tiny_model_dir: Path) -> None:
    assert find_target_modules(tiny(tiny_model_dir)) == [
        "down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj",
    ]


def test_targets_include_gpt2_conv1d_projections() -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64, n_positions=32))
    assert find_target_modules(model) == ["c_attn", "c_fc", "c_proj"]


def test_lora_on_auto_targets_adapts_no_head(tiny_model_dir: Path) -> None:
    model = attach_lora(tiny(tiny_model_dir), LoraOptions(r=2))
    adapted = {name for name, _ in model.named_modules() if name.endswith("lora_A")}
    assert adapted and not any("lm_head" in name for name in adapted)
    assert len(adapted) == 2 * 7  # two layers, seven projections each


def test_unknown_target_module_is_one_line_naming_the_real_ones(tiny_model_dir: Path) -> None:
    with pytest.raises(ModelError, match=r"target_modules: \['qkv'\] do not match .*q_proj"):
        attach_lora(tiny(tiny_model_dir), LoraOptions(target_modules=["qkv"]))


def test_tensor_shapes_name_the_tensors_a_checkpoint_holds(tiny_model_dir: Path, tmp_path: Path) -> None:
    from safetensors import safe_open

    model = attach_lora(tiny(tiny_model_dir), LoraOptions(r=4, target_modules=["q_proj", "v_proj"]))
    model.save_pretrained(tmp_path)
    with safe_open(str(tmp_path / "adapter_model.safetensors"), framework="pt") as handle:
        saved = {name: list(handle.get_slice(name).get_shape()) for name in handle.keys()}  # noqa: SIM118
    assert lora_tensor_shapes(model) == saved


def test_loaded_and_merged_adapters_compute_the_same(tiny_model_dir: Path, tmp_path: Path) -> None:
    import torch

    adapter = saved_adapter(tiny_model_dir, tmp_path / "adapter")
    loaded = logits(load_lora(tiny(tiny_model_dir), adapter).eval())
    merged = merge_lora(tiny(tiny_model_dir), adapter).eval()
    assert not any("lora" in name for name, _ in merged.named_parameters())
    torch.testing.assert_close(logits(merged), loaded, atol=1e-5, rtol=1e-4)
    assert (logits(tiny(tiny_model_dir)) - loaded).abs().max() > 1e-2  # the adapter does change outputs


def test_adapter_for_another_model_is_one_line(tiny_model_dir: Path, tmp_path: Path) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    adapter = saved_adapter(tiny_model_dir, tmp_path / "adapter")
    other = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64, n_positions=32))
    with pytest.raises(ModelError, match="cannot apply the adapter to its base model"):
        load_lora(other, adapter)


def test_entry_module_imports_nothing_heavy() -> None:
    import subprocess
    import sys

    code = ("import sys, ftlora\n"
            "heavy = [m for m in ('torch', 'transformers', 'peft') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
