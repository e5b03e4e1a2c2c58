"""ftpref: formats map every layout, each method trains (loss falls, the chosen answer gains on the rejected one),
and the run is a plain LoRA adapter (no reference copy)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest

from ftcore.artifacts.curves import method_curves
from ftcore.testing.suites import FormatContract, MethodContract, logged_counters, logged_losses

WORDS = [("up", "down"), ("hot", "cold"), ("big", "small"), ("old", "new"), ("yes", "no"), ("red", "green")]


def pairs() -> list[dict[str, str]]:
    return [{"prompt": f"Opposite of {a}:", "chosen": f" {b}", "rejected": f" {a}"} for a, b in WORDS]


def write_jsonl(path: Path, rows: list[dict[str, Any]], repeats: int = 3) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows * repeats), encoding="utf-8")
    return path


def preference_margins(model_or_run: Path) -> list[float]:
    """For each training pair, the chosen answer's summed log-probability minus the rejected one's (eval mode)."""
    import torch

    from ftcore.models.loading import load_for_inference

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
    return margins


class PreferenceMethod(MethodContract):
    """A preference method on the tiny Llama: the chosen answers gain on the rejected ones, judged on the training
    pairs by the untrained model and the reloaded run (eval mode), not by the method's noisy logged loss."""

    steps = 15
    # At 1e-2 DPO's run with seed 42 ended with its weakest pair 0.09 nats from flipping; at 5e-3 every method
    # learns steadily (numbers at min_margin_rise).
    learning_rate = 5e-3
    options: ClassVar[dict[str, Any]] = {"r": 8, "alpha": 16}
    bad_options: ClassVar[list[dict[str, Any]]] = [{"beta": 0}, {"base": "half"}, {"bta": 0.1}]
    #: The least rise of the mean chosen-minus-rejected log-probability over the training pairs. Measured on an AMD
    #: EPYC, 15 steps at 5e-3 over seeds 42/1/2/3 (the untrained model: 1.96, 3 of 6 pairs right): dpo 5.60-6.12,
    #: kto 4.11-6.10, simpo 5.37-5.91, orpo 3.11-3.63 (its preference term is weighted 0.1 next to plain NLL);
    #: dpo base: full (2e-3) 12.4-14.0. 0.5 is under half of orpo's weakest rise (1.16).
    min_margin_rise: ClassVar[float] = 0.5

    def write_data(self, directory: Path) -> Path:
        return write_jsonl(directory / "pairs.jsonl", pairs())

    def check_learned(self, run_dir: Path, model_dir: Path) -> None:
        import math

        assert all(math.isfinite(v) for v in logged_losses(run_dir)), logged_losses(run_dir)
        before, after = preference_margins(model_dir), preference_margins(run_dir)
        rise = (sum(after) - sum(before)) / len(before)
        assert rise > self.min_margin_rise, f"the chosen answers gained {rise:.3f} only: {before} -> {after}"
        # All 6 pairs came out right in every measured run, orpo's weakest by 0.05 nats: allow that one to flip.
        assert sum(m > 0 for m in after) >= len(after) - 1, (before, after)
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
    bad_options: ClassVar[list[dict[str, Any]]] = [
        {"base": "full", "beta": 0}, {"base": "ful"}, {"base": "full", "label_smoothing": 0.5},
        {"base": "full", "lable_smoothing": 0.1}]

    def check_learned(self, run_dir: Path, model_dir: Path) -> None:
        super().check_learned(run_dir, model_dir)
        assert json.loads((run_dir / "ft_run.json").read_text())["output"] == "model"
        assert (run_dir / "model.safetensors").is_file() and not (run_dir / "adapter_config.json").exists()



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
    from ftcore.config.schema import build_config
    from ftcore.errors import DataError
    from ftcore.jobs.train import run_training

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
    """Preference accuracy and margin rise after DPO on the pairs it trained on; a generation metric scores the
    prompts. (Pairs it never saw are no oracle: over seeds 42/1/2/3 their margin moved from 0.45 to anywhere
    between -0.50 and 1.70, since the tiny model does not generalise.)"""
    from ftcore.config.schema import build_config
    from ftcore.jobs.benchmark import run_benchmark
    from ftcore.jobs.train import run_training

    chats = [{"prompt": [{"role": "user", "content": f"Opposite of {a}?"}], "chosen": [{"role": "assistant", "content": b}],
              "rejected": [{"role": "assistant", "content": a}]} for a, b in WORDS[:4]]
    train = write_jsonl(tmp_path / "train.jsonl", chats, repeats=4)
    pairs_seen = write_jsonl(tmp_path / "pairs_seen.jsonl", chats, repeats=1)
    config = build_config({
        "model": str(tiny_model_dir), "method": "dpo", "method_options": {"beta": 0.5, "r": 8, "alpha": 16},
        "output_dir": str(tmp_path / "run"), "data": {"train": str(train), "cache_dir": str(tmp_path / "cache")},
        "training": {"max_steps": 15, "learning_rate": 1e-2, "batch_size": 4, "logging_steps": 1,
                     "lr_scheduler": "constant"},
    })
    run = run_training(config).run_dir
    from ftcore.contract.plugins import get_registry

    # A generation metric on the same pairs, where one is installed (ftmetrics; not in `nox -s plugin` for ftpref).
    generation = ["exact_match"] if "exact_match" in get_registry().metrics else []
    report = run_benchmark(run, data=pairs_seen, metrics=["preference_accuracy", "reward_margin", *generation],
                           output_dir=tmp_path / "bench")
    base, tuned = report.base.scores, report.tuned.scores
    # Measured on an AMD EPYC over seeds 42/1/2/3: margin -1.85 -> 2.99-4.75, accuracy 0.25 -> 0.5-1.0.
    assert tuned["reward_margin"] > base["reward_margin"] + 2.0, (base, tuned)
    assert tuned["preference_accuracy"] >= base["preference_accuracy"], (base, tuned)
    assert set(generation) <= set(tuned) and report.tuned.n_examples == 4

    # The run is a plain adapter run: ft merge folds it into a model plain transformers loads, same logits.
    import torch
    from transformers import AutoModelForCausalLM

    from ftcore.jobs.merge import merge_run
    from ftcore.models.loading import load_for_inference

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
    # Every logged counter (step, epoch, num_tokens) continues from the checkpoint as the uninterrupted run's did.
    counters, reference_counters = logged_counters(tmp_path / "run"), logged_counters(tmp_path / "reference")
    assert len(counters) == len(reference_counters) == 6 and all("num_tokens" in row for row in counters), counters
    for got, want in zip(counters, reference_counters, strict=True):
        assert got == pytest.approx(want), (got, want)
    assert not list((tmp_path / "run").rglob("ref")), "a reference adapter was saved"


