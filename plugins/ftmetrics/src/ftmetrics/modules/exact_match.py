"""Share of predictions equal to their reference, after optional normalisation."""

from __future__ import annotations

import re
import string
import unicodedata

import datasets
import evaluate

_DESCRIPTION = """Fraction (0-1) of predictions that equal their reference after normalisation.
By default only leading and trailing whitespace is ignored."""

_KWARGS = """
Args:
    predictions: generated texts.
    references: one reference text per prediction.
    strip: ignore leading and trailing whitespace (default true).
    ignore_case: compare case-folded text.
    ignore_punctuation: drop Unicode punctuation characters.
    ignore_numbers: drop digits.
    collapse_whitespace: treat any run of whitespace as one space.
    regexes_to_ignore: regular expressions whose matches are removed first.
Returns:
    {"exact_match": fraction}
"""


def _without_punctuation(text: str) -> str:
    return "".join(ch for ch in text if not unicodedata.category(ch).startswith("P") and ch not in string.punctuation)


class ExactMatch(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(
        self,
        predictions: list[str],
        references: list[str],
        strip: bool = True,
        ignore_case: bool = False,
        ignore_punctuation: bool = False,
        ignore_numbers: bool = False,
        collapse_whitespace: bool = False,
        regexes_to_ignore: list[str] | None = None,
    ) -> dict[str, float]:
        patterns = [re.compile(p) for p in regexes_to_ignore or []]

        def normalise(text: str) -> str:
            for pattern in patterns:
                text = pattern.sub("", text)
            if ignore_case:
                text = text.casefold()
            if ignore_punctuation:
                text = _without_punctuation(text)
            if ignore_numbers:
                text = "".join(ch for ch in text if not ch.isdigit())
            if collapse_whitespace:
                text = " ".join(text.split())
            return text.strip() if strip else text

        matches = sum(normalise(p) == normalise(r) for p, r in zip(predictions, references, strict=True))
        return {"exact_match": matches / max(len(predictions), 1)}
