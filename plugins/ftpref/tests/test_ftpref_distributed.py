"""DPO in several processes: ``ft train --nproc 2`` (torchrun, 2-rank DDP over gloo on CPU) trains the same
first step as one process with the same global batch, and saves one adapter with no reference copy."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_ftpref import pairs, write_jsonl

from ftcore.testing.suites import logged_losses


@pytest.mark.slow
def test_dpo_in_two_processes_matches_one(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "pairs.jsonl", pairs())
    env = {**os.environ, "FT_CACHE_DIR": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}

    def train(name: str, batch: int, *launch: str) -> Path:
        config = tmp_path / f"{name}.yaml"
        config.write_text(
            f"model: {tiny_model_dir}\nmethod: dpo\nmethod_options: {{beta: 0.5, r: 8, alpha: 16, dropout: 0.0}}\n"
            f"output_dir: {tmp_path / name}\ndata: {{train: {data}, max_seq_len: 32}}\n"
            f"training: {{max_steps: 4, logging_steps: 1, learning_rate: 0.01, batch_size: {batch}, "
            "lr_scheduler: constant}\n")
        done = subprocess.run([sys.executable, "-m", "ftcore", "train", "--config", str(config), *launch], env=env,
                              cwd=tmp_path, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
        return tmp_path / name

    single = train("single", 4)
    double = train("double", 2, "--nproc", "2")
    one, two = logged_losses(single), logged_losses(double)
    assert len(two) == 4 and all(loss == loss for loss in two)
    # Rank 0 takes examples 0, 2 and rank 1 takes 1, 3 of the same seeded order: together one process's batch of 4.
    assert two[0] == pytest.approx(one[0], abs=1e-4)
    assert (double / "adapter_model.safetensors").is_file()
    assert not list(double.rglob("ref")), "a reference adapter was saved"