def test_memory_estimate_counts_pairs_and_the_reference_pass(fresh_plugins):
    from ftcore.contract.plugins import get_registry
    from ftcore.models.estimate import ModelShape, estimate, setup_for

    registry = get_registry()
    shape = ModelShape("m", params=10_000_000, linear_params=8_000_000, linear_in_out=50_000, layers=4,
                       hidden=256, intermediate=1024, vocab=32_000)

    def total(method: str, **options: Any) -> Any:
        spec = registry.method(method)
        return estimate(shape, setup_for(spec, spec.options(**options), micro_batch=2, seq_len=128, checkpointing=False))

    lora = estimate(shape, setup_for(registry.method("lora"), None, micro_batch=2, seq_len=128, checkpointing=False))
    dpo, orpo, dpo_full = total("dpo"), total("orpo"), total("dpo", base="full")
    assert dpo.terms["activations"] == 2 * lora.terms["activations"] and dpo.terms["reference"] > 0
    assert "reference" not in orpo.terms and "reference" not in dpo_full.terms
    assert dpo_full.setup.full and total("dpo", base="qlora").setup.base_bits == 4


def _long_pairs() -> list[dict[str, str]]:
    """One pair that fits, one whose chosen answer runs past 48 tokens, one whose prompt alone fills them."""
    return [{"prompt": "Opposite of up:", "chosen": " down", "rejected": " up"},
            {"prompt": "Opposite of hot:", "chosen": " cold" * 30, "rejected": " hot"},
            {"prompt": "Opposite of big " + "and big " * 20 + ":", "chosen": " small", "rejected": " big"}]


