"""ftrl: GRPO trains the tiny model so its sampled reward rises, rewards are plugins with located errors, and prompt files
(plain or GSM8K-style through data.columns) are read as the ``prompt`` shape."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest

from ftcore.artifacts.curves import method_curves
from ftcore.testing.suites import FormatContract, MethodContract, logged_counters


def digit_share(prompts: list[str], completions: list[str], examples: list[dict[str, Any]]) -> list[float]:
    """A dense test reward: the share of a completion's characters that are digits."""
    return [sum(ch.isdigit() for ch in c) / max(1, len(c)) for c in completions]


def failing_reward(prompts: list[str], completions: list[str], examples: list[dict[str, Any]]) -> list[float]:
    raise ValueError("this reward is broken")


PROMPTS = [f"Count: {word}" for word in ("one two", "red blue", "cat dog", "sun")]


def write_prompts(path: Path, repeats: int = 8) -> Path:
    rows = [{"prompt": prompt, "answer": "#### 3"} for prompt in PROMPTS]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows * repeats), encoding="utf-8")
    return path


def sampled_length_reward(model_or_run: Path, samples: int = 64) -> float:
    """Mean ``length`` reward (target 4 characters) of ``samples`` completions of up to 8 tokens per prompt, drawn
    at temperature 1 from a fixed seed: the same draw for the untrained model and the reloaded run."""
    import torch
    from ftrl.rewards import LengthOptions, length_target

    from ftcore.models.loading import load_for_inference

    model, tokenizer = load_for_inference(model_or_run)
    torch.manual_seed(0)
    scores = []
    for prompt in PROMPTS:
        ids = tokenizer(prompt, return_tensors="pt").input_ids
        with torch.no_grad():
            out = model.generate(ids.repeat(samples, 1), do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                                 max_new_tokens=8, pad_token_id=tokenizer.pad_token_id)
        scores += length_target(tokenizer.batch_decode(out[:, ids.shape[1]:], skip_special_tokens=True),
                                LengthOptions(target=4))
    return sum(scores) / len(scores)


