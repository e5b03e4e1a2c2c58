"""A third party's reward gets its validated options (defaults filled) and a life cycle: set up once per run with
the device, run directory and tokenizer, its state passed to every batch, torn down at the end. Option errors name
the entry's index and key, with did-you-mean."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel, ConfigDict, Field

from ftcore import RewardSpec, hookimpl
from ftcore.testing.suites import RewardContract


class ScaledLengthOptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    target: int = Field(4, ge=1)
    scale: float = 2.0


class ModelReward:
    """Scores completions with a model it loads once: the tiny model's mean logit, scaled (a stand-in for a
    reward model); records every call."""

    def __init__(self, model_dir: Path) -> None:
        self.model_dir = model_dir
        self.loads: list[Any] = []
        self.calls: list[tuple[Any, Any]] = []
        self.teardowns: list[Any] = []

    @hookimpl
    def register_rewards(self) -> list[RewardSpec]:
        return [RewardSpec("scaled_length", "length towards a target, scaled", options=ScaledLengthOptions)]

    @hookimpl
    def setup_reward(self, name: str, options: Any, context: Any) -> Any:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(self.model_dir).to(context.device)
        self.loads.append((name, options, context))
        return {"model": model}

    @hookimpl
    def compute_reward(self, name: str, completions: list[str], options: Any, state: Any) -> list[float]:
        self.calls.append((options, state))
        return [options.scale / (1 + abs(len(c) - options.target)) for c in completions]

    @hookimpl
    def teardown_reward(self, name: str, state: Any) -> None:
        self.teardowns.append(state)


@pytest.fixture
def model_reward(tiny_model_dir, fresh_plugins):
    from ftcore.contract.plugins import register_plugin, unregister_plugin

    plugin = ModelReward(tiny_model_dir)
    register_plugin(plugin, "ftreward-test")
    try:
        yield plugin
    finally:
        unregister_plugin("ftreward-test")


def grpo_config(tmp_path: Path, model_dir: Path, rewards: list[dict[str, Any]]) -> Any:
    from test_ftrl import write_prompts

    from ftcore.config.schema import build_config

    return build_config({
        "model": str(model_dir), "method": "grpo", "output_dir": str(tmp_path / "run"),
        "method_options": {"num_generations": 4, "max_completion_length": 4, "rewards": rewards},
        "data": {"train": str(write_prompts(tmp_path / "p.jsonl", 1)), "cache_dir": str(tmp_path / "cache")},
        "training": {"max_steps": 2, "batch_size": 4, "logging_steps": 1},
    })


def test_a_reward_that_loads_a_model_loads_it_once_per_run(model_reward, tiny_model_dir, tmp_path):
    from transformers import PreTrainedTokenizerBase

    from ftcore.jobs.train import run_training

    run_training(grpo_config(tmp_path, tiny_model_dir, [{"name": "scaled_length", "target": 3}]))

    assert len(model_reward.loads) == 1
    name, options, context = model_reward.loads[0]
    assert name == "scaled_length" and isinstance(options, ScaledLengthOptions)
    assert (options.target, options.scale) == (3, 2.0)  # the default filled in
    assert context.device.type == "cpu" and isinstance(context.tokenizer, PreTrainedTokenizerBase)
    assert context.run_dir.name.endswith("tmp-partial") and context.config.method == "grpo"
    assert len(model_reward.calls) == 2  # one batch per step
    state = model_reward.calls[0][1]
    assert all(s is state for _, s in model_reward.calls) and "model" in state
    assert model_reward.teardowns == [state]
    assert (tmp_path / "run" / "adapter_model.safetensors").is_file()


@pytest.mark.parametrize(("entry", "line"), [
    ({"name": "scaled_length", "targt": 3},
     "method_options.rewards.0.targt: unknown key (did you mean 'target'?)"),
    ({"name": "scaled_length", "scale": "big"}, "method_options.rewards.0.scale: "),
    ({"name": "length"}, "method_options.rewards.0.target: required key is missing"),
    ({"name": "scaled_lenght"}, "method_options.rewards.0.name: unknown reward 'scaled_lenght'"),
])
def test_reward_option_errors_name_index_and_key(model_reward, tiny_model_dir, entry, line):
    from ftcore.config.schema import build_config, validate_method_options
    from ftcore.errors import ConfigError

    config = build_config({"model": str(tiny_model_dir), "method": "grpo", "data": {"train": "x.jsonl"},
                           "method_options": {"rewards": [entry]}})
    with pytest.raises(ConfigError) as error:
        validate_method_options(config)
    assert line in str(error.value), str(error.value)


class TestLengthReward(RewardContract):
    reward = "length"
    options: ClassVar[dict[str, Any]] = {"target": 4}
    bad_options: ClassVar[list[dict[str, Any]]] = [{"target": 0}, {"targt": 4}, {}]
    cases: ClassVar[list[tuple[Any, ...]]] = [(["abcd", "ab", "abcdefgh"], [1.0, 1 / 1.5, 0.5])]
