"""ft evaluate end to end on real tiny models: generation, perplexity, eval.json, predictions.jsonl."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from adapter_runs import WORDS, repeat_task, trained_run
from data_helpers import write_jsonl

from ftcore.errors import DataError, UsageError


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_model_dir) -> Path:
    return trained_run(tmp_path_factory, tiny_model_dir)


@pytest.fixture
def heldout(tmp_path) -> Path:
    return write_jsonl(tmp_path / "heldout.jsonl", repeat_task(WORDS[:5], WORDS[4:6]))


def test_ft_evaluate_run_dir_writes_eval_json(run_dir, heldout, tmp_path):
    from ftcore.testing.process import run_ft

    out = tmp_path / "eval"
    result = run_ft(
        "evaluate", str(run_dir), "--data", str(heldout), "--metrics", "rouge,bleu,exact_match,perplexity",
        "--max-new-tokens", "5", "--batch-size", "4", "--limit", "6", "--ci", "--ci-resamples", "30",
        "--metric-option", "rouge.use_stemmer=true", "--output", str(out),
    )
    assert result.returncode == 0, result.stderr
    assert "6 examples" in result.stdout and "perplexity" in result.stdout and "95% CI" in result.stdout

    report = json.loads((out / "eval.json").read_text())
    assert report["model"] == str(run_dir) and report["data"] == str(heldout)
    assert report["n_examples"] == 6
    assert report["data_fingerprint"].startswith("sha256:")
    assert report["generation"] == {"max_new_tokens": 5, "batch_size": 4, "do_sample": False, "temperature": 1.0, "top_p": 1.0, "seed": 0}
    assert set(report["scores"]) == {"rouge1", "rouge2", "rougeL", "rougeLsum", "bleu", "exact_match", "perplexity"}
    bleu = report["metrics"]["bleu"]
    assert bleu["dist"] == "ftmetrics" and bleu["version"] and bleu["signature"].startswith("nrefs:1|case:mixed")
    assert report["metrics"]["rouge"]["options"] == {"use_stemmer": True}
    assert report["metrics"]["perplexity"]["higher_is_better"] is False
    for name, interval in report["ci"].items():
        assert interval["low"] <= report["scores"][name] + 1e-9 and report["scores"][name] <= interval["high"] + 1e-9
        assert interval["resamples"] == 30
    assert report["loss"]["token_count"] > 0
    assert math.exp(report["loss"]["mean_token_nll"]) == pytest.approx(report["scores"]["perplexity"])

    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 6
    assert rows[0]["prompt"] == "Repeat: red black\nAnswer:" and rows[0]["reference"] == " red black"
    assert all(isinstance(row["prediction"], str) for row in rows)

    # The saved predictions are enough to recompute the scores.
    from ftcore.contract.plugins import get_registry

    recomputed = get_registry().call(
        "compute_metric", "metric", "bleu", name="bleu", predictions=[r["prediction"] for r in rows],
        references=[r["reference"] for r in rows], context={},
    )
    assert recomputed.scores["bleu"] == pytest.approx(report["scores"]["bleu"])


def test_an_earlier_evaluation_is_replaced_only_with_overwrite(run_dir, heldout, tmp_path, capsys, fresh_plugins):
    """A second ``ft evaluate`` into the same directory refuses before loading, naming the file, and leaves the
    earlier files as they were; ``--overwrite`` replaces them."""
    from ftcore.cli import main

    out = tmp_path / "eval"

    def evaluate(*extra: str) -> tuple[int, str]:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exited:
            main(["-q", "evaluate", str(run_dir), "--data", str(heldout), "--metrics", "exact_match",
                  "--max-new-tokens", "2", "--limit", "2", "--output", str(out), *extra])
        return exited.value.code, capsys.readouterr().err

    assert evaluate()[0] == 0
    (out / "eval.json").write_text("the earlier evaluation\n")
    status, stderr = evaluate()
    assert status == 1 and stderr == (f"error: --output: {out}/eval.json exists (an earlier evaluation); choose "
                                      "another --output or pass --overwrite to replace it\n")
    assert (out / "eval.json").read_text() == "the earlier evaluation\n"
    assert evaluate("--overwrite")[0] == 0
    assert json.loads((out / "eval.json").read_text())["n_examples"] == 2


def test_perplexity_equals_hand_computed_token_nll(tiny_model_dir, heldout):
    """exp(mean NLL of completion + EOS tokens), computed here with plain torch, as training masks the loss."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ftcore.jobs.evaluation import evaluate_model

    result = evaluate_model(tiny_model_dir, heldout, ["perplexity"], limit=4)

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    total, count = 0.0, 0
    for row in [json.loads(line) for line in heldout.read_text().splitlines()][:4]:
        prompt_ids = tokenizer(row["prompt"])["input_ids"]
        ids = tokenizer(row["prompt"] + row["completion"] + tokenizer.eos_token)["input_ids"]
        assert ids[: len(prompt_ids)] == prompt_ids  # the prompt tokenises the same on its own
        with torch.no_grad():
            log_probs = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), dim=-1)
        for t in range(len(prompt_ids), len(ids)):
            total -= float(log_probs[t - 1, ids[t]])
            count += 1
    assert result.loss["token_count"] == count
    assert result.scores["perplexity"] == pytest.approx(math.exp(total / count), rel=1e-5)


