"""ftmetrics: ROUGE, BLEU, chrF, exact match and perplexity for ``ft evaluate`` and ``ft benchmark``.

The entry module stays light (no ``evaluate``, ``datasets`` or ``torch`` at import time):
registering the metrics costs nothing, and :mod:`ftmetrics.compute` is imported only to score.
"""

from __future__ import annotations

from typing import Any

from ftcore import MetricSpec, hookimpl

__version__ = "0.1.0"

METRICS = (
    MetricSpec("rouge", "ROUGE-1/2/L/Lsum F-measure, 0-1 (rouge_score); options: use_stemmer, tokenizer, rouge_types"),
    MetricSpec("bleu", "corpus BLEU, 0-100, with its sacrebleu signature; options: tokenize, lowercase, smooth_method"),
    MetricSpec("chrf", "corpus chrF, 0-100 (sacrebleu); options: char_order, word_order (2: chrF++), beta, lowercase"),
    MetricSpec(
        "exact_match",
        "share of exact matches, 0-1; options: strip, ignore_case, ignore_punctuation, ignore_numbers, "
        "collapse_whitespace, regexes_to_ignore",
    ),
    MetricSpec("perplexity", "exp of the mean token NLL of the references", needs="loss", higher_is_better=False),
    MetricSpec("evaluate", "any metric of the `evaluate` library as evaluate:<name> (needs the Hugging Face Hub)"),
)


@hookimpl
def register_metrics() -> list[MetricSpec]:
    """ftmetrics' metrics (``evaluate:<name>`` resolves to the ``evaluate`` entry)."""
    return list(METRICS)


@hookimpl
def compute_metric(
    name: str, predictions: list[str], references: list[str], context: dict[str, Any]
) -> Any:
    """Score with one of ftmetrics' metrics (a :class:`ftcore.MetricResult`)."""
    from ftmetrics.compute import compute

    return compute(name, predictions, references, context)
