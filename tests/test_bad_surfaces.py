"""The bad-input corpus of the newer surfaces: GRPO rewards, preference options and data, checkpoint saves that
meet a full disk, unsafe checkpoint files, the Hub out of reach, interruptions before training and output paths.

Every case goes through ft's entry point and asserts the one ``error:`` line, the exit status, that it is never
``error: unexpected`` and that nothing was lost or left half-written. Cases that need no new process run
in-process (``ftcore.cli.main`` with the output captured), which keeps the corpus fast; only the cases that need a
signal or a fresh process environment (the Hub endpoint is read at import) start ``python -m ftcore``.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from data_helpers import write_jsonl
from train_helpers import run_config, write_config, write_reversal_text

# ----------------------------------------------------------------------------- rewards the runs below name


def nan_reward(prompts, completions, examples):
    return [float("nan")] * len(completions)


def inf_reward(prompts, completions, examples):
    return [1.0] * (len(completions) - 1) + [float("inf")]


def text_reward(prompts, completions, examples):
    return ["0.5"] * len(completions)


def none_reward(prompts, completions, examples):
    return [None] * len(completions)


def short_reward(prompts, completions, examples):
    return [1.0]


def not_a_list_reward(prompts, completions, examples):
    return 3.0


def exiting_reward(prompts, completions, examples):
    sys.exit(3)


# ----------------------------------------------------------------------------- helpers


def ft(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """Run ``ft -q ARGV`` in this process; returns the exit status and stderr."""
    from ftcore.cli import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        main(["-q", *argv])
    return exited.value.code or 0, capsys.readouterr().err


def one_line(status: int, stderr: str, expected_status: int = 1) -> str:
    """The single ``error:`` line of a failed command (never ``unexpected``, never a traceback)."""
    assert status == expected_status, stderr[-3000:]
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, stderr[-3000:]
    assert "Traceback" not in stderr and "error: unexpected" not in stderr, stderr[-3000:]
    return errors[0]


def nothing_left(directory: Path) -> None:
    """No run, staging directory or lock left in ``directory``."""
    assert sorted(p.name for p in directory.iterdir()) == [], sorted(p.name for p in directory.iterdir())


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_plugins) -> Path:
    """Runs of this test cache under ``tmp_path``; the directory this module's rewards are imported from."""
    monkeypatch.setenv("FT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    (tmp_path / "out").mkdir()
    return tmp_path


def lora_config(root: Path, model: Path, **training: Any) -> Path:
    data = write_reversal_text(root / "train.jsonl", n=16)
    raw = run_config(model, data, root / "out" / "run", **{"max_steps": 2, "logging_steps": 1, **training})
    return write_config(root / "config.yaml", raw)


def grpo_config(root: Path, model: Path, rewards: list[dict[str, Any]], **options: Any) -> Path:
    prompts = write_jsonl(root / "prompts.jsonl", [{"prompt": f"Count: {w}"} for w in ("one two", "red", "cat dog")] * 2)
    raw = {
        "model": str(model), "method": "grpo", "output_dir": str(root / "out" / "run"),
        "method_options": {"num_generations": 4, "max_completion_length": 4, "rewards": rewards, **options},
        "data": {"train": str(prompts)},
        "training": {"max_steps": 1, "batch_size": 4, "logging_steps": 1},
    }
    return write_config(root / "grpo.yaml", raw)


def dpo_config(root: Path, model: Path, rows: list[dict[str, Any]], **options: Any) -> Path:
    raw = {
        "model": str(model), "method": "dpo", "output_dir": str(root / "out" / "run"), "method_options": options,
        "data": {"train": str(write_jsonl(root / "pairs.jsonl", rows)), "max_seq_len": 32},
        "training": {"max_steps": 1, "batch_size": 2},
    }
    return write_config(root / "dpo.yaml", raw)


PAIRS = [{"prompt": f"Opposite of {a}:", "chosen": f" {b}", "rejected": f" {a}"}
         for a, b in [("up", "down"), ("hot", "cold"), ("big", "small"), ("old", "new")]]


# ----------------------------------------------------------------------------- method options at validate


@pytest.mark.parametrize(("method", "options", "expected"), [
    ("dpo", {"loss_type": "sigmod"}, "method_options.loss_type: Input should be"),
    ("dpo", {"loss_type": "sigmod"}, "(got 'sigmod') (did you mean 'sigmoid'?)"),
    ("grpo", {"loss_type": "dapoo", "rewards": [{"name": "length", "target": 4}]}, "(did you mean 'dapo'?)"),
    ("grpo", {"scale_rewards": "groups", "rewards": [{"name": "length", "target": 4}]},
     "method_options.scale_rewards: Input should be 'group', 'batch' or 'none' (got 'groups') (did you mean 'group'?)"),
])
def test_trainer_validated_options_fail_at_config_validate(capsys, env, tiny_model_dir, method, options, expected):
    raw = {"model": str(tiny_model_dir), "method": method, "method_options": options,
           "data": {"train": str(write_jsonl(env / "d.jsonl", PAIRS))}}
    config = write_config(env / "c.yaml", raw)
    for argv in (["config", "validate", str(config)], ["train", "-c", str(config), "-o", str(env / "out" / "run")]):
        line = one_line(*ft(capsys, *argv), expected_status=2)
        assert line.startswith("error: invalid config: ") and ": method_options." in line and expected in line, line
    nothing_left(env / "out")


def test_loss_type_choices_are_the_installed_trl_ones() -> None:
    """ft's lists of TRL's DPO and GRPO losses match what the installed TRL documents."""
    import dataclasses
    import typing

    from ftpref.options import DpoLoss
    from ftrl.options import GrpoLoss
    from trl import DPOConfig, GRPOConfig

    for config_class, literal in ((DPOConfig, DpoLoss), (GRPOConfig, GrpoLoss)):
        field = next(f for f in dataclasses.fields(config_class) if f.name == "loss_type")
        documented = field.metadata["help"].split("Possible values are" if config_class is DPOConfig else
                                                  "Supported values are")[1].split(". ")[0]
        named = set(re.findall(r"'([a-z_]+)'", documented))
        assert named == set(typing.get_args(literal)), (config_class.__name__, named)


# ----------------------------------------------------------------------------- output locations


def test_train_output_under_a_regular_file(capsys, env, tiny_model_dir):
    blocker = env / "out" / "afile"
    blocker.write_text("keep me")
    target = blocker / "run"
    line = one_line(*ft(capsys, "train", "-c", str(lora_config(env, tiny_model_dir)), "-o", str(target)))
    assert line == (f"error: output directory {target} cannot be created: {blocker} is a file, not a directory; "
                    "choose another --output-dir")
    assert blocker.read_text() == "keep me" and sorted(p.name for p in (env / "out").iterdir()) == ["afile"]


def fake_adapter_run(root: Path, model: Path) -> Path:
    """A run directory as ``ft train`` leaves it, as far as ``ft merge`` reads before loading anything."""
    run = root / "adapter-run"
    run.mkdir()
    (run / "ft_run.json").write_text(json.dumps({"method": "lora", "output": "adapter", "base_model": str(model)}))
    (run / "ft_config.yaml").write_text(f"model: {model}\nmethod: lora\ndata: {{train: train.jsonl}}\n")
    return run


@pytest.mark.parametrize("where", ["under-file", "is-file"])
def test_merge_output_checked_before_loading(capsys, env, tiny_model_dir, where):
    blocker = env / "out" / "afile"
    blocker.write_text("keep me")
    target = blocker / "merged" if where == "under-file" else blocker
    line = one_line(*ft(capsys, "merge", str(fake_adapter_run(env, tiny_model_dir)), "--output", str(target)))
    expected = (f"--output {target} cannot be created: {blocker} is a file, not a directory" if where == "under-file"
                else f"--output {target} is a file; give a directory")
    assert line.startswith(f"error: {expected}"), line
    assert blocker.read_text() == "keep me" and sorted(p.name for p in (env / "out").iterdir()) == ["afile"]


def test_evaluate_output_checked_before_loading(capsys, env, tiny_model_dir):
    blocker = env / "out" / "afile"
    blocker.write_text("keep me")
    data = write_jsonl(env / "eval.jsonl", [{"prompt": "a", "completion": "b"}])
    target = blocker / "eval"
    # A model path that does not exist would fail later: the output is checked first, before any loading.
    line = one_line(*ft(capsys, "evaluate", str(env / "no-model"), "--data", str(data), "--output", str(target)))
    assert line.startswith(f"error: --output {target} cannot be created: {blocker} is a file"), line


def test_an_empty_staging_directory_is_not_an_unfinished_run(capsys, env, tiny_model_dir):
    """What a run stopped before its first checkpoint may leave: --resume has nothing to continue, and a new
    run is not told to --resume it (it replaces it)."""
    from ftcore.artifacts.rundir import begin, plan_run

    staging = env / "out" / ".run.tmp-partial"
    staging.mkdir()
    (staging / ".ft-staging").touch()
    config = lora_config(env, tiny_model_dir)
    line = one_line(*ft(capsys, "train", "-c", str(config), "--resume"))
    assert line.startswith("error: nothing to resume: no checkpoint in"), line
    (staging / "ft_config.yaml").write_text("model: old\n")  # what the stopped run had recorded
    plan = plan_run(env / "out" / "run")
    assert plan.resume_from is None and not plan.overwrite
    begin(plan)  # what ft train does next: a new staging directory, nothing of the stopped run's
    assert sorted(p.name for p in staging.iterdir()) == [".ft-staging"]


# ----------------------------------------------------------------------------- GRPO rewards


@pytest.mark.parametrize(("function", "said"), [
    ("nan_reward", "returned nan for completion 1 of 4 (not a finite number)"),
    ("inf_reward", "returned inf for completion 4 of 4 (not a finite number)"),
    ("text_reward", "returned '0.5' for completion 1 of 4 (a str, not a number)"),
    ("none_reward", "returned None for completion 1 of 4 (a NoneType, not a number)"),
    ("short_reward", "returned 1 scores for 4 completions"),
    ("not_a_list_reward", "returned 3.0, not a list of 4 numbers"),
    ("exiting_reward", "failed on the completion of prompt"),
])
def test_a_python_reward_that_misbehaves_is_named(capsys, env, tiny_model_dir, function, said):
    config = grpo_config(env, tiny_model_dir, [{"name": "python", "function": f"test_bad_surfaces:{function}"}])
    line = one_line(*ft(capsys, "train", "-c", str(config)))
    assert line.startswith(f"error: reward 'python' (function test_bad_surfaces:{function}, plugin ftrl) {said}"), line
    if function == "exiting_reward":
        assert "SystemExit(3) (the reward called sys.exit)" in line
    nothing_left(env / "out")


REWARD_PLUGIN = """
    import sys

    from ftcore import RewardSpec, hookimpl

    @hookimpl
    def register_rewards():
        return [RewardSpec("strings", "returns text"), RewardSpec("quits", "calls sys.exit")]

    @hookimpl
    def compute_reward(name, prompts, completions, examples, options):
        if name == "quits":
            sys.exit(5)
        return ["high"] * len(completions)
"""


@pytest.mark.parametrize(("reward", "said"), [
    ("strings", "reward 'strings' (plugin ft-badreward) returned 'high' for completion 1 of 4 (a str, not a number)"),
    ("quits", "reward 'quits' (plugin ft-badreward) failed on the completion of prompt"),
])
def test_a_reward_plugin_that_misbehaves_is_named(capsys, env, tiny_model_dir, fake_site, monkeypatch, reward, said):
    import importlib

    from ftcore.contract.plugins import reset_plugin_manager

    fake_site.add("ft-badreward", REWARD_PLUGIN)
    monkeypatch.syspath_prepend(str(fake_site))
    importlib.invalidate_caches()
    reset_plugin_manager()
    config = grpo_config(env, tiny_model_dir, [{"name": reward}])
    line = one_line(*ft(capsys, "train", "-c", str(config)))
    assert line.startswith(f"error: {said}"), line
    if reward == "quits":
        assert "SystemExit(5) (the reward called sys.exit)" in line
    nothing_left(env / "out")


# ----------------------------------------------------------------------------- preference data


def test_dpo_with_every_prompt_over_max_seq_len(capsys, env, tiny_model_dir):
    long_prompt = "Opposite of " + " ".join(["very"] * 60) + " up:"
    rows = [{"prompt": long_prompt, "chosen": " down", "rejected": " up"}] * 4
    line = one_line(*ft(capsys, "train", "-c", str(dpo_config(env, tiny_model_dir, rows))))
    assert "max_seq_len" in line and "num_samples" not in line, line
    nothing_left(env / "out")


# ----------------------------------------------------------------------------- checkpoints


class Payload:
    """Unpickling this would create the file named: the test checks it never exists."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_resume_refuses_an_optimizer_file_with_a_pickle_payload(capsys, env, tiny_model_dir):
    config = lora_config(env, tiny_model_dir, max_steps=2, save_steps=1)
    status, stderr = ft(capsys, "train", "-c", str(config), "--set", "training.max_steps=1")
    assert status == 0, stderr[-3000:]
    checkpoint = env / "out" / "run" / "checkpoints" / "checkpoint-1"
    marker = env / "payload-ran"
    with (checkpoint / "optimizer.pt").open("wb") as handle:
        pickle.dump({"state": Payload(str(marker))}, handle)
    before = sorted(p.name for p in checkpoint.iterdir())
    line = one_line(*ft(capsys, "train", "-c", str(config), "--resume"))
    assert line.startswith(f"error: --resume: a state file of {checkpoint} (optimizer.pt, "), line
    assert "holds pickled objects beyond tensors, which ft refuses to load" in line
    assert "weights_only" not in capsys.readouterr().err + line and not marker.exists()
    # The finished run is back where it was, with its checkpoint as it was.
    assert sorted(p.name for p in (env / "out").iterdir()) == ["run"]
    assert (env / "out" / "run" / "ft_run.json").is_file() and sorted(p.name for p in checkpoint.iterdir()) == before


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 1 MiB tmpfs mounted for the test (root only), unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small filesystem needs root")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_full_while_saving_a_checkpoint(capsys, env, tiny_model_dir, small_disk):
    """The first checkpoint does not fit: the documented disk-full line, and nothing left on the small disk."""
    config = lora_config(env, tiny_model_dir, max_steps=2, save_steps=1)
    target = small_disk / "run"
    # Room for the run's first files and the checkpoint's adapter, not for its optimizer state: torch's writer
    # (inline_container.cc: "unexpected pos", no errno) is what meets the full disk.
    free = shutil.disk_usage(small_disk).free
    (small_disk / "filler").write_bytes(b"\0" * (free - 200 * 1024))
    line = one_line(*ft(capsys, "train", "-c", str(config), "-o", str(target)))
    assert line.startswith(f"error: disk full while writing {small_disk}/.run.tmp-partial"), line
    assert "GiB free there); free some space and run the same ft train command again" in line
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]


# ----------------------------------------------------------------------------- in a process of their own


def run_ft(*argv: str, env: dict[str, str] | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    full = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "ftcore", "-q", *argv], capture_output=True, text=True, env=full,
                          timeout=timeout)


@pytest.mark.slow
def test_an_unreachable_hub_is_one_line(tmp_path):
    """A Hub id with the endpoint out of reach (huggingface_hub retries for about 20 s before giving up)."""
    (tmp_path / "out").mkdir()
    data = str(write_reversal_text(tmp_path / "t.jsonl", n=8))
    raw = {"model": "ft-tests/no-such-model", "data": {"train": data}, "output_dir": str(tmp_path / "out" / "run"),
           "training": {"max_steps": 1}}
    config = write_config(tmp_path / "c.yaml", raw)
    env = {"HF_HUB_OFFLINE": "0", "HF_DATASETS_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0",
           "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path / "hf"), "FT_CACHE_DIR": str(tmp_path / "c"),
           "HF_HUB_ETAG_TIMEOUT": "2", "HF_HUB_DOWNLOAD_TIMEOUT": "2"}
    result = run_ft("train", "-c", str(config), env=env, timeout=300)
    line = one_line(result.returncode, result.stderr)
    assert "ft-tests/no-such-model" in line and "http://127.0.0.1:9" in line, line
    nothing_left(tmp_path / "out")
