"""The RLHF loop through ``ft train``: a reward model (ftpref's ``rm``, a sequence classifier ft loads directly) on
preference pairs, then GRPO scored by it (ftrl's ``reward_model``); text commands refuse the reward model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest


def write_pairs(path: Path, repeats: int = 4) -> Path:
    rows = [{"prompt": f"Count: {w} ", "chosen": "1 2 3", "rejected": "no"} for w in ("one", "red", "cat", "sun")]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows * repeats), encoding="utf-8")
    return path


def train_rm(model_dir: Path, tmp_path: Path) -> Any:
    from ftcore.config.schema import build_config
    from ftcore.jobs.train import run_training

    pairs = write_pairs(tmp_path / "pairs.jsonl")
    config = build_config({
        "model": str(model_dir), "method": "rm", "output_dir": str(tmp_path / "rm"),
        "data": {"train": str(pairs), "eval": str(write_pairs(tmp_path / "held_out.jsonl", 1)), "max_seq_len": 32,
                 "cache_dir": str(tmp_path / "cache")},
        "training": {"max_steps": 3, "batch_size": 4, "learning_rate": 1e-3, "logging_steps": 1},
    })
    return run_training(config)


@pytest.fixture(scope="module")
def rm_run(tiny_model_dir, tmp_path_factory):
    from ftcore.contract.plugins import reset_plugin_manager

    reset_plugin_manager()
    return train_rm(tiny_model_dir, tmp_path_factory.mktemp("rm")).run_dir


def test_rm_trains_a_sequence_classifier(rm_run):
    manifest = json.loads((rm_run / "ft_run.json").read_text(encoding="utf-8"))
    assert manifest["model_kind"] == "sequence_classification" and manifest["method"] == "rm"
    config = json.loads((rm_run / "config.json").read_text(encoding="utf-8"))
    assert config["architectures"] == ["LlamaForSequenceClassification"] and len(config["id2label"]) == 1
    history = [json.loads(line) for line in (rm_run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    accuracy = [e["eval_accuracy"] for e in history if "eval_accuracy" in e]
    assert accuracy and 0.0 <= accuracy[-1] <= 1.0
    assert [e["loss"] for e in history if "loss" in e]


@pytest.mark.parametrize("command", [["generate", "RUN", "--prompt", "hi"], ["merge", "RUN", "--output", "merged"],
                                     ["benchmark", "--tuned", "RUN"]])
def test_text_commands_refuse_the_reward_model_in_one_line(rm_run, command, tmp_path):
    import subprocess
    import sys

    args = [sys.executable, "-m", "ftcore", *(str(rm_run) if word == "RUN" else word for word in command)]
    result = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "is a sequence_classification model (method 'rm')" in lines[0], result.stderr
    assert not (tmp_path / "merged").exists()


def test_grpo_trains_with_the_reward_model(rm_run, tiny_model_dir, tmp_path, fresh_plugins):
    from test_ftrl import rewards_logged, write_prompts

    from ftcore.config.schema import build_config
    from ftcore.jobs.train import run_training

    config = build_config({
        "model": str(tiny_model_dir), "method": "grpo", "output_dir": str(tmp_path / "grpo"),
        "method_options": {"num_generations": 4, "max_completion_length": 4,
                           "rewards": [{"name": "reward_model", "path": str(rm_run)}]},
        "data": {"train": str(write_prompts(tmp_path / "p.jsonl", 1)), "cache_dir": str(tmp_path / "cache")},
        "training": {"max_steps": 2, "batch_size": 4, "logging_steps": 1},
    })
    result = run_training(config)
    rewards = rewards_logged(result.run_dir, "rewards/reward_model/mean")
    assert len(rewards) == 2 and all(isinstance(r, float) for r in rewards)
    assert (result.run_dir / "adapter_model.safetensors").is_file()

    # The last link of the loop: the GRPO run against its base, through ft benchmark.
    import json

    from ftcore.testing.process import run_ft

    held_out = tmp_path / "held_out.jsonl"
    held_out.write_text("".join(json.dumps({"prompt": f"Count: {w}", "completion": " 1"}) + "\n"
                                for w in ("red", "blue", "green")))
    report = tmp_path / "report"
    benchmark = run_ft("benchmark", "--tuned", str(result.run_dir), "--data", str(held_out), "--metrics",
                       "exact_match,perplexity", "--max-new-tokens", "4", "--output", str(report))
    assert benchmark.returncode == 0, benchmark.stderr[-3000:]
    scores = {row["score"] for row in json.loads((report / "report.json").read_text())["comparison"]}
    assert {"exact_match", "perplexity"} <= scores


def test_reward_model_path_must_be_a_reward_model(tiny_model_dir, tmp_path, fresh_plugins):
    from ftcore.config.schema import build_config, validate_method_options
    from ftcore.errors import ConfigError

    config = build_config({"model": str(tiny_model_dir), "method": "grpo", "data": {"train": "x.jsonl"},
                           "method_options": {"rewards": [{"name": "reward_model", "path": str(tiny_model_dir)}]}})
    with pytest.raises(ConfigError, match=r"method_options.rewards.0.path: .*not a reward model"):
        validate_method_options(config)
