"""Corpus BLEU computed with ``sacrebleu``, returning sacrebleu's signature with the score."""

from __future__ import annotations

import datasets
import evaluate
from sacrebleu.metrics import BLEU

_DESCRIPTION = """Corpus-level BLEU (0-100) of the predictions against one reference each, by sacrebleu.
The signature names the tokenizer, smoothing and sacrebleu version, so scores can be compared."""

_KWARGS = """
Args:
    predictions: generated texts.
    references: one reference text per prediction.
    tokenize: sacrebleu tokenizer ("13a", "intl", "char", "zh", "none", ...).
    lowercase: compare lowercased text.
    smooth_method: "exp", "floor", "add-k" or "none".
Returns:
    {"bleu": score, "brevity_penalty", "precision_1".."precision_4", "signature": str}
"""

_CITATION = "Post, Matt. A Call for Clarity in Reporting BLEU Scores. WMT 2018."


class Bleu(evaluate.Metric):
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
        tokenize: str = "13a",
        lowercase: bool = False,
        smooth_method: str = "exp",
    ) -> dict[str, float | str]:
        bleu = BLEU(tokenize=tokenize, lowercase=lowercase, smooth_method=smooth_method)
        score = bleu.corpus_score(list(predictions), [list(references)])
        result: dict[str, float | str] = {"bleu": score.score, "brevity_penalty": score.bp}
        for n, precision in enumerate(score.precisions, start=1):
            result[f"precision_{n}"] = precision
        result["signature"] = str(bleu.get_signature())
        return result
