"""``ft merge``: the merged standalone model computes what base + adapter computed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from adapter_runs import make_adapter_run

IDS = [[5, 17, 42, 99, 7, 300, 12, 64], [1, 2, 3, 4, 5, 6, 7, 8]]


def logits(model) -> object:
    import torch

    with torch.no_grad():
        return model(torch.tensor(IDS)).logits


def adapter_logits(run_dir: Path, base):
    """Logits of base + adapter, the way peft runs it before any merge."""
    from peft import PeftModel

    return logits(PeftModel.from_pretrained(base, str(run_dir)).eval())


def load_plain(path: Path):
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


@pytest.mark.parametrize("dora", [False, True], ids=["lora", "dora"])
def test_merged_logits_equal_adapter_logits(tmp_path: Path, tiny_model_dir: Path, dora: bool) -> None:
    import torch

    from ftcore.jobs.merge import merge_run

    run = make_adapter_run(tmp_path / "run", tiny_model_dir, dora=dora)
    shard = "100KB" if dora else "5GB"  # the tiny model is ~0.6 MB in float32: several shards at 100KB
    out = merge_run(run, tmp_path / "merged", max_shard_size=shard)
    expected = adapter_logits(run, load_plain(tiny_model_dir))
    merged = load_plain(out)
    assert not any("lora" in name for name, _ in merged.named_parameters())
    torch.testing.assert_close(logits(merged), expected, atol=1e-5, rtol=1e-4)
    assert (logits(load_plain(tiny_model_dir)) - expected).abs().max() > 1e-2  # the adapter does change outputs
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"} <= names
    assert not any(n.startswith("adapter_") for n in names)
    if dora:
        index = json.loads((out / "model.safetensors.index.json").read_text())
        assert len(set(index["weight_map"].values())) > 1
    else:
        assert "model.safetensors" in names
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(out).chat_template is not None


def test_merge_cli_and_dtype(tmp_path: Path, tiny_model_dir: Path) -> None:
    import torch
    from click.testing import CliRunner

    from ftcore.cli import cli

    run = make_adapter_run(tmp_path / "run", tiny_model_dir)
    result = CliRunner().invoke(cli, ["merge", str(run), "--output", str(tmp_path / "m16"), "--dtype", "bfloat16"])
    assert result.exit_code == 0, result.output
    assert "Merged model written to" in result.output
    merged = load_plain(tmp_path / "m16")
    config = json.loads((tmp_path / "m16" / "config.json").read_text())
    assert config.get("dtype", config.get("torch_dtype")) == "bfloat16"
    expected = adapter_logits(run, load_plain(tiny_model_dir))
    torch.testing.assert_close(logits(merged), expected, atol=5e-2, rtol=5e-2)  # bf16 rounding only
    again = CliRunner().invoke(cli, ["merge", str(run), "--output", str(tmp_path / "m16")])
    assert again.exit_code != 0 and "not empty" in str(again.exception)


def test_run_without_adapter_says_so(tmp_path: Path, tiny_model_dir: Path) -> None:
    import shutil
    import subprocess
    import sys

    full = tmp_path / "full-run"
    shutil.copytree(tiny_model_dir, full)
    (full / "ft_run.json").write_text(json.dumps({"status": "complete", "method": "full", "output": "model",
                                                  "base_model": str(tiny_model_dir)}))
    result = subprocess.run([sys.executable, "-m", "ftcore", "merge", str(full), "-o", str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "has no adapter to merge" in result.stderr and "full model weights" in result.stderr
    assert not (tmp_path / "out").exists()
