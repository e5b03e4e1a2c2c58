"""ftcore.models: LoRA target discovery and where a model source points."""

from __future__ import annotations

from pathlib import Path

import pytest

from ftcore.errors import ModelError
from ftcore.models import find_target_modules, resolve_source


def test_targets_are_every_linear_layer_but_the_head(tiny_model_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert find_target_modules(model) == ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]


def test_targets_include_gpt2_conv1d_projections() -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64, n_positions=32))
    assert find_target_modules(model) == ["c_attn", "c_fc", "c_proj"]


def test_lora_on_auto_targets_adapts_no_head(tiny_model_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    from ftcore.adapters import LoraOptions, attach_lora

    model = attach_lora(AutoModelForCausalLM.from_pretrained(tiny_model_dir), LoraOptions(r=2))
    adapted = {name for name, _ in model.named_modules() if name.endswith("lora_A")}
    assert adapted and not any("lm_head" in name for name in adapted)
    assert len(adapted) == 2 * 7  # two layers, seven projections each


@pytest.mark.parametrize("source", ["./models/none", "/abs/missing", "a/b/c", "x.gguf"])
def test_missing_local_paths_fail_with_their_name(source: str) -> None:
    with pytest.raises(ModelError, match=f"model path does not exist: {source}"):
        resolve_source(source)


def test_hub_ids_pass_through_and_local_paths_resolve(tiny_model_dir: Path) -> None:
    assert resolve_source("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert resolve_source(str(tiny_model_dir)) == str(tiny_model_dir.resolve())
