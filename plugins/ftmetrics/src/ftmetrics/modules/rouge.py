"""ROUGE-1/2/L/Lsum F-measures, averaged over examples, computed with Google's ``rouge_score``."""

from __future__ import annotations

import re

import datasets
import evaluate
from rouge_score import rouge_scorer

_DESCRIPTION = """ROUGE F-measure of each prediction against its reference, averaged over the examples.
rougeLsum treats newlines as sentence boundaries. Unlike the Hub's `rouge`, the average is the plain mean
(no bootstrap resampling), so scores are deterministic."""

_KWARGS = """
Args:
    predictions: generated texts.
    references: one reference text per prediction.
    rouge_types: which of rouge1, rouge2, rougeL, rougeLsum (or rougeN) to compute.
    use_stemmer: apply the Porter stemmer to words before matching.
    tokenizer: "default" (rouge_score's: lowercase ASCII letters and digits only) or "unicode"
        (lowercase words of any script, so non-Latin text is scored too).
Returns:
    {rouge_type: mean F-measure in [0, 1]}
"""

_CITATION = "Lin, Chin-Yew. ROUGE: A Package for Automatic Evaluation of Summaries. 2004."


class _UnicodeTokenizer:
    """Lowercased ``\\w+`` words of any script (rouge_score's default drops non-ASCII characters)."""

    def tokenize(self, text: str) -> list[str]:
        return re.findall(r"\w+", text.lower())


class Rouge(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
            codebase_urls=["https://github.com/google-research/google-research/tree/master/rouge"],
        )

    def _compute(
        self,
        predictions: list[str],
        references: list[str],
        rouge_types: tuple[str, ...] = ("rouge1", "rouge2", "rougeL", "rougeLsum"),
        use_stemmer: bool = False,
        tokenizer: str = "default",
    ) -> dict[str, float]:
        if tokenizer not in ("default", "unicode"):
            raise ValueError(f"tokenizer must be 'default' or 'unicode', got {tokenizer!r}")
        scorer = rouge_scorer.RougeScorer(
            list(rouge_types),
            use_stemmer=use_stemmer,
            tokenizer=_UnicodeTokenizer() if tokenizer == "unicode" else None,
        )
        totals = dict.fromkeys(rouge_types, 0.0)
        for prediction, reference in zip(predictions, references, strict=True):
            # rouge_score's argument order is (target, prediction).
            scores = scorer.score(reference, prediction)
            for name in rouge_types:
                totals[name] += scores[name].fmeasure
        count = max(len(predictions), 1)
        return {name: total / count for name, total in totals.items()}
