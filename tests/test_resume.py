"""Resume: a run killed with SIGKILL after a checkpoint continues with `--resume` to the same final loss."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from train_helpers import logged_losses, run_config, siblings, write_config, write_reversal_text

from ftcore.config.schema import build_config
from ftcore.jobs.train import run_training

STEPS = 20

pytestmark = pytest.mark.usefixtures("single_thread")



def start_ft(*args: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ftcore", *args], env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def kill_after_checkpoint(process: subprocess.Popen, checkpoint: Path, timeout: float = 300) -> None:
    """SIGKILL ``process`` as soon as ``checkpoint`` is complete (its trainer_state.json is written last)."""
    from ftcore.artifacts.rundir import checkpoint_complete

    deadline = time.time() + timeout
    while not checkpoint_complete(checkpoint):
        if process.poll() is not None:
            pytest.fail(f"ft train ended before {checkpoint.name}:\n{process.stdout.read()}")
        if time.time() > deadline:
            process.kill()
            pytest.fail(f"no {checkpoint.name} within {timeout}s")
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()


@pytest.mark.parametrize("method", ["lora", "qlora", "full"])
def test_sigkill_then_resume_matches_uninterrupted(method: str, tmp_path: Path, tiny_model_dir: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"FT_CACHE_DIR": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    monkeypatch.setenv("FT_CACHE_DIR", env["FT_CACHE_DIR"])
    data = write_reversal_text(tmp_path / "train.jsonl")
    settings = {"max_steps": STEPS, "save_steps": 5, "logging_steps": 1, "lr_scheduler": "linear", "warmup_steps": 3}
    if method != "full":
        settings["learning_rate"] = 1e-2

    reference = tmp_path / "reference"
    run_training(build_config(run_config(tiny_model_dir, data, reference, method, **settings)))
    expected = logged_losses(reference)

    output = tmp_path / "run"
    config = write_config(tmp_path / "c.yaml", run_config(tiny_model_dir, data, output, method, **settings))
    process = start_ft("train", "-c", str(config), env=env)
    kill_after_checkpoint(process, tmp_path / ".run.tmp-partial" / "checkpoints" / "checkpoint-5")
    # SIGKILL leaves the run lock behind; its process is gone, so the resumed run takes it over.
    assert not output.exists() and siblings(output) == [".run.ft-lock", ".run.tmp-partial"]

    # The resumed run is in-process: the subprocess above already shows the CLI; this saves an import of torch.
    run_training(build_config(run_config(tiny_model_dir, data, output, method, **settings)), resume=True)
    assert siblings(output) == ["run"]

    manifest = json.loads((output / "ft_run.json").read_text())
    assert manifest["resumed_from"] == "checkpoints/checkpoint-5" and manifest["global_step"] == STEPS
    losses = logged_losses(output)
    assert len(losses) == len(expected) == STEPS
    assert losses[-1] == pytest.approx(expected[-1], abs=1e-4)
    assert losses == pytest.approx(expected, abs=1e-4)


def test_checkpoint_cut_short_while_saving_is_skipped(tmp_path):
    from ftcore.artifacts.rundir import _checkpoint_at, latest_checkpoint
    from ftcore.errors import RunDirError

    checkpoints = tmp_path / "checkpoints"
    for step, state in [(5, '{"global_step": 5}'), (10, '{"global_st'), (15, None)]:
        folder = checkpoints / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        if state is not None:
            (folder / "trainer_state.json").write_text(state)
    assert latest_checkpoint(checkpoints) == checkpoints / "checkpoint-5"
    with pytest.raises(RunDirError, match="cut short"):
        _checkpoint_at(checkpoints / "checkpoint-10")
