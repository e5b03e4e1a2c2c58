"""Interruption and non-finite losses.

- SIGTERM / SIGINT during `ft train` (a real subprocess): a checkpoint is saved at the end of the step,
  the staging directory holds a manifest with status `interrupted`, the final run directory does not
  exist, the process exits 128+N with one line saying how to resume, and (SIGTERM) `--resume` reaches
  the same losses as an uninterrupted run. (SIGKILL then `--resume`: tests/test_resume.py.)
- NaN/inf loss: a real divergence stops with a TrainingError naming the step; `nan_policy: skip` leaves
  the weights of a poisoned step untouched and trains on.
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from train_helpers import logged_losses, run_config, siblings, write_config, write_reversal_text

from ftcore.config.schema import build_config
from ftcore.errors import TrainingError
from ftcore.jobs.train import run_training

STEPS = 12


def train_until(process: subprocess.Popen, step: int) -> list[str]:
    """Read the child's log until it reports ``step``; return the lines read."""
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith(f"step {step}/"):
            return lines
    output = "".join(lines)
    pytest.fail(f"ft train ended before step {step}:\n{output}")


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> tuple[Path, list[float]]:
    """Data and the logged losses of an uninterrupted run (in-process, same seed)."""
    root = tmp_path_factory.mktemp("reference")
    data = write_reversal_text(root / "train.jsonl", n=32)
    output = root / "run"
    run_training(build_config(run_config(tiny_model_dir, data, output, **_settings())))
    return data, logged_losses(output)


