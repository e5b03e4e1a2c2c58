"""``ft data preview`` offline with a local tokenizer, and the instruction method's plugin wiring."""

from __future__ import annotations

import json

from data_helpers import write_records


def test_preview_brackets_trained_spans_and_shows_lengths(tmp_path, tiny_tokenizer_dir):
    from click.testing import CliRunner

    from ftcore.cli import cli

    rows = [{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yes."},
                          {"role": "user", "content": "Two?"}, {"role": "assistant", "content": "No."}]}]
    data = write_records(tmp_path, "m", rows, "jsonl")
    config = tmp_path / "cfg.yaml"
    config.write_text(json.dumps({"model": str(tiny_tokenizer_dir), "method": "instruction", "data": {
        "train": str(data), "cache_dir": str(tmp_path / "cache"), "packing": True}}))
    result = CliRunner().invoke(cli, ["data", "preview", "--config", str(config), "-n", "1"])
    assert result.exit_code == 0, result.output
    out = result.output
    # Not a terminal: masked text plain, each assistant turn (with its end marker) inside [[ ]].
    assert "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n[[Yes.<|im_end|>\n]]<|im_start|>user\nTwo?" in out
    assert "[[No.<|im_end|>\n]]" in out
    assert "1 examples read: 1 kept" in out
    assert "length min" in out and "#" in out

    colored = CliRunner().invoke(cli, ["data", "preview", "--config", str(config), "--color"])
    assert "\x1b[32mYes.<|im_end|>\n\x1b[0m" in colored.output and "[[" not in colored.output


def test_instruction_method_is_registered_with_chat_and_attaches_lora(tiny_model_dir, fresh_plugins):
    import torch
    from transformers import AutoModelForCausalLM

    from ftcore.config import build_config, validate_run_config
    from ftcore.plugins import get_registry

    registry = get_registry()
    spec = registry.method("instruction")
    assert spec.chat is True and spec.output == "adapter"
    assert {"alpaca", "sharegpt", "messages"} <= set(registry.formats)
    config = build_config({"model": str(tiny_model_dir), "method": "instruction",
                           "method_options": {"r": 4, "target_modules": ["q_proj", "v_proj"]},
                           "data": {"train": "unused.jsonl"}})
    _, options = validate_run_config(config)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    model = registry.call("setup_peft", "method", "instruction", model=base, method="instruction", config=config,
                          options=options)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
    assert model.peft_config["default"].r == 4
