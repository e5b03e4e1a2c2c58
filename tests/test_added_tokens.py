"""``added_tokens`` and ``special_tokens``: the vocabulary grows, the new rows train with an adapter, and the
run reloads (generate, evaluate) and merges at its grown size."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from train_helpers import run_config, write_config

from ftcore.config.schema import build_config
from ftcore.jobs.train import run_training
from ftcore.testing.process import run_ft

NEW = ["<tool>", "</tool>"]


def _tool_data(path: Path, n: int = 24) -> Path:
    words = ["red", "dog", "fish", "tree", "one", "cat"]
    with path.open("w", encoding="utf-8") as handle:
        for i in range(n):
            word = words[i % len(words)]
            handle.write(json.dumps({"prompt": f"call {word}", "completion": f"<tool>{word}</tool>"}) + "\n")
    return path


@pytest.mark.usefixtures("single_thread")
def test_added_tokens_train_reload_and_merge(tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ftcore.jobs.merge import merge_run
    from ftcore.models.loading import load_for_inference

    monkeypatch.setenv("FT_CACHE_DIR", str(tmp_path / "cache"))
    base_vocab = len(AutoTokenizer.from_pretrained(tiny_model_dir))
    raw = run_config(tiny_model_dir, _tool_data(tmp_path / "train.jsonl"), tmp_path / "run", max_steps=8,
                     logging_steps=1, save_steps=8)
    raw |= {"added_tokens": NEW, "special_tokens": {"pad_token": "<|pad|>"}}
    result = run_training(build_config(raw))

    manifest = result.manifest
    assert manifest["vocab_size"] == base_vocab + 3
    assert manifest["added_token_ids"] == list(range(base_vocab, base_vocab + 3))
    tokenizer = AutoTokenizer.from_pretrained(result.run_dir)
    assert tokenizer.pad_token == "<|pad|>" and tokenizer.pad_token_id == base_vocab
    # Each added token is one id, never split.
    assert tokenizer("<tool>red</tool>", add_special_tokens=False).input_ids[0] == tokenizer.convert_tokens_to_ids("<tool>")

    # The new rows trained: the adapter holds their deltas for the input embeddings and the untied output layer.
    tensors = load_file(result.run_dir / "adapter_model.safetensors")
    deltas = {name: t for name, t in tensors.items() if name.endswith("trainable_tokens_delta")}
    assert {name.split(".")[-3] for name in deltas} == {"embed_tokens", "lm_head"}
    assert all(t.shape[0] == 3 and t.abs().sum() > 0 for t in deltas.values())

    # Generation loads the base, grows it to the run's vocabulary and applies the adapter.
    model, tok = load_for_inference(result.run_dir)
    ids = torch.tensor([tok("call dog", add_special_tokens=False).input_ids])
    with torch.no_grad():
        adapted = model(input_ids=ids).logits[0, -1]
    assert adapted.shape[-1] == base_vocab + 3

    merged_dir = merge_run(result.run_dir, tmp_path / "merged")
    merged = AutoModelForCausalLM.from_pretrained(merged_dir)
    assert merged.get_input_embeddings().num_embeddings == base_vocab + 3
    with torch.no_grad():
        assert torch.allclose(merged(input_ids=ids).logits[0, -1], adapted, atol=1e-4)


def test_token_settings_are_validated(tmp_path: Path):
    cfg = write_config(tmp_path / "c.yaml", {"model": "m", "data": {"train": "d.jsonl"},
                                             "special_tokens": {"pad_tokn": "<pad>"}, "added_tokens": ["<a>", "<a>"]})
    proc = run_ft("config", "validate", str(cfg))
    assert proc.returncode == 2
    assert "special_tokens.pad_tokn" in proc.stderr and "pad_token" in proc.stderr
    assert "tokens listed twice: <a>" in proc.stderr
