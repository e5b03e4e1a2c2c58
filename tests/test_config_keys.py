"""The keys people bring from other tools: validated, and arriving in TrainingArguments, the model load or the data."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest
from train_helpers import run_config, write_reversal_text

from ftcore.config.schema import build_config
from ftcore.errors import ConfigError
from ftcore.run import trackers

BASE: dict[str, Any] = {"model": "m", "data": {"train": "t.jsonl"}}


def problems(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        build_config(raw)
    return info.value.problems


def test_new_training_keys_reach_training_arguments(tmp_path: Path) -> None:
    from ftcore.run.arguments import training_arguments

    config = build_config({**BASE, "data": {"train": "t.jsonl", "eval_ratio": 0.2}, "output_dir": "out/my-run",
                           "training": {
        "adam_beta1": 0.8, "adam_beta2": 0.95, "adam_epsilon": 1e-6, "neftune_noise_alpha": 5,
        "lr_scheduler": "cosine_with_min_lr", "lr_scheduler_kwargs": {"min_lr_rate": 0.1}, "project": "proj",
        "eval_steps": 5, "save_steps": 10, "early_stopping_patience": 2, "tf32": False,
        "trainer_args": {"logging_first_step": True, "eval_accumulation_steps": 2}}})
    args = training_arguments(config, tmp_path, has_eval=True)
    assert (args.adam_beta1, args.adam_beta2, args.adam_epsilon) == (0.8, 0.95, 1e-6)
    assert args.neftune_noise_alpha == 5 and args.lr_scheduler_kwargs == {"min_lr_rate": 0.1}
    assert args.load_best_model_at_end and args.metric_for_best_model == "eval_loss" and not args.greater_is_better
    assert args.run_name == "my-run" and args.project == "proj" and args.tf32 is False
    assert args.logging_first_step is True and args.eval_accumulation_steps == 2


def test_trainer_args_names_are_checked() -> None:
    found = problems({**BASE, "training": {"trainer_args": {
        "learning_rate": 1e-4, "logging_frist_step": True, "label_names": ["x"]}}})
    assert found == [
        "training.trainer_args: 'learning_rate' is set through ft's own key training.learning_rate",
        "training.trainer_args: 'logging_frist_step' is not a transformers.TrainingArguments field "
        "(did you mean 'logging_first_step'?)",
        "training.trainer_args: 'label_names' cannot be overridden: ft's collator names the labels",
    ]


def test_best_model_needs_eval_steps_and_eval_data() -> None:
    assert problems({**BASE, "training": {"early_stopping_patience": 2}}) == [
        "training: load_best_model_at_end and early_stopping_patience need eval_steps (and eval data)"]
    assert "save_steps (15) must be a multiple of eval_steps (10)" in problems(
        {**BASE, "training": {"load_best_model_at_end": True, "eval_steps": 10, "save_steps": 15}})[0]
    assert "need eval data" in problems({**BASE, "training": {"load_best_model_at_end": True, "eval_steps": 5,
                                                              "save_steps": 10}})[0]


def test_keys_in_the_wrong_section_and_peer_names_point_to_ft_keys() -> None:
    found = problems({"model": "m", "learning_rate": 1e-4, "train_on_inputs": True, "micro_batch_size": 2,
                      "data": {"train": "t", "sequence_len": 64, "cutoff_len": 64},
                      "training": {"lr": 1e-4, "train_on_inputs": True, "seed": 3}})
    assert sorted(found) == sorted([
        "learning_rate: unknown key (did you mean training.learning_rate? it belongs in the training section)",
        "train_on_inputs: unknown key (did you mean data.train_on_inputs? it belongs in the data section)",
        "micro_batch_size: unknown key (ft calls it training.batch_size)",
        "data.sequence_len: unknown key (ft calls it data.max_seq_len)",
        "data.cutoff_len: unknown key (ft calls it data.max_seq_len)",
        "training.lr: unknown key (ft calls it training.learning_rate)",
        "training.train_on_inputs: unknown key (did you mean data.train_on_inputs? it belongs in the data section)",
        "training.seed: unknown key (did you mean seed? it belongs in the top level)",
    ])


def test_peer_names_in_method_options_and_settings_point_to_ft() -> None:
    from ftcore.config.schema import validate_run_config

    assert problems({**BASE, "load_in_4bit": True}) == ["load_in_4bit: unknown key (in ft: method: qlora)"]
    with pytest.raises(ConfigError) as info:
        validate_run_config(build_config({**BASE, "method": "lora", "method_options": {"lora_r": 4, "lora_alpha": 8}}))
    assert info.value.problems == ["method_options.lora_r: unknown key (ft calls it method_options.r)",
                                   "method_options.lora_alpha: unknown key (ft calls it method_options.alpha)"]


def test_several_problems_print_one_per_line(tmp_path: Path) -> None:
    from ftcore.testing.process import run_ft

    config = tmp_path / "c.yaml"
    config.write_text("model: m\nlearning_rate: 0.1\ndata:\n  train: t.jsonl\n  cutoff_len: 8\n")
    result = run_ft("config", "validate", str(config))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: invalid config: {config}: 2 problems:",
        "  - data.cutoff_len: unknown key (ft calls it data.max_seq_len)",
        "  - learning_rate: unknown key (did you mean training.learning_rate? it belongs in the training section)",
    ]


@pytest.mark.usefixtures("single_thread")
def test_keys_arrive_in_a_real_run(tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Early stopping, best model, NEFTune, attention kernel, max_samples and the escape hatch in one short run."""
    from ftcore.jobs import train

    monkeypatch.setenv("FT_CACHE_DIR", str(tmp_path / "cache"))
    seen: dict[str, Any] = {}
    build = train.build_trainer
    monkeypatch.setattr(train, "build_trainer", lambda run: seen.setdefault("trainer", build(run)))
    data = write_reversal_text(tmp_path / "train.jsonl", n=40)
    raw = run_config(tiny_model_dir, data, tmp_path / "run", max_steps=4, eval_steps=2, save_steps=2,
                     early_stopping_patience=3, neftune_noise_alpha=5.0, run_name="keys",
                     trainer_args={"logging_first_step": True})
    raw["attn_implementation"] = "eager"
    raw["data"].update(max_samples=20, eval_ratio=0.25)
    result = train.run_training(build_config(raw))
    trainer = seen["trainer"]
    assert trainer.args.neftune_noise_alpha == 5.0 and trainer.args.load_best_model_at_end
    assert any(type(c).__name__ == "EarlyStoppingCallback" for c in trainer.callback_handler.callbacks)
    assert trainer.model.config._attn_implementation == "eager"
    assert result.manifest["data"]["stats"]["examples"] == 20
    assert result.manifest["run_name"] == "keys" and result.manifest["trainer_args"] == {"logging_first_step": True}