def test_left_padded_batches_generate_what_single_prompts_do(tiny_model_dir):
    from ftcore.models.generation import GenerationSettings, generate_predictions
    from ftcore.models.loading import load_for_inference

    model, tokenizer = load_for_inference(tiny_model_dir)
    prompts = [tokenizer(text)["input_ids"] for text in ["Hello", "The blue river and the green tree", "Cat", "one two three four five six"]]
    assert len({len(p) for p in prompts}) >= 3  # different lengths, so the batch is padded
    batched = generate_predictions(model, tokenizer, prompts, GenerationSettings(max_new_tokens=6, batch_size=4))
    single = generate_predictions(model, tokenizer, prompts, GenerationSettings(max_new_tokens=6, batch_size=1))
    assert batched == single
    assert any(batched)


def test_generation_stops_at_eos(tiny_model_dir):
    from ftcore.models.generation import GenerationSettings, generate_predictions
    from ftcore.models.loading import load_for_inference

    model, tokenizer = load_for_inference(tiny_model_dir)
    prompt = tokenizer("Hello world")["input_ids"]
    settings = GenerationSettings(max_new_tokens=4, batch_size=1)
    free = generate_predictions(model, tokenizer, [prompt], settings)
    assert free[0]
    # Make the model's first greedy token an end-of-sequence token: nothing may be generated after it.
    first = int(model(**tokenizer("Hello world", return_tensors="pt")).logits[0, -1].argmax())
    model.generation_config.eos_token_id = first
    assert generate_predictions(model, tokenizer, [prompt], settings) == [""]


def test_sampling_is_seeded(tiny_model_dir):
    from ftcore.models.generation import GenerationSettings, generate_predictions
    from ftcore.models.loading import load_for_inference

    model, tokenizer = load_for_inference(tiny_model_dir)
    prompts = [tokenizer("Hello")["input_ids"]] * 3

    def sample(seed):
        return generate_predictions(model, tokenizer, prompts, GenerationSettings(max_new_tokens=8, do_sample=True, seed=seed))

    assert sample(1) == sample(1)
    assert sample(1) != sample(2)


