"""Contract test suites that plugin tests subclass, so every plugin is held to the same checks.

Subclass in a test module named ``test_*.py``, with a class name starting with ``Test``::

    from ftcore.testing.suites import MethodContract

    class TestMyMethod(MethodContract):  # FormatContract, MetricContract, RewardContract alike
        method = "mymethod"
        options = {"r": 4}
        bad_options = [{"r": 0}]

The suites use the tiny model fixtures of ftcore's pytest plugin (``tiny_model_dir``), which pytest
loads automatically when ftcore is installed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, ClassVar

import pytest

#: Tiny, learnable data for method suites: a fixed mapping the model can memorise in a few dozen steps.
_PAIRS = [("red", "green"), ("cat", "dog"), ("one", "two"), ("sun", "moon"), ("hot", "cold"), ("up", "down")]


def write_completion_data(path: Path, repeats: int = 4) -> Path:
    """Write a small prompt/completion JSONL file (``word -> its opposite``) and return its path."""
    with path.open("w", encoding="utf-8") as handle:
        for _ in range(repeats):
            for word, opposite in _PAIRS:
                handle.write(json.dumps({"prompt": f"Opposite of {word}:", "completion": f" {opposite}"}) + "\n")
    return path


def logged_losses(run_dir: Path) -> list[float]:
    """Training losses in step order from a run directory's ``metrics.jsonl``."""
    lines = (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [entry["loss"] for entry in map(json.loads, lines) if "loss" in entry]


def logged_counters(run_dir: Path) -> list[dict[str, Any]]:
    """The counters of every training log row of a run directory's ``metrics.jsonl``, in step order: ``step``,
    ``epoch`` and every ``num_*`` count (``num_tokens``; a method's own, such as ``num_generations``). A resumed run
    must log the same ones an uninterrupted run does: each continues from the checkpoint, none restarts at 0."""
    lines = (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [entry for entry in map(json.loads, lines) if "loss" in entry]
    return [{k: v for k, v in row.items() if k in ("step", "epoch") or k.startswith("num_") or "/num_" in k}
            for row in rows]


def answer_loss(model_or_run: str | Path, run_dir: str | Path) -> float:
    """Mean cross-entropy per trained token of ``model_or_run`` (a model or run directory) on the training rows of
    run ``run_dir``, tokenized and masked as that run trained on them (loss on the answers only), in eval mode."""
    import torch

    from ftcore.artifacts.rundir import load_run
    from ftcore.config.schema import build_config
    from ftcore.data import prepare_data
    from ftcore.models.loading import load_for_inference

    model, tokenizer = load_for_inference(model_or_run)
    prepared = prepare_data(build_config(load_run(run_dir).config), tokenizer)
    assert prepared.collator is not None, (
        f"{prepared.shape!r} data has no answer tokens for ftcore to score; override check_learned for this method")
    batch = prepared.collator(list(prepared.train))
    with torch.no_grad():
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits.float()
    labels = batch["labels"][:, 1:].reshape(-1)
    return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels,
                                             ignore_index=-100).item()


def kill_at_checkpoint_then_resume(config: Path, checkpoint: str, env: dict[str, str], timeout: float = 600) -> None:
    """``ft train --config CONFIG`` in a subprocess, SIGKILLed as soon as ``checkpoint`` (``"checkpoint-3"``) of its
    staging directory is complete, then ``ft train --config CONFIG --resume`` to the end (which must succeed).

    The run's ``output_dir`` must be ``config``'s directory joined with the config's stem (``runs/x.yaml`` writes
    ``runs/x``), so the staging directory is found without reading the config.
    """
    import signal
    import subprocess
    import sys
    import time

    from ftcore.artifacts.rundir import checkpoint_complete

    def ft(*args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "ftcore", "train", "--config", str(config), *args], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    process = ft()
    staged = config.parent / f".{config.stem}.tmp-partial" / "checkpoints" / checkpoint
    deadline = time.time() + timeout
    while not checkpoint_complete(staged):
        assert process.poll() is None, process.stdout.read()
        assert time.time() < deadline, f"no {checkpoint} within {timeout} s"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    resumed = ft("--resume")
    assert resumed.wait(timeout=timeout) == 0, resumed.stdout.read()


class MethodContract:
    """Checks every training method must pass on ftcore's tiny Llama.

    :cvar method: the method name under test.
    :cvar options: valid ``method_options`` used for training.
    :cvar bad_options: option mappings that must be rejected by the method's schema.
    :cvar steps: optimizer steps of the training check; :cvar learning_rate: its learning rate.
    :cvar max_seq_len: ``data.max_seq_len`` of the training check; :cvar batch_size: its micro-batch size.
    :cvar min_drop: how far the reloaded run's loss on the training answers must lie below the untrained model's.

    A method that trains on other data than prompt/completion pairs overrides :meth:`write_data` (its own tiny
    dataset, in a format it trains on) and, when "the reloaded run's loss on its training answers is far below
    the base model's" is not the right evidence, :meth:`check_learned`.
    """

    method: ClassVar[str]
    options: ClassVar[dict[str, Any]] = {}
    bad_options: ClassVar[list[dict[str, Any]]] = []
    steps: ClassVar[int] = 30
    # At 2e-2 LoRA's loss jumps about: its drop ranged 0.42-0.71 over three seeds here, and on an Intel Xeon the
    # logged loss ended only 0.27 below its start (issue 35). At 5e-3 it falls steadily (see min_drop).
    learning_rate: ClassVar[float] = 5e-3
    max_seq_len: ClassVar[int] = 32
    batch_size: ClassVar[int] = 4
    #: The least drop of the answer loss (nats per token: untrained base minus reloaded run) that counts as learning.
    #: Measured on an AMD EPYC, 30 steps at 5e-3 over seeds 42/1/2(/3): lora 6.19 -> 5.14-5.20 (drop 0.99-1.05),
    #: qlora 0.96-1.03, instruction 0.97-1.09, attention-only LoRA r=4 (like `ft plugin new`'s method) 0.76-0.86;
    #: full (3e-3) 5.24-5.31. An adapter on the tiny Llama cannot get much further: its untrained output head
    #: (weights ~0.02, final norm fixed) caps a logit near 1.3, so ~1.2 is the ceiling. 0.4 is about half the
    #: smallest measured drop, and a changed seed (new adapter init, dropout and order: a far bigger push than
    #: rounding) moved a method's drop by at most 0.13.
    min_drop: ClassVar[float] = 0.4

    def write_data(self, directory: Path) -> Path:
        """Write the training data of the checks into ``directory`` and return its path (a file or folder)."""
        return write_completion_data(directory / "train.jsonl")

    def make_config(self, model_dir: Path, tmp_path: Path, **training: Any) -> Any:
        from ftcore.config.schema import build_config

        data = self.write_data(tmp_path)
        raw = {
            "model": str(model_dir),
            "method": self.method,
            "method_options": dict(self.options),
            "output_dir": str(tmp_path / "run"),
            "data": {"train": str(data), "max_seq_len": self.max_seq_len, "cache_dir": str(tmp_path / "cache")},
            "training": {
                "max_steps": self.steps, "learning_rate": self.learning_rate, "batch_size": self.batch_size,
                "gradient_accumulation": 1, "logging_steps": 1, "save_steps": 10_000, "warmup_steps": 0,
                "lr_scheduler": "constant", **training,
            },
        }
        return build_config(raw)

    def check_learned(self, run_dir: Path, model_dir: Path) -> None:
        """Assert the run learned: on its own training data, the reloaded run's loss on the answer tokens is far
        below the untrained base model's (:func:`answer_loss`, eval mode, the same rows for both).

        Two models compared on fixed rows, not a noisy training curve, so kernels that round differently on another
        CPU cannot tip it: on the tiny Llama the base model scores 6.19 (a near-uniform guess over its 512-token
        vocabulary) and LoRA's 30 steps bring it to ~5.2 (see :attr:`min_drop`).
        """
        losses = logged_losses(run_dir)
        assert len(losses) >= 4 and all(math.isfinite(v) for v in losses)
        before, after = answer_loss(model_dir, run_dir), answer_loss(run_dir, run_dir)
        assert before - after > self.min_drop, (
            f"the run did not learn its data: answer loss {before:.3f} untrained, {after:.3f} after training "
            f"(a drop of {before - after:.3f}; at least {self.min_drop} expected)")

    def test_method_is_registered(self, fresh_plugins: None) -> None:
        from ftcore.contract.plugins import get_registry

        registry = get_registry()
        assert self.method in registry.methods, f"{self.method!r} not registered; installed: {sorted(registry.methods)}"

    def test_options_validate(self, fresh_plugins: None, tiny_model_dir: Path, tmp_path: Path) -> None:
        from ftcore.config.schema import validate_method_options

        spec, options = validate_method_options(self.make_config(tiny_model_dir, tmp_path))
        assert spec.name == self.method
        if spec.options is not None:
            assert isinstance(options, spec.options)

    def test_bad_options_are_rejected(self, fresh_plugins: None, tiny_model_dir: Path, tmp_path: Path) -> None:
        from ftcore.config.schema import validate_method_options
        from ftcore.errors import ConfigError

        base = self.make_config(tiny_model_dir, tmp_path)
        for bad in self.bad_options:
            config = base.model_copy(update={"method_options": bad})
            with pytest.raises(ConfigError, match="method_options"):
                validate_method_options(config)

    def test_loss_falls_and_run_reloads(self, fresh_plugins: None, tiny_model_dir: Path, tmp_path: Path) -> None:
        from ftcore.jobs.train import run_training

        result = run_training(self.make_config(tiny_model_dir, tmp_path))
        self.learned_check(result.run_dir)(result.run_dir, tiny_model_dir)
        # Every run directory has its training curve, whatever the method.
        assert (result.run_dir / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    def learned_check(self, run_dir: Path) -> Any:
        """The "it learned" check that fits the kind of model the run trained (its manifest's ``model_kind``):
        :meth:`check_learned` for a causal LM, or when the subclass overrides it; :meth:`check_learned_scorer`
        for a sequence classifier (a reward model), which has no text to generate."""
        from ftcore.artifacts.rundir import load_run
        from ftcore.models.loading import run_model_kind

        overridden = type(self).check_learned is not MethodContract.check_learned
        if overridden or run_model_kind(load_run(run_dir)) == "causal_lm":
            return self.check_learned
        return self.check_learned_scorer

    def check_learned_scorer(self, run_dir: Path, model_dir: Path) -> None:
        """Assert a sequence-classification run learned: the logged loss fell, and the reloaded run gives one finite
        score per text that differs between texts."""
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        losses = logged_losses(run_dir)
        assert len(losses) >= 2 and all(math.isfinite(v) for v in losses)
        assert min(losses[-2:]) < losses[0], f"loss did not fall: {losses}"
        model = AutoModelForSequenceClassification.from_pretrained(run_dir).eval()
        tokenizer = AutoTokenizer.from_pretrained(run_dir)
        with torch.no_grad():
            scores = [model(**tokenizer(text, return_tensors="pt")).logits for text in ("blue", "Opposite of red:")]
        assert all(s.shape == (1, 1) and torch.isfinite(s).all() for s in scores)
        assert (scores[0] - scores[1]).abs().item() > 1e-6, "the reloaded scorer gives every text the same score"


class FormatContract:
    """Checks every dataset format must pass: registration, exact mapping, located errors.

    :cvar format: the format name; :cvar records: raw records; :cvar expected: the canonical examples
        they must map to (compared on the keys given); :cvar bad_record: a record the format must reject.
    """

    format: ClassVar[str]
    records: ClassVar[list[dict[str, Any]]]
    expected: ClassVar[list[dict[str, Any]]]
    bad_record: ClassVar[dict[str, Any]]

    def _write(self, path: Path, records: list[dict[str, Any]]) -> Path:
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        return path

    def _load(self, path: Path) -> list[dict[str, Any]]:
        from ftcore.config.schema import DataConfig
        from ftcore.data import load_examples

        return list(load_examples(str(path), DataConfig(train=str(path), format=self.format)))

    def test_format_is_registered(self, fresh_plugins: None) -> None:
        from ftcore.contract.plugins import get_registry

        assert self.format in get_registry().formats

    def test_records_map_to_canonical_examples(self, fresh_plugins: None, tmp_path: Path) -> None:
        examples = self._load(self._write(tmp_path / "data.jsonl", self.records))
        assert len(examples) == len(self.expected)
        for got, want in zip(examples, self.expected, strict=True):
            assert {key: got[key] for key in want} == want

    def test_bad_record_names_file_and_line(self, fresh_plugins: None, tmp_path: Path) -> None:
        from ftcore.errors import DataError

        path = self._write(tmp_path / "bad.jsonl", [self.records[0], self.bad_record])
        with pytest.raises(DataError, match=r"bad\.jsonl:2"):
            self._load(path)


class MetricContract:
    """Checks every metric must pass: registration and values on known cases.

    :cvar metric: the metric name; :cvar cases: ``(predictions, references, expected scores)`` triples;
        :cvar tolerance: absolute tolerance of the comparison.
    """

    metric: ClassVar[str]
    cases: ClassVar[list[tuple[list[str], list[str], dict[str, float]]]]
    tolerance: ClassVar[float] = 1e-6

    def test_metric_is_registered(self, fresh_plugins: None) -> None:
        from ftcore.contract.plugins import get_registry

        assert self.metric in get_registry().metrics

    def test_known_values(self, fresh_plugins: None) -> None:
        from ftcore.contract.plugins import get_registry
        from ftcore.jobs.evaluation import metric_result

        registry = get_registry()
        for predictions, references, expected in self.cases:
            context: dict[str, Any] = {}
            result = registry.call("compute_metric", "metric", self.metric, name=self.metric, predictions=predictions,
                                   references=references, context=context)
            assert result is not None, f"no plugin answered for {self.metric!r}"
            scores, _details = metric_result(result, context)
            for key, value in expected.items():
                assert scores[key] == pytest.approx(value, abs=self.tolerance), (key, predictions, references)


class RewardContract:
    """Checks every reward must pass: registration, options validated by its model (bad ones rejected with the
    entry's key), one float per completion on known cases, set up and torn down once.

    :cvar reward: the reward name; :cvar options: valid options (the other keys of its ``rewards:`` entry);
    :cvar bad_options: option mappings its options model must reject; :cvar cases: ``(completions, expected
        scores)`` or ``(completions, expected scores, examples)`` tuples, scored with prompt ``"p"``;
    :cvar tolerance: absolute tolerance of the comparison.
    """

    reward: ClassVar[str]
    options: ClassVar[dict[str, Any]] = {}
    bad_options: ClassVar[list[dict[str, Any]]] = []
    cases: ClassVar[list[tuple[Any, ...]]] = []
    tolerance: ClassVar[float] = 1e-6

    def entry(self, **options: Any) -> Any:
        from ftcore.contract.rewards import RewardEntry

        return RewardEntry.model_validate({"name": self.reward, **options})

    def test_reward_is_registered(self, fresh_plugins: None) -> None:
        from ftcore.contract.plugins import get_registry

        registry = get_registry()
        assert self.reward in registry.rewards, f"{self.reward!r} not registered; installed: {sorted(registry.rewards)}"

    def test_options_validate(self, fresh_plugins: None) -> None:
        from ftcore.contract.plugins import get_registry

        spec = get_registry().reward(self.reward)
        options = self.entry(**self.options).options
        assert options is None if spec.options is None else isinstance(options, spec.options)

    def test_bad_options_are_rejected(self, fresh_plugins: None) -> None:
        from pydantic import ValidationError

        from ftcore.config.schema import format_errors
        from ftcore.contract.rewards import RewardEntry

        for bad in self.bad_options:
            with pytest.raises(ValidationError) as error:
                self.entry(**bad)
            lines = format_errors(error.value, RewardEntry)
            assert lines and all(line and ":" in line for line in lines), lines

    def test_known_values_with_one_setup(self, fresh_plugins: None, tmp_path: Path) -> None:
        from ftcore.contract.rewards import RewardContext, RunRewards

        context = RewardContext(device=_cpu(), run_dir=tmp_path, tokenizer=None, config=None)
        rewards = RunRewards([self.entry(**self.options)], context)
        try:
            for completions, expected, *examples in self.cases:
                rows = examples[0] if examples else [{} for _ in completions]
                scores = rewards.score(0, ["p"] * len(completions), list(completions), rows)
                assert scores is not None, f"no plugin answered for {self.reward!r}"
                assert [float(s) for s in scores] == pytest.approx(expected, abs=self.tolerance), completions
        finally:
            rewards.close()
        assert rewards.states == []


def _cpu() -> Any:
    import torch

    return torch.device("cpu")