def rewards_logged(run_dir: Path, key: str = "reward") -> list[float]:
    lines = (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [entry[key] for entry in map(json.loads, lines) if key in entry]


class TestGrpo(MethodContract):
    # Every weight trains: on the tiny Llama an adapter cannot move the output head's ~0.02 weights, and GRPO on LoRA
    # left the sampled reward where it was (0.24 -> 0.24 after 12 steps at 3e-2, 0.24 -> 0.24 at 0.1), so it could
    # not show learning. LoRA GRPO is still trained, resumed and run in two processes below.
    method = "grpo"
    options: ClassVar[dict[str, Any]] = {
        "base": "full", "num_generations": 4, "max_completion_length": 8,
        "rewards": [{"name": "length", "target": 4}],
    }
    bad_options: ClassVar[list[dict[str, Any]]] = [
        {"rewards": []}, {"rewards": [{"name": "answer_match"}], "num_generations": 1},
        {"rewards": [{"name": "format"}]},  # format needs a pattern
    ]
    steps = 12
    learning_rate = 3e-2
    batch_size = 8  # two prompts, four completions each
    #: The least rise of :func:`sampled_length_reward`, untrained model to reloaded run. Measured on an AMD EPYC over
    #: seeds 42/1/2/3: 0.239 -> 0.443, 0.625, 0.496, 0.348 (rise 0.11-0.39); another sampling seed moves a mean by
    #: at most 0.012. The logged per-step rewards are no measure: seed 2 ended 0.279 -> 0.283 over the same run.
    min_reward_rise: ClassVar[float] = 0.05

    def write_data(self, directory: Path) -> Path:
        return write_prompts(directory / "prompts.jsonl")

    def check_learned(self, run_dir: Path, model_dir: Path) -> None:
        before, after = sampled_length_reward(model_dir), sampled_length_reward(run_dir)
        assert after - before > self.min_reward_rise, f"sampled reward {before:.3f} untrained, {after:.3f} after"
        assert json.loads((run_dir / "ft_run.json").read_text())["output"] == "model"
        rewards = rewards_logged(run_dir)
        assert len(rewards) == self.steps and all(0.0 <= r <= 1.0 for r in rewards), rewards
        per_reward = rewards_logged(run_dir, "rewards/length/mean")
        assert len(per_reward) == self.steps and rewards_logged(run_dir, "reward_std")
        assert rewards_logged(run_dir, "completions/mean_length")
        history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        assert "train mean reward" in method_curves(history)  # loss.png's second panel


class TestPromptFormat(FormatContract):
    format = "prompt"
    records: ClassVar[list[dict[str, Any]]] = [{"prompt": "2+2?", "answer": "#### 4"},
                                               {"prompt": [{"role": "user", "content": "Hi"}], "answer": "x"}][:1]
    expected: ClassVar[list[dict[str, Any]]] = [{"prompt": "2+2?", "answer": "#### 4"}]
    bad_record: ClassVar[dict[str, Any]] = {"prompt": 7, "answer": "x"}


def test_gsm8k_layout_maps_with_columns(tiny_tokenizer_dir, tmp_path, fresh_plugins):
    """GSM8K's question/answer records are prompts for grpo with columns: {prompt: question}; the answer is kept."""
    from transformers import AutoTokenizer

    from ftcore.config.schema import build_config
    from ftcore.data import prepare_data

    path = tmp_path / "gsm8k.jsonl"
    path.write_text(json.dumps({"question": "Tom has 2 apples and buys 3. How many?",
                                "answer": "2 + 3 = 5\n#### 5"}) + "\n", encoding="utf-8")
    config = build_config({"model": "unused", "method": "grpo", "data": {
        "train": str(path), "columns": {"prompt": "question"}, "cache_dir": str(tmp_path / "cache")},
        "method_options": {"rewards": [{"name": "answer_match"}]}})
    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    prepared = prepare_data(config, tokenizer)
    assert prepared.shape == "prompt" and prepared.stats["sources"][0]["format"] == "prompt"
    # The plain question is the user's message in the model's chat template, with the generation prompt.
    question = "Tom has 2 apples and buys 3. How many?"
    rendered = f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"
    assert list(prepared.train) == [{"prompt": rendered, "answer": "2 + 3 = 5\n#### 5", "raw_prompt": question}]
    # Its length as TRL tokenizes it is reported.
    length = len(tokenizer(rendered)["input_ids"])
    source = prepared.stats["audit"]["sources"][0]
    assert source["part_lengths"]["prompt"]["max"] == length == source["lengths"]["max"]
    from ftrl.trainer import chosen_prompts

    assert list(chosen_prompts(prepared.train, raw=True)) == [{"answer": "2 + 3 = 5\n#### 5", "prompt": question}]
    assert list(chosen_prompts(prepared.train, raw=False)) == [{"prompt": rendered, "answer": "2 + 3 = 5\n#### 5"}]


def test_prompts_longer_than_max_seq_len_are_dropped_and_named(tiny_tokenizer_dir, tmp_path, fresh_plugins):
    from ftrl.trainer import TOO_LONG
    from transformers import AutoTokenizer

    from ftcore.config.schema import build_config
    from ftcore.data import prepare_data
    from ftcore.errors import DataError

    path = tmp_path / "prompts.jsonl"
    rows = [{"prompt": "2+2?", "answer": "4"}] * 2 + [{"prompt": "Add " + "1 + " * 40 + "1.", "answer": "41"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")

    def prepare(data):
        config = build_config({"model": "unused", "method": "grpo", "method_options": {"rewards": [{"name": "answer_match"}]},
                               "data": {"train": str(data), "max_seq_len": 48, "cache_dir": str(tmp_path / "cache")}})
        return prepare_data(config, AutoTokenizer.from_pretrained(tiny_tokenizer_dir))

    prepared = prepare(path)
    assert prepared.stats["dropped"] == {TOO_LONG: 1} and len(prepared.train) == 2
    warnings = {w["code"]: w["message"] for w in prepared.stats["audit"]["warnings"]}
    assert warnings["nothing_trained"].endswith(f"dropped: {TOO_LONG}, e.g. {path}:3")
    long = tmp_path / "long.jsonl"
    long.write_text("".join(json.dumps(r) + "\n" for r in rows[2:] * 2), encoding="utf-8")
    with pytest.raises(DataError, match=r"2 of 2 prompts are longer than data.max_seq_len \(48\) tokens"):
        prepare(long)


def constant_reward(prompts: list[str], completions: list[str], examples: list[dict[str, Any]]) -> list[float]:
    """A reward with nothing to learn from: every completion scores the same."""
    return [1.0] * len(completions)


@pytest.mark.parametrize("raw", [False, True])
def test_samples_are_kept_and_steps_without_reward_variance_are_told(raw, tiny_model_dir, tmp_path, fresh_plugins,
                                                                   caplog):
    import logging

    from ftcore.config.schema import build_config
    from ftcore.jobs.train import run_training

    config = build_config({
        "model": str(tiny_model_dir), "method": "grpo", "output_dir": str(tmp_path / "run"),
        "method_options": {"num_generations": 4, "max_completion_length": 4, "sample_every": 1, "raw_prompts": raw,
                           "rewards": [{"name": "python", "function": "test_ftrl:constant_reward", "weight": 0.5}]},
        "data": {"train": str(write_prompts(tmp_path / "p.jsonl", 1)), "cache_dir": str(tmp_path / "cache")},
        "training": {"max_steps": 2, "batch_size": 4, "logging_steps": 1},
    })
    with caplog.at_level(logging.INFO):
        run = run_training(config).run_dir
    messages = [r.getMessage() for r in caplog.records]
    assert sum("learned nothing: in each of its 1 groups every completion got the same reward (0.5)" in m
               for m in messages) == 2, messages
    assert any(m.startswith("grpo: 2 of 2 steps learned nothing") for m in messages), messages
    assert any(m.startswith("step 1/2 ") and " reward 0.5" in m for m in messages), messages
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [s["step"] for s in samples] == [1] * 4 + [2] * 4
    assert all(s["rewards"] == {"python": 1.0} and s["reward"] == 0.5 for s in samples)
    prompt = samples[0]["prompt"]
    assert prompt.startswith("Count:") if raw else prompt.startswith("<|im_start|>user\nCount:")


@pytest.mark.parametrize(("completion", "reference", "extract", "score"), [
    ("so the total is 5.", "2 + 3 = 5\n#### 5", "auto", 1.0),
    ("#### 1,200", "#### 1200", "gsm8k", 1.0),
    ("the answer is \\boxed{\\frac{1}{2}} or \\boxed{7}", "7", "boxed", 1.0),
    ("I think 4", "#### 5", "auto", 0.0),
    ("no number here", "#### 5", "last_number", 0.0),
])
def test_answer_match(completion, reference, extract, score, fresh_plugins):
    from ftrl.rewards import AnswerMatchOptions, answer_match

    assert answer_match([completion], [{"answer": reference}], AnswerMatchOptions(extract=extract)) == [score]


def test_format_length_and_python_rewards(fresh_plugins):
    from ftcore.contract.plugins import get_registry

    registry = get_registry()

    def call(name, completions, **options):
        return registry.call("compute_reward", "reward", name, name=name, prompts=["p"] * len(completions),
                             completions=completions, examples=[{}] * len(completions), options=options,
                             state=None)

    assert call("format", ["<think>x</think> 4", "4"], pattern=r"<think>.*</think>") == [1.0, 0.0]
    assert call("format", ["abc", "abcd"], pattern="abc", full=True) == [1.0, 0.0]
    assert call("length", ["abcd", "ab", "abcdefgh"], target=4) == [1.0, 1 / 1.5, 0.5]
    assert call("python", ["12ab"], function="test_ftrl:digit_share") == [0.5]


def test_unknown_reward_lists_the_installed_ones(tiny_model_dir, tmp_path, fresh_plugins):
    from ftcore.config.schema import build_config, validate_method_options
    from ftcore.errors import ConfigError

    config = build_config({"model": str(tiny_model_dir), "method": "grpo", "data": {"train": "x.jsonl"},
                           "method_options": {"rewards": [{"name": "answer_mach"}]}})
    with pytest.raises(ConfigError) as error:
        validate_method_options(config)
    message = str(error.value)
    assert "unknown reward 'answer_mach'" in message and "did you mean 'answer_match'" in message
    assert "format" in message and "length" in message


def test_a_reward_that_raises_is_named_with_the_example(tiny_model_dir, tmp_path, fresh_plugins):
    from ftcore.config.schema import build_config
    from ftcore.errors import TrainingError
    from ftcore.jobs.train import run_training

    config = build_config({
        "model": str(tiny_model_dir), "method": "grpo", "output_dir": str(tmp_path / "run"),
        "method_options": {"num_generations": 4, "max_completion_length": 4,
                           "rewards": [{"name": "python", "function": "test_ftrl:failing_reward"}]},
        "data": {"train": str(write_prompts(tmp_path / "p.jsonl", 1)), "cache_dir": str(tmp_path / "cache")},
        "training": {"max_steps": 2, "batch_size": 4},
    })
    with pytest.raises(TrainingError) as error:
        run_training(config)
    message = str(error.value)
    # The prompt as the model saw it: rendered with the tiny model's chat template.
    assert message.startswith("reward 'python' (function test_ftrl:failing_reward, plugin ftrl) failed on the "
                              "completion of prompt '")
    assert "Count: red blue" in message
    assert message.endswith(": ValueError: this reward is broken") and not (tmp_path / "run").exists()


def test_memory_estimate_counts_generation(fresh_plugins):
    """GRPO's estimate adds the key/value cache of sampling (and a reference pass only with a KL penalty)."""
    from ftcore.contract.plugins import get_registry
    from ftcore.models.estimate import ModelShape, estimate, setup_for

    registry = get_registry()
    shape = ModelShape("m", params=10_000_000, linear_params=8_000_000, linear_in_out=50_000, layers=4,
                       hidden=256, intermediate=1024, vocab=32_000)
    spec = registry.method("grpo")

    def run(method_spec, options):
        return estimate(shape, setup_for(method_spec, options, micro_batch=4, seq_len=128, checkpointing=False))

    grpo = run(spec, spec.options(rewards=[{"name": "length", "target": 20}]))
    lora = run(registry.method("lora"), None)
    # 4 sequences x 128 positions x 4 layers x (key + value) x hidden 256 x 4 bytes, + 4 x vocab float32 logits.
    assert grpo.terms["generation"] == 4 * 128 * 4 * 2 * 256 * 4 + 4 * 32_000 * 4
    assert "generation" not in lora.terms and "reference" not in grpo.terms
    assert "reference" in run(spec, spec.options(rewards=[{"name": "length", "target": 20}], beta=0.04)).terms


@pytest.mark.slow
def test_grpo_sigkill_then_resume_matches_uninterrupted(tiny_model_dir, tmp_path):
    """A GRPO run killed with SIGKILL after a checkpoint continues with --resume to the same rewards and losses:
    sampling restarts from the checkpoint's random state."""
    import os
    import subprocess
    import sys

    from ftcore.testing.suites import kill_at_checkpoint_then_resume

    data = write_prompts(tmp_path / "prompts.jsonl", repeats=4)
    env = {**os.environ, "FT_CACHE_DIR": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}

    def config(name: str) -> Path:
        path = tmp_path / f"{name}.yaml"
        path.write_text(
            f"model: {tiny_model_dir}\nmethod: grpo\n"
            "method_options: {r: 8, alpha: 16, num_generations: 4, max_completion_length: 6, "
            "rewards: [{name: length, target: 4}]}\n"
            f"output_dir: {tmp_path / name}\ndata: {{train: {data}, max_seq_len: 32}}\n"
            "training: {max_steps: 4, save_steps: 2, logging_steps: 1, learning_rate: 0.03, batch_size: 8, "
            "lr_scheduler: constant}\n")
        return path

    reference = subprocess.run([sys.executable, "-m", "ftcore", "train", "--config", str(config("reference"))],
                               env=env, capture_output=True, text=True, timeout=600)
    assert reference.returncode == 0, reference.stderr[-3000:]
    kill_at_checkpoint_then_resume(config("run"), "checkpoint-2", env)
    for key in ("reward", "loss"):
        assert rewards_logged(tmp_path / "run", key) == pytest.approx(rewards_logged(tmp_path / "reference", key),
                                                                      abs=1e-4), key
    # Every logged counter (step, epoch, num_tokens) continues from the checkpoint as the uninterrupted run's did.
    counters, reference_counters = logged_counters(tmp_path / "run"), logged_counters(tmp_path / "reference")
    assert len(counters) == len(reference_counters) == 4 and all("num_tokens" in row for row in counters), counters
    for got, want in zip(counters, reference_counters, strict=True):
        assert got == pytest.approx(want), (got, want)


@pytest.mark.slow
def test_grpo_in_two_processes(tiny_model_dir, tmp_path):
    """``ft train --nproc 2``: each rank samples its share of the groups, rewards are gathered, one adapter is saved."""
    import os
    import subprocess
    import sys

    data = write_prompts(tmp_path / "prompts.jsonl", repeats=2)
    env = {**os.environ, "FT_CACHE_DIR": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    config = tmp_path / "grpo.yaml"
    config.write_text(
        f"model: {tiny_model_dir}\nmethod: grpo\n"
        "method_options: {r: 8, alpha: 16, num_generations: 4, max_completion_length: 6, "
        "rewards: [{name: length, target: 4}]}\n"
        f"output_dir: {tmp_path / 'run'}\ndata: {{train: {data}, max_seq_len: 32}}\n"
        "training: {max_steps: 2, logging_steps: 1, learning_rate: 0.03, batch_size: 4}\n")
    done = subprocess.run([sys.executable, "-m", "ftcore", "train", "--config", str(config), "--nproc", "2"], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rank 1/2" in done.stderr
    rewards = rewards_logged(tmp_path / "run")
    assert len(rewards) == 2 and all(0.0 <= r <= 1.0 for r in rewards)
    assert (tmp_path / "run" / "adapter_model.safetensors").is_file()
