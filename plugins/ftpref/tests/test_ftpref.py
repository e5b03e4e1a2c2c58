"""ftpref: formats map every layout, each method trains (loss falls, the chosen answer gains on the rejected one),
and the run is a plain LoRA adapter (no reference copy)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest

from ftcore.curves import method_curves
from ftcore.testing.suites import FormatContract, MethodContract, logged_losses

WORDS = [("up", "down"), ("hot", "cold"), ("big", "small"), ("old", "new"), ("yes", "no"), ("red", "green")]


def pairs() -> list[dict[str, str]]:
    return [{"prompt": f"Opposite of {a}:", "chosen": f" {b}", "rejected": f" {a}"} for a, b in WORDS]


def write_jsonl(path: Path, rows: list[dict[str, Any]], repeats: int = 3) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows * repeats), encoding="utf-8")
    return path


def preference_accuracy(model_or_run: Path) -> tuple[float, float]:
    """Share of the pairs whose chosen answer has the higher summed log-probability, and the mean margin."""
    import torch

    from ftcore.models import load_for_inference

    model, tokenizer = load_for_inference(model_or_run)
    margins = []
    for row in pairs():
        prompt = tokenizer(row["prompt"], add_special_tokens=False).input_ids
        scores = []
        for answer in (row["chosen"], row["rejected"]):
            ids = prompt + tokenizer(answer, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
            with torch.no_grad():
                logits = model(input_ids=torch.tensor([ids])).logits[0, :-1].log_softmax(-1)
            picked = logits.gather(-1, torch.tensor(ids[1:]).unsqueeze(-1)).squeeze(-1)
            scores.append(float(picked[len(prompt) - 1:].sum()))
        margins.append(scores[0] - scores[1])
    return sum(m > 0 for m in margins) / len(margins), sum(margins) / len(margins)


class PreferenceMethod(MethodContract):
    """A preference method on the tiny Llama: loss below its start, the chosen answers gain on the rejected."""

    steps = 15
    learning_rate = 1e-2
    options: ClassVar[dict[str, Any]] = {"r": 8, "alpha": 16}
    bad_options: ClassVar[list[dict[str, Any]]] = [{"beta": 0}, {"base": "half"}, {"bta": 0.1}]

    def write_data(self, directory: Path) -> Path:
        return write_jsonl(directory / "pairs.jsonl", pairs())

    def check_learned(self, run_dir: Path, model_dir: Path) -> None:
        losses = logged_losses(run_dir)
        assert sum(losses[-3:]) / 3 < losses[0], f"loss did not fall below its start: {losses}"
        before, after = preference_accuracy(model_dir), preference_accuracy(run_dir)
        # Accuracy on the training pairs rises above its start (or is already perfect), and the margin grows.
        assert after[1] > before[1] and (after[0] > before[0] or after[0] == 1.0), (before, after)
        assert not list(run_dir.rglob("ref")), "a reference adapter was saved with the run"


class TestDpo(PreferenceMethod):
    method = "dpo"
    options: ClassVar[dict[str, Any]] = {"r": 8, "alpha": 16, "beta": 0.5}

    def check_learned(self, run_dir: Path, model_dir: Path) -> None:
        super().check_learned(run_dir, model_dir)
        history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        # loss.png gets its second panel: the reward margin and preference accuracy TRL logs.
        assert {"train reward margin", "train preference accuracy"} <= set(method_curves(history))


class TestDpoFullWeights(PreferenceMethod):
    """``base: full``: every weight trains against log-probabilities precomputed once; the run saves a model."""

    method = "dpo"
    options: ClassVar[dict[str, Any]] = {"base": "full", "beta": 0.5}
    learning_rate = 2e-3

    def check_learned(self, run_dir: Path, model_dir: Path) -> None:
        super().check_learned(run_dir, model_dir)
        assert json.loads((run_dir / "ft_run.json").read_text())["output"] == "model"
        assert (run_dir / "model.safetensors").is_file() and not (run_dir / "adapter_config.json").exists()

    def test_bad_options_are_rejected(self) -> None:  # covered by TestDpo
        pass


class TestOrpo(PreferenceMethod):
    method = "orpo"


class TestSimpo(PreferenceMethod):
    method = "simpo"


class TestKto(PreferenceMethod):
    method = "kto"

    def write_data(self, directory: Path) -> Path:
        rows = [{"prompt": p["prompt"], "completion": p[k], "label": k == "chosen"} for p in pairs()
                for k in ("chosen", "rejected")]
        return write_jsonl(directory / "unpaired.jsonl", rows)


CHAT = {"prompt": [{"role": "user", "content": "Opposite of up?"}],
        "chosen": [{"role": "assistant", "content": "down"}], "rejected": [{"role": "assistant", "content": "up"}]}


class TestPreferenceFormat(FormatContract):
    format = "preference"
    records: ClassVar[list[dict[str, Any]]] = [{"prompt": "Q:", "chosen": " a", "rejected": " b", "id": 3}]
    expected: ClassVar[list[dict[str, Any]]] = [{"prompt": "Q:", "chosen": " a", "rejected": " b", "id": 3}]
    bad_record: ClassVar[dict[str, Any]] = {"prompt": "Q:", "chosen": 5, "rejected": " b"}


class TestConversationalPreferenceFormat(FormatContract):
    format = "preference"
    records: ClassVar[list[dict[str, Any]]] = [CHAT]
    expected: ClassVar[list[dict[str, Any]]] = [CHAT]
    bad_record: ClassVar[dict[str, Any]] = {**CHAT, "chosen": "down"}


class TestImplicitPreferenceFormat(FormatContract):
    format = "preference_implicit"
    records: ClassVar[list[dict[str, Any]]] = [
        {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello!", "rejected": "\n\nHuman: Hi\n\nAssistant: Go away."},
        {"chosen": CHAT["prompt"] + CHAT["chosen"], "rejected": CHAT["prompt"] + CHAT["rejected"]},
    ][:1]
    expected: ClassVar[list[dict[str, Any]]] = [
        {"prompt": "\n\nHuman: Hi\n\nAssistant: ", "chosen": "Hello!", "rejected": "Go away."}]
    bad_record: ClassVar[dict[str, Any]] = {"chosen": "same", "rejected": "same"}


class TestImplicitConversationFormat(FormatContract):
    format = "preference_implicit"
    records: ClassVar[list[dict[str, Any]]] = [
        {"chosen": CHAT["prompt"] + CHAT["chosen"], "rejected": CHAT["prompt"] + CHAT["rejected"]}]
    expected: ClassVar[list[dict[str, Any]]] = [CHAT]
    bad_record: ClassVar[dict[str, Any]] = {"chosen": CHAT["chosen"], "rejected": CHAT["rejected"]}


class TestShareGptPreferenceFormat(FormatContract):
    format = "sharegpt_preference"
    records: ClassVar[list[dict[str, Any]]] = [{
        "conversations": [{"from": "human", "value": "Opposite of up?"}],
        "chosen": {"from": "gpt", "value": "down"}, "rejected": {"from": "gpt", "value": "up"}}]
    expected: ClassVar[list[dict[str, Any]]] = [CHAT]
    bad_record: ClassVar[dict[str, Any]] = {
        "conversations": [{"from": "robot", "value": "x"}], "chosen": {"from": "gpt", "value": "a"},
        "rejected": {"from": "gpt", "value": "b"}}


class TestUnpairedFormat(FormatContract):
    format = "unpaired"
    records: ClassVar[list[dict[str, Any]]] = [{"prompt": "Q:", "completion": " a", "label": True}]
    expected: ClassVar[list[dict[str, Any]]] = [{"prompt": "Q:", "completion": " a", "label": True}]
    bad_record: ClassVar[dict[str, Any]] = {"prompt": "Q:", "completion": " a", "label": "maybe"}


class TestMessagesUnpairedFormat(FormatContract):
    format = "messages_unpaired"
    records: ClassVar[list[dict[str, Any]]] = [
        {"messages": CHAT["prompt"] + CHAT["chosen"], "label": False}]
    expected: ClassVar[list[dict[str, Any]]] = [
        {"prompt": CHAT["prompt"], "completion": CHAT["chosen"], "label": False}]
    bad_record: ClassVar[dict[str, Any]] = {"messages": CHAT["prompt"], "label": True}


@pytest.mark.parametrize(("rows", "expected"), [
    ([{"prompt": "Q:", "chosen": " a", "rejected": " b"}], "preference"),
    ([{"chosen": "x y", "rejected": "x z"}], "preference_implicit"),
    ([{"conversations": [{"from": "human", "value": "Hi"}], "chosen": {"from": "gpt", "value": "a"},
       "rejected": {"from": "gpt", "value": "b"}}], "sharegpt_preference"),
    ([{"prompt": "Q:", "completion": " a", "label": True}], "unpaired"),
    ([{"messages": CHAT["prompt"] + CHAT["chosen"], "label": True}], "messages_unpaired"),
], ids=["trl", "hh", "llamafactory-dpo", "trl-kto", "llamafactory-kto"])
def test_layouts_are_detected_without_format_or_columns(rows, expected, tmp_path, fresh_plugins):
    from ftcore.data.formats import detect_format
    from ftcore.data.sources import read_file

    source = read_file(write_jsonl(tmp_path / "data.jsonl", rows, 1), {}, None)
    assert detect_format(source) == expected


@pytest.mark.parametrize(("rows", "shape"), [
    ([{"prompt": "Q:", "chosen": " a", "rejected": " b"}], "preference"),
    ([{"conversations": [{"from": "human", "value": "Hi"}], "chosen": {"from": "gpt", "value": "a"},
       "rejected": {"from": "gpt", "value": "b"}}], "preference"),
    ([{"messages": CHAT["prompt"] + CHAT["chosen"], "label": True}], "unpaired_preference"),
], ids=["trl", "llamafactory-dpo", "llamafactory-kto"])
def test_preference_files_given_to_lora_fail_in_one_line(rows, shape, tiny_model_dir, tmp_path, fresh_plugins):
    from ftcore.config import build_config
    from ftcore.errors import DataError
    from ftcore.train import run_training

    data = write_jsonl(tmp_path / "prefs.jsonl", rows)
    config = build_config({"model": str(tiny_model_dir), "method": "lora", "output_dir": str(tmp_path / "run"),
                           "data": {"train": str(data), "cache_dir": str(tmp_path / "cache")}})
    with pytest.raises(DataError) as error:
        run_training(config)
    message = str(error.value)
    assert "prefs.jsonl" in message and f"'{shape}' data, which method 'lora' does not train on" in message
    assert ("kto" if shape == "unpaired_preference" else "dpo, orpo, rm, simpo") in message
    assert "\n" not in message and not (tmp_path / "run").exists()


def test_benchmark_shows_preference_metrics_base_vs_tuned(tiny_model_dir, tmp_path, fresh_plugins):
    """Preference accuracy and margin on held-out pairs rise after DPO; a generation metric scores the prompts."""
    from ftcore.benchmark import run_benchmark
    from ftcore.config import build_config
    from ftcore.train import run_training

    train = write_jsonl(tmp_path / "train.jsonl", pairs()[:4])
    held_out = write_jsonl(tmp_path / "held_out.jsonl", [
        {"prompt": [{"role": "user", "content": f"Opposite of {a}?"}], "chosen": [{"role": "assistant", "content": b}],
         "rejected": [{"role": "assistant", "content": a}]} for a, b in WORDS[4:]], repeats=1)
    # Train on conversations too, so the held-out pairs are rendered the same way.
    chats = [{"prompt": [{"role": "user", "content": f"Opposite of {a}?"}], "chosen": [{"role": "assistant", "content": b}],
              "rejected": [{"role": "assistant", "content": a}]} for a, b in WORDS[:4]]
    write_jsonl(train, chats, repeats=4)
    config = build_config({
        "model": str(tiny_model_dir), "method": "dpo", "method_options": {"beta": 0.5, "r": 8, "alpha": 16},
        "output_dir": str(tmp_path / "run"), "data": {"train": str(train), "cache_dir": str(tmp_path / "cache")},
        "training": {"max_steps": 15, "learning_rate": 1e-2, "batch_size": 4, "logging_steps": 1,
                     "lr_scheduler": "constant"},
    })
    run = run_training(config).run_dir
    from ftcore.plugins import get_registry

    # A generation metric on the same pairs, where one is installed (ftmetrics; not in `nox -s plugin` for ftpref).
    generation = ["exact_match"] if "exact_match" in get_registry().metrics else []
    report = run_benchmark(run, data=held_out, metrics=["preference_accuracy", "reward_margin", *generation],
                           output_dir=tmp_path / "bench")
    base, tuned = report.base.scores, report.tuned.scores
    assert tuned["reward_margin"] > base["reward_margin"], (base, tuned)
    assert tuned["preference_accuracy"] >= base["preference_accuracy"], (base, tuned)
    assert set(generation) <= set(tuned) and report.tuned.n_examples == 2

    # The run is a plain adapter run: ft merge folds it into a model plain transformers loads, same logits.
    import torch
    from transformers import AutoModelForCausalLM

    from ftcore.merge import merge_run
    from ftcore.models import load_for_inference

    merged = AutoModelForCausalLM.from_pretrained(merge_run(run, tmp_path / "merged"))
    adapted, tokenizer = load_for_inference(run)
    ids = tokenizer("Opposite of up?", return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.allclose(merged(input_ids=ids).logits, adapted(input_ids=ids).logits, atol=1e-4)


def test_dpo_sigkill_then_resume_matches_uninterrupted(tiny_model_dir, tmp_path):
    """A DPO run killed with SIGKILL after a checkpoint continues with --resume to the same losses."""
    import os
    import subprocess
    import sys

    from ftcore.testing.suites import kill_at_checkpoint_then_resume

    data = write_jsonl(tmp_path / "pairs.jsonl", pairs())
    env = {**os.environ, "FT_CACHE_DIR": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}

    def config(name: str) -> Path:
        path = tmp_path / f"{name}.yaml"
        path.write_text(
            f"model: {tiny_model_dir}\nmethod: dpo\nmethod_options: {{beta: 0.5, r: 8, alpha: 16}}\n"
            f"output_dir: {tmp_path / name}\ndata: {{train: {data}, max_seq_len: 32}}\n"
            "training: {max_steps: 6, save_steps: 3, logging_steps: 1, learning_rate: 0.01, batch_size: 4, "
            "lr_scheduler: linear}\n")
        return path

    reference = subprocess.run([sys.executable, "-m", "ftcore", "train", "--config", str(config("reference"))],
                               env=env, capture_output=True, text=True, timeout=600)
    assert reference.returncode == 0, reference.stderr[-3000:]
    kill_at_checkpoint_then_resume(config("run"), "checkpoint-3", env)
    assert logged_losses(tmp_path / "run") == pytest.approx(logged_losses(tmp_path / "reference"), abs=1e-4)
    assert not list((tmp_path / "run").rglob("ref")), "a reference adapter was saved"


def test_memory_estimate_counts_pairs_and_the_reference_pass(fresh_plugins):
    from ftcore.estimate import ModelShape, estimate, setup_for
    from ftcore.plugins import get_registry

    registry = get_registry()
    shape = ModelShape("m", params=10_000_000, linear_params=8_000_000, lora_params_per_rank=50_000, layers=4,
                       hidden=256, intermediate=1024, vocab=32_000)

    def total(method: str, **options: Any) -> Any:
        spec = registry.method(method)
        return estimate(shape, setup_for(spec, spec.options(**options), micro_batch=2, seq_len=128, checkpointing=False))

    lora = estimate(shape, setup_for(registry.method("lora"), None, micro_batch=2, seq_len=128, checkpointing=False))
    dpo, orpo, dpo_full = total("dpo"), total("orpo"), total("dpo", base="full")
    assert dpo.terms["activations"] == 2 * lora.terms["activations"] and dpo.terms["reference"] > 0
    assert "reference" not in orpo.terms and "reference" not in dpo_full.terms
    assert dpo_full.setup.full and total("dpo", base="qlora").setup.base_bits == 4
