"""ftmetrics against independent computations: rouge_score and sacrebleu called directly, and torch."""

from __future__ import annotations

import math

import pytest

from ftcore import MetricResult
from ftcore.contract.plugins import get_registry
from ftcore.errors import PluginError

PREDICTIONS = [
    "the cat sat on the mat",
    "",
    "a quick brown fox jumps over the lazy dog",
    "naïve café — déjà vu",
    "Das Wetter ist heute schön.",
    "running runners ran",
    "完全に一致",
]
REFERENCES = [
    "the cat is sitting on the mat",
    "something, not nothing",
    "the quick brown fox jumped over a lazy dog",
    "naïve café, déjà vu!",
    "Das Wetter ist heute schön.",
    "the runner runs",
    "完全に一致",
]


def result(name: str, predictions=PREDICTIONS, references=REFERENCES, **context) -> MetricResult:
    """What the ``compute_metric`` hook returns for metric ``name``, called as ft calls it: on the plugin that registered
    the metric (``evaluate:NAME`` is the ``evaluate`` entry's)."""
    found = get_registry().call("compute_metric", "metric", name.partition(":")[0], name=name, predictions=predictions,
                                references=references, context=context)
    assert isinstance(found, MetricResult), found
    return found


def compute(name: str, predictions=PREDICTIONS, references=REFERENCES, **context) -> dict[str, float]:
    """The scores of metric ``name``."""
    return result(name, predictions, references, **context).scores


def rouge_reference(use_stemmer: bool, tokenizer=None) -> dict[str, float]:
    from rouge_score import rouge_scorer

    types = ["rouge1", "rouge2", "rougeL", "rougeLsum"]
    scorer = rouge_scorer.RougeScorer(types, use_stemmer=use_stemmer, tokenizer=tokenizer)
    scores = [scorer.score(ref, pred) for pred, ref in zip(PREDICTIONS, REFERENCES, strict=True)]
    return {t: sum(s[t].fmeasure for s in scores) / len(scores) for t in types}


@pytest.mark.parametrize("use_stemmer", [False, True])
def test_rouge_equals_rouge_score(use_stemmer):
    got = compute("rouge", options={"use_stemmer": use_stemmer})
    expected = rouge_reference(use_stemmer)
    assert got == pytest.approx(expected, abs=1e-12)
    assert 0 < got["rouge1"] < 1


def test_rouge_stemming_changes_the_score():
    assert compute("rouge", options={"use_stemmer": True})["rouge1"] > compute("rouge")["rouge1"]


def test_rouge_unicode_tokenizer_scores_non_latin_text():
    class Words:
        def tokenize(self, text):
            import re

            return re.findall(r"\w+", text.lower())

    got = compute("rouge", options={"tokenizer": "unicode"})
    assert got == pytest.approx(rouge_reference(False, Words()), abs=1e-12)
    # The Japanese pair matches only when its characters survive tokenisation.
    only_japanese = compute("rouge", PREDICTIONS[-1:], REFERENCES[-1:], options={"tokenizer": "unicode"})
    assert only_japanese["rouge1"] == 1.0
    assert compute("rouge", PREDICTIONS[-1:], REFERENCES[-1:])["rouge1"] == 0.0


def test_bleu_equals_sacrebleu_and_records_its_signature():
    import sacrebleu

    got = compute("bleu")
    expected = sacrebleu.corpus_bleu(PREDICTIONS, [REFERENCES])
    assert got == {"bleu": pytest.approx(expected.score, abs=1e-9)}

    lowered = result("bleu", options={"lowercase": True})
    assert lowered.scores["bleu"] == pytest.approx(sacrebleu.corpus_bleu(PREDICTIONS, [REFERENCES], lowercase=True).score)
    signature = lowered.details["signature"]
    assert f"version:{sacrebleu.__version__}" in signature and "case:lc" in signature and "tok:13a" in signature


def test_chrf_equals_sacrebleu():
    import sacrebleu

    assert compute("chrf")["chrf"] == pytest.approx(sacrebleu.corpus_chrf(PREDICTIONS, [REFERENCES]).score, abs=1e-9)
    chrf_pp = compute("chrf", options={"word_order": 2})["chrf"]
    assert chrf_pp == pytest.approx(sacrebleu.corpus_chrf(PREDICTIONS, [REFERENCES], word_order=2).score, abs=1e-9)


def test_all_empty_predictions_score_zero():
    empty = [""] * 3
    refs = ["a b c", "d e", "f"]
    assert compute("rouge", empty, refs)["rouge1"] == 0.0
    assert compute("bleu", empty, refs)["bleu"] == 0.0
    assert compute("exact_match", empty, refs)["exact_match"] == 0.0
    assert compute("exact_match", empty, [""] * 3)["exact_match"] == 1.0


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, 2 / 7),  # identical German and Japanese pairs
        ({"strip": False}, 2 / 7),
        # The em dash and the comma/exclamation are Unicode punctuation: the café pair then matches too.
        ({"ignore_case": True, "ignore_punctuation": True, "collapse_whitespace": True}, 3 / 7),
        ({"ignore_case": True, "ignore_punctuation": True}, 2 / 7),  # "café  déjà" keeps a double space
    ],
)
def test_exact_match_on_the_shared_pairs(options, expected):
    assert compute("exact_match", options=options)["exact_match"] == pytest.approx(expected)


