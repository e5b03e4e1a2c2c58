"""Config loading: YAML, --set overrides, all errors at once, did-you-mean, method options by plugin."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ftcore import MethodSpec, hookimpl
from ftcore.config.schema import load_config, validate_run_config
from ftcore.contract.plugins import register_plugin, unregister_plugin
from ftcore.errors import ConfigError

BASE = "model: some/model\nmethod: lora\ndata:\n  train: train.jsonl\n"


def write(tmp_path, text):
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


def test_minimal_config_gets_defaults(tmp_path):
    cfg = load_config(write(tmp_path, BASE))
    assert cfg.training.learning_rate == 2e-4
    assert cfg.data.max_seq_len == 512
    assert cfg.trust_remote_code is False


def test_config_is_immutable(tmp_path):
    cfg = load_config(write(tmp_path, BASE))
    with pytest.raises(ValidationError):
        cfg.seed = 3  # type: ignore[misc]


def test_typo_names_key_and_suggests(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, BASE + "training:\n  learnin_rate: 0.001\n"))
    assert info.value.problems == ["training.learnin_rate: unknown key (did you mean 'learning_rate'?)"]
    assert "learning_rate" in str(info.value)


def test_all_errors_reported_together(tmp_path):
    text = "modle: x\ndata:\n  train: t.jsonl\n  max_seq_len: -4\ntraining:\n  batch_size: zero\n  epocs: 2\n"
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    problems = info.value.problems
    assert "modle: unknown key (did you mean 'model'?)" in problems
    assert "model: required key is missing" in problems
    assert any(p.startswith("data.max_seq_len:") for p in problems)
    assert any(p.startswith("training.batch_size:") for p in problems)
    assert "training.epocs: unknown key (did you mean 'epochs'?)" in problems
    assert len(problems) == 5


def test_set_overrides_coerce_types(tmp_path):
    cfg = load_config(
        write(tmp_path, BASE),
        ["training.learning_rate=1e-4", "training.gradient_checkpointing=true", "data.max_seq_len=128", "seed=7"],
    )
    assert cfg.training.learning_rate == 1e-4
    assert cfg.training.gradient_checkpointing is True
    assert cfg.data.max_seq_len == 128 and cfg.seed == 7


def test_set_override_typo_is_reported(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'max_steps'"):
        load_config(write(tmp_path, BASE), ["training.max_step=3"])


def test_bad_override_syntax(tmp_path):
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config(write(tmp_path, BASE), ["training.max_steps"])


def test_yaml_syntax_error_names_line(tmp_path):
    with pytest.raises(ConfigError, match=r"cfg.yaml:3"):
        load_config(write(tmp_path, "model: x\ndata:\n\ttrain: t.jsonl\n"))


def test_report_to_unknown_tracker(tmp_path):
    with pytest.raises(ConfigError, match="unknown tracker 'wandbb'.*did you mean 'wandb'"):
        load_config(write(tmp_path, BASE + "training:\n  report_to: wandbb\n"))


class _Options(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    rank: int = Field(8, ge=1)


class _Plugin:
    @hookimpl
    def register_methods(self):
        return [MethodSpec("optmethod", "method with options", options=_Options)]


def test_method_options_validated_by_owning_plugin(tmp_path, fresh_plugins):
    register_plugin(_Plugin(), "opt-plugin")
    try:
        ok = load_config(write(tmp_path, BASE), ["method=optmethod", "method_options.rank=4"])
        spec, options = validate_run_config(ok)
        assert spec.name == "optmethod" and options.rank == 4
        bad = load_config(write(tmp_path, BASE), ["method=optmethod", "method_options.rnk=4"])
        with pytest.raises(ConfigError, match=r"method_options.rnk: unknown key \(did you mean 'rank'\?\)"):
            validate_run_config(bad)
        negative = load_config(write(tmp_path, BASE), ["method=optmethod", "method_options.rank=0"])
        with pytest.raises(ConfigError, match="method_options.rank"):
            validate_run_config(negative)
    finally:
        unregister_plugin("opt-plugin")


def test_unknown_method_in_config(tmp_path, fresh_plugins):
    cfg = load_config(write(tmp_path, BASE), ["method=qlroa"])
    with pytest.raises(ConfigError, match="did you mean 'qlora'.*installed methods"):
        validate_run_config(cfg)