def test_chat_examples_are_prompted_with_the_chat_template(tiny_model_dir, tmp_path):
    from ftcore.jobs.evaluation import evaluate_model
    from ftcore.models.generation import GenerationSettings

    data = write_jsonl(tmp_path / "chat.jsonl", [
        {"messages": [{"role": "user", "content": "Name a color"}, {"role": "assistant", "content": "blue"}]},
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "One plus two?"},
                      {"role": "assistant", "content": "three"}]},
    ])
    settings = GenerationSettings(max_new_tokens=4)
    result = evaluate_model(tiny_model_dir, data, ["exact_match", "perplexity"], settings=settings, output_dir=tmp_path / "out")
    assert result.examples[0].prompt == "<|im_start|>user\nName a color<|im_end|>\n<|im_start|>assistant\n"
    assert result.examples[1].reference == "three"
    # The loss covers each reply and its end-of-turn marker, as in training.
    assert result.examples[0].token_count >= 2
    assert (tmp_path / "out" / "eval.json").is_file()


def test_reference_file_without_needed_fields_says_which(tiny_model_dir, tmp_path):
    from ftcore.jobs.evaluation import evaluate_model
    from ftcore.models.generation import GenerationSettings

    text_only = write_jsonl(tmp_path / "text.jsonl", [{"text": "just some text"}])
    with pytest.raises(DataError, match=r"text\.jsonl: example 1 has no reference answer \(fields: text\).*'prompt' and 'completion'"):
        evaluate_model(tiny_model_dir, text_only, ["rouge"], settings=GenerationSettings(max_new_tokens=2))
    no_reply = write_jsonl(tmp_path / "chat.jsonl", [{"messages": [{"role": "user", "content": "hi"}]}])
    with pytest.raises(DataError, match="example 1 has no assistant message"):
        evaluate_model(tiny_model_dir, no_reply, ["rouge"], settings=GenerationSettings(max_new_tokens=2))
    empty_prompt = write_jsonl(tmp_path / "empty.jsonl", [{"prompt": "", "completion": "x"}])
    with pytest.raises(DataError, match="example 1 has an empty prompt"):
        evaluate_model(tiny_model_dir, empty_prompt, ["rouge"], settings=GenerationSettings(max_new_tokens=2))


def test_unknown_format_names_the_fields(tiny_model_dir, tmp_path):
    from ftcore.jobs.evaluation import evaluate_model

    odd = write_jsonl(tmp_path / "odd.jsonl", [{"query": "q", "label": "a"}])
    with pytest.raises(DataError, match=r"odd\.jsonl: cannot detect the data format from the fields 'label', 'query'"):
        evaluate_model(tiny_model_dir, odd, ["rouge"])


def test_bad_requests_fail_before_the_model_loads(tmp_path):
    from ftcore.errors import PluginError
    from ftcore.jobs.evaluation import evaluate_model, parse_metric_names, parse_metric_options

    missing_model = tmp_path / "nowhere"
    with pytest.raises(PluginError, match="unknown metric 'blue'"):
        evaluate_model(missing_model, tmp_path / "x.jsonl", ["blue"])
    with pytest.raises(DataError, match="file not found"):
        evaluate_model(missing_model, tmp_path / "x.jsonl", ["bleu"])
    with pytest.raises(UsageError, match="not among the requested metrics"):
        evaluate_model(missing_model, tmp_path / "x.jsonl", ["bleu"], metric_options={"rouge": {"use_stemmer": True}})
    assert parse_metric_names(["rouge, bleu", "rouge"]) == ["rouge", "bleu"]
    assert parse_metric_options(["rouge.use_stemmer=true", "bleu.tokenize=intl"]) == {
        "rouge": {"use_stemmer": True}, "bleu": {"tokenize": "intl"}
    }
    with pytest.raises(UsageError, match="METRIC.OPTION=VALUE"):
        parse_metric_options(["use_stemmer=true"])


def test_own_data_is_for_metrics_that_score_with_the_model():
    from ftcore import MetricSpec

    assert MetricSpec("harness", needs="model", own_data=True).own_data
    with pytest.raises(ValueError, match="own_data=True needs needs='model'"):
        MetricSpec("harness", own_data=True)
