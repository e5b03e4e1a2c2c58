"""Corpus chrF (or chrF++ with word_order=2) computed with ``sacrebleu``, with its signature."""

from __future__ import annotations

import datasets
import evaluate
from sacrebleu.metrics import CHRF

_DESCRIPTION = """Corpus-level character n-gram F-score (0-100) by sacrebleu; word_order=2 gives chrF++."""

_KWARGS = """
Args:
    predictions: generated texts.
    references: one reference text per prediction.
    char_order: character n-gram order (default 6).
    word_order: word n-gram order (0: chrF, 2: chrF++).
    beta: weight of recall relative to precision (default 2).
    lowercase: compare lowercased text.
    whitespace: keep whitespace when extracting character n-grams.
Returns:
    {"chrf": score, "signature": str}
"""

_CITATION = "Popovic, Maja. chrF: character n-gram F-score for automatic MT evaluation. WMT 2015."


class Chrf(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
            codebase_urls=["https://github.com/mjpost/sacrebleu"],
        )

    def _compute(
        self,
        predictions: list[str],
        references: list[str],
        char_order: int = 6,
        word_order: int = 0,
        beta: int = 2,
        lowercase: bool = False,
        whitespace: bool = False,
    ) -> dict[str, float | str]:
        chrf = CHRF(char_order=char_order, word_order=word_order, beta=beta, lowercase=lowercase, whitespace=whitespace)
        score = chrf.corpus_score(list(predictions), [list(references)])
        return {"chrf": score.score, "signature": str(chrf.get_signature())}