def test_exact_match_normalisation_options():
    preds = ["  Paris. ", "the ANSWER is 42", "a\tb", "ÉTÉ!"]
    refs = ["paris", "The answer is", "a b", "été"]

    def score(**options):
        return compute("exact_match", preds, refs, options=options)["exact_match"]

    assert score() == 0.0
    assert score(ignore_case=True, ignore_punctuation=True) == 0.5  # Paris, ÉTÉ
    assert score(ignore_case=True, ignore_punctuation=True, ignore_numbers=True) == 0.75
    assert score(ignore_case=True, ignore_punctuation=True, ignore_numbers=True, collapse_whitespace=True) == 1.0
    assert score(regexes_to_ignore=[r"\s*42$", r"^\s+|[.\s]+$"], ignore_case=True) == 0.5


def test_perplexity_of_the_tiny_model_is_exp_of_mean_token_nll(tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    nll_sum, count, per_token = 0.0, 0, []
    for text in ["The cat sat on the mat.", "Hello world, one two three!", "Blue river"]:
        ids = torch.tensor([tokenizer(text)["input_ids"]])
        with torch.no_grad():
            logits = model(ids).logits[0, :-1]
        log_probs = torch.log_softmax(logits.double(), dim=-1)
        nll = -log_probs.gather(1, ids[0, 1:, None]).squeeze(1)
        per_token.extend(nll.tolist())
        nll_sum += float(nll.sum())
        count += nll.numel()
    expected = math.exp(sum(per_token) / len(per_token))
    got = compute("perplexity", [], [], token_nll=nll_sum, token_count=count)
    assert got == {"perplexity": pytest.approx(expected, rel=1e-9)}
    # A random model over a ~500-token vocabulary is close to uniform.
    assert 100 < got["perplexity"] < 2000


def test_perplexity_without_loss_context_says_so():
    with pytest.raises(PluginError, match="token_nll and token_count"):
        compute("perplexity", [], [])


def test_metrics_are_evaluate_modules():
    import evaluate
    from ftmetrics.compute import load_local_module

    for name in ("rouge", "bleu", "chrf", "exact_match"):
        module = load_local_module(name)
        assert isinstance(module, evaluate.Metric)
        assert module.compute(predictions=["a b"], references=["a b"])


def test_evaluate_prefix_loads_any_evaluate_module(tmp_path):
    from ftmetrics.compute import MODULES_DIR

    name = f"evaluate:{MODULES_DIR / 'exact_match.py'}"
    assert compute(name, ["A", "b"], ["a", "c"], options={"ignore_case": True}) == {"exact_match": 0.5}


def test_evaluate_prefix_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PluginError, match=r"evaluate:bertscore.*HF_HUB_OFFLINE.*work offline: rouge"):
        compute("evaluate:bertscore")


def test_unknown_option_lists_the_metric_options():
    with pytest.raises(PluginError, match=r"no option 'stem'; its options: .*use_stemmer"):
        compute("rouge", options={"stem": True})


def test_unknown_metric_lists_installed_metrics(fresh_plugins):
    from ftcore.jobs.evaluation import resolve_metrics

    with pytest.raises(PluginError, match=r"unknown metric 'rogue' \(did you mean 'rouge'\?\); installed metrics: .*bleu.*perplexity"):
        resolve_metrics(["rouge", "rogue"])
    resolved = resolve_metrics(["rouge", "perplexity", "evaluate:accuracy"])
    assert [r.spec.name for r in resolved] == ["rouge", "perplexity", "evaluate"]
    assert resolved[1].spec.needs == "loss" and not resolved[1].spec.higher_is_better
    assert resolved[0].plugin.dist == "ftmetrics"


def test_no_metrics_plugin_explains_how_to_install(fresh_plugins):
    from ftcore.contract.plugins import disable
    from ftcore.jobs.evaluation import resolve_metrics

    disable(["ftmetrics", "ftpref", "ftlmeval"])  # every plugin that registers metrics, where installed
    with pytest.raises(PluginError, match=r"installed metrics: none \(install one, e\.g\. `pip install ftmetrics`\)"):
        resolve_metrics(["rouge"])


def test_cli_without_metrics_plugin_explains_how_to_install(tmp_path):
    import os
    import subprocess
    import sys

    data = tmp_path / "d.jsonl"
    data.write_text('{"prompt": "a", "completion": "b"}\n')
    # Every plugin that registers metrics is left out (ftpref's and ftlmeval's too, where installed).
    disabled = ["--disable", "ftmetrics", "--disable", "ftpref", "--disable", "ftlmeval"]
    for args, env in ((disabled, {}), ([], {"FT_PLUGINS": "-ftmetrics,-ftpref,-ftlmeval"})):
        command = [sys.executable, "-m", "ftcore", *args, "evaluate", str(tmp_path / "no-model"), "--data", str(data),
                   "--metrics", "rouge"]
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1", **env})
        assert done.returncode != 0
        assert "pip install ftmetrics" in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


def test_ftmetrics_entry_module_and_commands_import_nothing_heavy():
    import subprocess
    import sys

    code = (
        "import sys, ftmetrics, ftcore.commands.evaluate, ftcore.commands.benchmark, ftcore.jobs.evaluation, ftcore.jobs.benchmark\n"
        "from ftcore.contract.plugins import get_registry\n"
        "assert 'rouge' in get_registry().metrics\n"
        "heavy = [m for m in ('torch', 'transformers', 'evaluate', 'datasets', 'matplotlib', 'sacrebleu') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