def _settings() -> dict:
    # save_steps beyond max_steps: the only checkpoint is the one the signal asks for.
    return {"max_steps": STEPS, "save_steps": 1000, "logging_steps": 1, "lr_scheduler": "linear", "warmup_steps": 2}


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_saves_checkpoint_and_resume_matches(signum: int, tmp_path: Path, tiny_model_dir: Path, reference) -> None:
    data, expected = reference
    output = tmp_path / "run"
    config = write_config(tmp_path / "c.yaml", run_config(tiny_model_dir, data, output, **_settings()))
    env = {"FT_CACHE_DIR": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "ftcore", "train", "-c", str(config)], env={**_os_env(), **env},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    train_until(process, 3)
    process.send_signal(signum)
    rest = process.stdout.read()
    assert process.wait(timeout=300) == 128 + signum, rest
    errors = [line for line in rest.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in rest, rest
    assert f"training interrupted by {signal.Signals(signum).name} at step" in errors[0]
    assert "run the same ft train command with --resume" in errors[0]

    # The final run directory never looks complete; the staging directory holds what resume needs.
    staging = tmp_path / ".run.tmp-partial"
    assert not output.exists() and siblings(output) == [".run.tmp-partial"]
    manifest = json.loads((staging / "ft_run.json").read_text())
    stopped = manifest["global_step"]
    assert manifest["status"] == "interrupted" and 3 <= stopped < STEPS
    assert [p.name for p in (staging / "checkpoints").iterdir()] == [f"checkpoint-{stopped}"]
    assert str(staging / "checkpoints" / f"checkpoint-{stopped}") in errors[0]
    if signum == signal.SIGINT:
        return  # the resume path does not depend on the signal; SIGTERM runs it below

    resumed = subprocess.run([sys.executable, "-m", "ftcore", "train", "-c", str(config), "--resume"],
                             env={**_os_env(), **env}, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert siblings(output) == ["run"]
    final = json.loads((output / "ft_run.json").read_text())
    assert final["status"] == "complete" and final["global_step"] == STEPS
    losses = logged_losses(output)
    assert len(losses) == STEPS
    assert losses[-1] == pytest.approx(expected[-1], abs=1e-4)
    assert losses == pytest.approx(expected, abs=1e-4)


def _os_env() -> dict[str, str]:
    import os

    return dict(os.environ)


# ----------------------------------------------------------------------------- NaN / inf


def test_divergence_stops_with_the_step(tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An absurd learning rate without clipping blows the weights up after step 1; step 2's loss is NaN."""
    monkeypatch.setenv("FT_CACHE_DIR", str(tmp_path / "cache"))
    data = write_reversal_text(tmp_path / "train.jsonl", n=16)
    output = tmp_path / "run"
    raw = run_config(tiny_model_dir, data, output, "full", max_steps=6, learning_rate=1e30, max_grad_norm=0)
    with pytest.raises(TrainingError) as info:
        run_training(build_config(raw))
    assert str(info.value).startswith("training loss is nan at step 2: ")
    assert "training.nan_policy: skip" in str(info.value)
    assert siblings(output) == []


POISON = "<|im_start|>"


def _poison_plugin():
    """A LoRA method whose model turns one token's embedding into inf: a batch holding it gives a NaN loss."""
    from ftlora import LoraOptions, attach_lora

    from ftcore import MethodSpec, hookimpl

    class PoisonOptions(LoraOptions):
        poison_id: int

    class PoisonPlugin:
        @hookimpl
        def register_methods(self):
            return [MethodSpec("poisoned", "LoRA with a poisoned token (test)", options=PoisonOptions)]

        @hookimpl
        def setup_peft(self, model, method, config, options):
            if method != "poisoned":
                return None

            def poison(_module, args, output):
                return output.masked_fill((args[0] == options.poison_id).unsqueeze(-1), math.inf)

            model.get_input_embeddings().register_forward_hook(poison)
            return attach_lora(model, options, config)

    return PoisonPlugin()


def _poisoned_run(tmp_path: Path, tiny_model_dir: Path, policy: str) -> dict:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    data = write_reversal_text(tmp_path / "train.jsonl", n=16)
    lines = data.read_text().splitlines()
    lines[5] = json.dumps({"text": f"Reverse: {POISON} red -> red {POISON}"})
    data.write_text("\n".join(lines) + "\n")
    raw = run_config(tiny_model_dir, data, tmp_path / policy, max_steps=6, save_steps=1, save_total_limit=None,
                     logging_steps=1, nan_policy=policy)
    raw["method"] = "poisoned"
    raw["method_options"] = {"r": 4, "alpha": 8, "dropout": 0.0, "poison_id": tokenizer.convert_tokens_to_ids(POISON)}
    return raw


def test_nan_policy_stop_and_skip(tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch, fresh_plugins) -> None:
    import torch
    from safetensors.torch import load_file

    from ftcore.contract.plugins import register_plugin, unregister_plugin

    monkeypatch.setenv("FT_CACHE_DIR", str(tmp_path / "cache"))
    register_plugin(_poison_plugin(), "poison-test")
    try:
        with pytest.raises(TrainingError) as info:
            run_training(build_config(_poisoned_run(tmp_path, tiny_model_dir, "stop")))
        message = str(info.value)
        assert message.startswith("training loss is nan at step ")
        bad = int(message.split("at step ")[1].split(":")[0])
        assert 1 <= bad <= 4  # 16 examples in batches of 4: the poisoned one is in the first epoch

        result = run_training(build_config(_poisoned_run(tmp_path, tiny_model_dir, "skip")))
    finally:
        unregister_plugin("poison-test")

    history = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    skipped = [e["step"] for e in history if e.get("update_skipped")]
    assert bad in skipped and result.manifest["global_step"] == 6
    checkpoints = result.run_dir / "checkpoints"

    def adapter(step: int) -> dict:
        if step == 0:
            return None
        return load_file(str(checkpoints / f"checkpoint-{step}" / "adapter_model.safetensors"))

    after, before = adapter(bad), adapter(bad - 1)
    if before is not None:  # the skipped step left every adapter weight exactly as it was
        assert all(torch.equal(after[k], before[k]) for k in after)
    following = adapter(next(step for step in range(bad + 1, 7) if step not in skipped))
    assert any(not torch.equal(following[k], after[k]) for k in after)  # training went on
    assert all(torch.isfinite(t).all() for t in following.values())