# ----------------------------------------------------------------------------- trackers


def test_tracker_environment_and_logs_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_trackers: None) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    config = build_config({**BASE, "output_dir": str(tmp_path / "runs" / "a"),
                           "training": {"report_to": ["tensorboard", "mlflow"], "project": "p"}})
    logs = tmp_path / "runs" / "logs" / "a"
    assert trackers.logging_dir(config) == logs
    env = trackers.environment(config)
    assert env["TENSORBOARD_LOGGING_DIR"] == str(logs)
    assert env["MLFLOW_TRACKING_URI"] == (logs / "mlruns").as_uri() and env["MLFLOW_ALLOW_FILE_STORE"] == "true"
    assert env["WANDB_PROJECT"] == env["MLFLOW_EXPERIMENT_NAME"] == "p"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert "MLFLOW_ALLOW_FILE_STORE" not in trackers.environment(config)
    with trackers.tracking(config) as folder:
        assert folder == logs and folder.is_dir()
    assert "TENSORBOARD_LOGGING_DIR" not in __import__("os").environ


def test_ft_config_is_logged_as_tracker_params(monkeypatch: pytest.MonkeyPatch, fake_trackers: None) -> None:
    logged: dict[str, str] = {}
    fake = types.SimpleNamespace(active_run=lambda: object(), log_params=logged.update)
    config = build_config({**BASE, "training": {"report_to": ["mlflow"], "learning_rate": 1e-3}})
    [callback] = trackers.callbacks(config)
    monkeypatch.setitem(sys.modules, "mlflow", fake)
    callback.on_train_begin(None, types.SimpleNamespace(is_world_process_zero=True), None)
    assert logged["ft.training.learning_rate"] == "0.001" and logged["ft.model"] == "m"
    assert logged["ft.data.train"] == "t.jsonl"


@pytest.mark.usefixtures("single_thread")
def test_tensorboard_logs_go_to_the_visible_logs_folder(tmp_path: Path, tiny_model_dir: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("tensorboard")
    from ftcore.jobs.train import run_training

    monkeypatch.setenv("FT_CACHE_DIR", str(tmp_path / "cache"))
    data = write_reversal_text(tmp_path / "train.jsonl", n=8)
    raw = run_config(tiny_model_dir, data, tmp_path / "runs" / "tb", max_steps=2, logging_steps=1, report_to=["tensorboard"],
                     run_name="tb-r8")
    result = run_training(build_config(raw))
    logs = tmp_path / "runs" / "logs" / "tb-r8"
    assert result.manifest["logs"] == str(logs.resolve())
    assert list(logs.glob("events.out.tfevents.*")), list(tmp_path.rglob("*"))
    assert not list(result.run_dir.rglob("events.out.tfevents.*"))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = set()
    for events in logs.glob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        tags |= set(accumulator.Tags().get("tensors", [])) | set(accumulator.Tags().get("scalars", []))
    assert "train/loss" in tags and any(t.startswith("ft_config") for t in tags), tags


def test_ft_config_goes_into_the_wandb_run_config(monkeypatch: pytest.MonkeyPatch, fake_trackers: None) -> None:
    updates: list[dict[str, Any]] = []
    config_object = types.SimpleNamespace(update=lambda values, allow_val_change: updates.append(values))
    config = build_config({**BASE, "training": {"report_to": ["wandb"], "project": "p"}})
    # Made before the fake is in place: importing transformers looks for the real package's spec.
    [callback] = trackers.callbacks(config)
    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(run=object(), config=config_object))
    callback.on_train_begin(None, types.SimpleNamespace(is_world_process_zero=True), None)
    assert updates == [{"ft": config.model_dump(mode="json")}]
    callback.on_train_begin(None, types.SimpleNamespace(is_world_process_zero=False), None)
    assert len(updates) == 1
