"""`ft train` end to end on the tiny Llama, for each of the lora, qlora and full methods.

Each test trains for real (30 steps), then checks that the run learned its data, that the run directory holds
exactly the documented files, and that the saved weights reload with plain peft / transformers and
differ from the base model.
"""

from __future__ import annotations

import json
import math
from importlib import metadata
from pathlib import Path

import pytest
from train_helpers import logged_losses, run_config, siblings, write_reversal_text

from ftcore.config.schema import build_config
from ftcore.jobs.train import run_training
from ftcore.testing.suites import answer_loss

#: Least drop of the answer loss per method (about a third of the drop measured below, in the test).
MIN_DROP = {"lora": 0.25, "qlora": 0.25, "full": 1.5}
RUN_FILES = {"ft_config.yaml", "ft_run.json", "metrics.jsonl", "loss.png", "checkpoints"}
OUTPUT_FILES = {
    "adapter": {"adapter_config.json", "adapter_model.safetensors"},
    "model": {"config.json", "generation_config.json", "model.safetensors"},
}


@pytest.fixture(scope="module")
def tokenizer_files(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> set[str]:
    """The files ``save_pretrained`` writes for the tiny tokenizer (what a run directory must hold)."""
    from transformers import AutoTokenizer

    out = tmp_path_factory.mktemp("tok")
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(out)
    return {p.name for p in out.iterdir()}

pytestmark = pytest.mark.usefixtures("single_thread")



def base_config_rope(model_dir: Path) -> float:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(model_dir).rope_parameters["rope_theta"]


def logits(model, ids):
    import torch

    with torch.no_grad():
        return model(input_ids=ids).logits.float()


def probe_ids():
    import torch

    return torch.tensor([[5, 17, 42, 99, 7, 3, 250, 11]])


@pytest.mark.parametrize("method", ["lora", "qlora", "full"])
def test_method_trains_saves_and_reloads(method: str, tmp_path: Path, tiny_model_dir: Path, tokenizer_files: set[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    monkeypatch.setenv("FT_CACHE_DIR", str(tmp_path / "cache"))
    data = write_reversal_text(tmp_path / "train.jsonl")
    output = tmp_path / "run"
    result = run_training(build_config(run_config(tiny_model_dir, data, output, method)))

    assert result.run_dir == output.resolve()
    losses = logged_losses(output)
    assert len(losses) == 6 and all(math.isfinite(v) for v in losses), losses
    # Learned, judged on fixed rows (untrained model vs the reloaded run), not on the noisy logged curve.
    # On an AMD EPYC (seeds 0/1/2): answer loss 6.28 -> 5.58 for lora and qlora (drop 0.69-0.70), -> 2.23-2.26 for
    # full (drop 4.0); the old check (last logged loss 0.1 below the first) rode on a noisy 6-point curve.
    drop = answer_loss(tiny_model_dir, output) - answer_loss(output, output)
    assert drop > MIN_DROP[method], (method, drop)

    kind = "model" if method == "full" else "adapter"
    assert {p.name for p in output.iterdir()} == RUN_FILES | OUTPUT_FILES[kind] | tokenizer_files
    assert (output / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # every method's run has its curve
    assert sorted(p.name for p in (output / "checkpoints").iterdir()) == ["checkpoint-15", "checkpoint-30"]
    assert siblings(output) == ["run"]  # no staging directory left behind

    manifest = json.loads((output / "ft_run.json").read_text())
    assert manifest["status"] == "complete" and manifest["method"] == method and manifest["output"] == kind
    assert manifest["global_step"] == 30 and manifest["tokens_seen"] > 0
    assert manifest["train_loss"] == pytest.approx(losses[-1])
    assert manifest["versions"]["torch"] == metadata.version("torch")
    assert manifest["data"]["fingerprint"]
    assert 0 < manifest["trainable_params"] <= manifest["total_params"]
    # Readable by transformers 4.x too (ftcore.artifacts.portable): a class 4.x knows, and the RoPE base where 4.x reads it.
    assert json.loads((output / "tokenizer_config.json").read_text())["tokenizer_class"] != "TokenizersBackend"
    if kind == "model":
        assert json.loads((output / "config.json").read_text())["rope_theta"] == base_config_rope(tiny_model_dir)

    ids = probe_ids()
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    base_logits = logits(base, ids)
    if kind == "adapter":
        from peft import PeftModel

        tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), str(output))
    else:
        tuned = AutoModelForCausalLM.from_pretrained(output)
    tuned_logits = logits(tuned, ids)
    assert (tuned_logits - base_logits).abs().max() > 1e-2

    if method in ("lora", "full"):
        from ftcore.models.loading import load_for_inference

        model, tokenizer = load_for_inference(output)
        assert torch.allclose(logits(model, ids), tuned_logits, atol=1e-5)
        assert tokenizer.chat_template


def test_full_freezes_embeddings_and_layers(tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from safetensors.torch import load_file

    monkeypatch.setenv("FT_CACHE_DIR", str(tmp_path / "cache"))
    data = write_reversal_text(tmp_path / "train.jsonl", n=16)
    raw = run_config(tiny_model_dir, data, tmp_path / "run", "full", max_steps=3, save_steps=100)
    raw["method_options"] = {"freeze_embeddings": True, "freeze_layers": 1}
    run_training(build_config(raw))

    before = load_file(tiny_model_dir / "model.safetensors")
    after = load_file(tmp_path / "run" / "model.safetensors")
    changed = {name for name in before if not before[name].equal(after[name])}
    assert "model.embed_tokens.weight" not in changed
    assert not any(name.startswith("model.layers.0.") for name in changed)
    assert any(name.startswith("model.layers.1.") for name in changed)