def test_overlong_pairs_are_measured_as_trl_tokenizes_and_truncates_them(tiny_model_dir, tmp_path, fresh_plugins):
    """ft reports each pair's lengths, the pairs truncated and those left with no answer token (dropped with a
    warning); TRL's DPO trainer then tokenizes the kept pairs to exactly those lengths and truncates the same ones."""
    import torch
    from ftpref.encode import NO_ANSWER, measure
    from ftpref.options import DpoOptions
    from ftpref.trainers import build_trainer
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainingArguments

    from ftcore.config.schema import build_config
    from ftcore.data import prepare_data
    from ftcore.data.audit import report_lines

    data = write_jsonl(tmp_path / "long.jsonl", _long_pairs(), repeats=1)
    config = build_config({"model": str(tiny_model_dir), "method": "dpo", "output_dir": str(tmp_path / "run"),
                           "data": {"train": str(data), "max_seq_len": 48, "shuffle": False,
                                    "cache_dir": str(tmp_path / "cache")}})
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    prepared = prepare_data(config, tokenizer)
    stats = prepared.stats
    assert (stats["kept"], stats["truncated"], stats["dropped"]) == (2, 1, {NO_ANSWER: 1})
    source = stats["audit"]["sources"][0]
    assert set(source["part_lengths"]) == {"prompt", "chosen", "rejected"} and source["lengths"]["max"] > 48
    warnings = {w["code"]: w["message"] for w in stats["audit"]["warnings"]}
    assert warnings["nothing_trained"] == f"1 example (33.3%) dropped: {NO_ANSWER}, e.g. {data}:3"
    assert warnings["truncated_answers"].startswith(f"1 example (33.3%) is longer than max_seq_len (48) and loses "
                                                    f"the end of its answer, e.g. {data}:2")
    assert "; prompt " in report_lines(stats["audit"])[0]

    rows = prepared.train.to_dict()
    ours = measure(rows, ("chosen", "rejected"), tokenizer, 48)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    args = TrainingArguments(output_dir=str(tmp_path / "out"), per_device_train_batch_size=2, report_to=[])
    trainer = build_trainer("dpo", model, tokenizer, args, prepared.train, None, [], config, DpoOptions())
    theirs = trainer.train_dataset
    assert len(theirs) == 2  # TRL drops nothing more
    for name in ("prompt", "chosen", "rejected"):
        assert [len(ids) for ids in theirs[f"{name}_ids"]] == ours[f"length_{name}"], name
    assert trainer.args.max_length == 48 and trainer.args.truncation_mode == "keep_start"
    assert ours["status"] == ["kept", "truncated"]
    # The audit's tokens: each kept pair's longer sequence as TRL cuts it, of all the pairs' tokens.
    assert source["tokens_kept"] == sum(min(48, n) for n in ours["full_length"])
    assert source["tokens_in"] == source["tokens_kept"] + source["dropped_tokens"] > source["tokens_kept"]


def test_pairs_mostly_without_answer_tokens_are_refused(tiny_model_dir, tmp_path, fresh_plugins):
    from transformers import AutoTokenizer

    from ftcore.config.schema import build_config
    from ftcore.data import prepare_data
    from ftcore.errors import DataError

    data = write_jsonl(tmp_path / "long.jsonl", _long_pairs()[2:], repeats=2)
    config = build_config({"model": str(tiny_model_dir), "method": "dpo",
                           "data": {"train": str(data), "max_seq_len": 48, "cache_dir": str(tmp_path / "cache")}})
    with pytest.raises(DataError, match=r"2 of 2 examples have a prompt of data.max_seq_len \(48\) tokens or more"):
        prepare_data(config, AutoTokenizer.from_pretrained(tiny_model_dir))


@pytest.mark.parametrize("method", ["dpo", "kto"])
def test_console_lines_show_the_methods_numbers(method, tiny_model_dir, tmp_path, fresh_plugins, caplog):
    """Each logged step shows DPO's reward accuracy and margin beside the loss; KTO trains on measured rows too."""
    import logging

    from ftcore.config.schema import build_config
    from ftcore.jobs.train import run_training

    rows = pairs() if method == "dpo" else [{"prompt": r["prompt"], "completion": r[k], "label": k == "chosen"}
                                            for r in pairs() for k in ("chosen", "rejected")]
    data = write_jsonl(tmp_path / "prefs.jsonl", rows, repeats=1)
    config = build_config({"model": str(tiny_model_dir), "method": method, "output_dir": str(tmp_path / "run"),
                           "method_options": {"r": 4, "alpha": 8},
                           "data": {"train": str(data), "cache_dir": str(tmp_path / "cache")},
                           "training": {"max_steps": 2, "batch_size": 4, "logging_steps": 1}})
    with caplog.at_level(logging.INFO, logger="ftcore"):
        run_training(config)
    steps = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step ")]
    assert len(steps) == 2, steps
    if method == "dpo":
        assert all(" reward_acc " in line and " margin " in line for line in steps), steps
