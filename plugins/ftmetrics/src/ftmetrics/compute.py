"""The metric computations behind ftmetrics' ``compute_metric`` hook.

ROUGE, BLEU, chrF and exact match are ``evaluate.Metric`` modules shipped in :mod:`ftmetrics.modules` and
loaded by path, so they behave like any ``evaluate`` metric and need no network. ``evaluate:<name>``
loads a metric from the Hugging Face Hub. Perplexity needs no module: it is the exponential of the
mean token negative log-likelihood that ft's evaluation loop hands over in ``context``.
"""

from __future__ import annotations

import functools
import inspect
import math
import os
from importlib import metadata
from pathlib import Path
from typing import Any

from ftcore import MetricResult, PluginError

MODULES_DIR = Path(__file__).parent / "modules"

#: metric name -> (the keys of its result that are scores, the library that computes it)
LOCAL_MODULES: dict[str, tuple[tuple[str, ...] | None, str]] = {
    "rouge": (None, "rouge_score"),  # None: every rouge type asked for
    "bleu": (("bleu",), "sacrebleu"),
    "chrf": (("chrf",), "sacrebleu"),
    "exact_match": (("exact_match",), ""),
}

HUB_PREFIX = "evaluate:"
OFFLINE_METRICS = "rouge, bleu, chrf, exact_match, perplexity"


def compute(name: str, predictions: list[str], references: list[str], context: dict[str, Any]) -> MetricResult | None:
    """Scores and details of metric ``name``, or ``None`` when ``name`` is not one of ftmetrics' metrics."""
    options = dict(context.get("options") or {})
    details: dict[str, Any] = {}
    if name == "perplexity":
        _reject_options(name, options, allowed=())
        return MetricResult(perplexity(context))
    if name in LOCAL_MODULES:
        return MetricResult(local_metric(name, predictions, references, options, details), details)
    if name == "evaluate":
        raise PluginError("metric 'evaluate' needs a name: write evaluate:<name>, e.g. evaluate:bertscore")
    if name.startswith(HUB_PREFIX):
        scores = hub_metric(name.removeprefix(HUB_PREFIX), predictions, references, options, details)
        return MetricResult(scores, details)
    return None


def perplexity(context: dict[str, Any]) -> dict[str, float]:
    """``exp(sum of token NLL / token count)`` from the evaluation loop's ``token_nll`` and ``token_count``."""
    missing = [key for key in ("token_nll", "token_count") if key not in context]
    if missing:
        raise PluginError(
            f"metric 'perplexity' needs {' and '.join(missing)} in its context; "
            "it is computed by `ft evaluate` from the model's loss on the references"
        )
    count = int(context["token_count"])
    if count <= 0:
        raise PluginError("metric 'perplexity': the references have no tokens to score")
    mean_nll = float(context["token_nll"]) / count
    # A huge mean NLL overflows exp(); the honest answer is an infinite perplexity.
    return {"perplexity": math.exp(mean_nll) if mean_nll < 700 else math.inf}


def local_metric(
    name: str, predictions: list[str], references: list[str], options: dict[str, Any], details: dict[str, Any]
) -> dict[str, float]:
    """Run one of ftmetrics' own ``evaluate`` modules; non-numeric outputs (signatures) go to ``details``."""
    module = load_local_module(name)
    _reject_options(name, options, allowed=_option_names(module))
    result = _run(name, module, predictions, references, options)
    score_keys, library = LOCAL_MODULES[name]
    keys = score_keys or tuple(result)
    details.update({key: value for key, value in result.items() if key not in keys})
    if library:
        details["implementation"] = f"{library} {metadata.version(library)}"
    if options:
        details["options"] = options
    return {key: float(result[key]) for key in keys}


@functools.cache
def load_local_module(name: str) -> Any:
    """The ``evaluate`` module of ftmetrics' metric ``name``, loaded from its file (works offline)."""
    import evaluate

    return evaluate.load(str(MODULES_DIR / f"{name}.py"), keep_in_memory=True)


def hub_metric(
    name: str, predictions: list[str], references: list[str], options: dict[str, Any], details: dict[str, Any]
) -> dict[str, float]:
    """Load metric ``name`` with ``evaluate.load`` (Hub or local path) and keep its numeric results."""
    import evaluate

    try:
        module = evaluate.load(name, keep_in_memory=True)
    except Exception as exc:
        offline = any(os.environ.get(v, "").upper() in ("1", "TRUE", "YES", "ON") for v in ("HF_HUB_OFFLINE", "HF_EVALUATE_OFFLINE"))
        why = "the Hub is off (HF_HUB_OFFLINE is set)" if offline else f"{type(exc).__name__}: {_first_line(exc)}"
        raise PluginError(
            f"metric 'evaluate:{name}': cannot load {name!r} with evaluate.load ({why})",
            hint=f"check the name and your network; ftmetrics' own metrics work offline: {OFFLINE_METRICS}",
        ) from exc
    result = _run(f"evaluate:{name}", module, predictions, references, options)
    details["implementation"] = f"evaluate {metadata.version('evaluate')}: {name}"
    return _numeric_scores(result, details)


def _run(label: str, module: Any, predictions: list[str], references: list[str], options: dict[str, Any]) -> dict[str, Any]:
    try:
        return module.compute(predictions=list(predictions), references=list(references), **options)
    except (TypeError, ValueError, KeyError) as exc:
        if not options:
            raise
        raise PluginError(f"metric {label!r} rejected its options {options}: {_first_line(exc)}") from exc


def _numeric_scores(result: dict[str, Any], details: dict[str, Any]) -> dict[str, float]:
    """Numbers become scores (lists of numbers their mean); anything else is kept as a detail."""
    scores: dict[str, float] = {}
    for key, value in result.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            scores[key] = float(value)
        elif isinstance(value, (list, tuple)) and value and all(isinstance(v, (int, float)) for v in value):
            scores[key] = sum(value) / len(value)
        else:
            details[key] = value if isinstance(value, (str, bool)) or value is None else repr(value)[:200]
    return scores


def _option_names(module: Any) -> tuple[str, ...]:
    parameters = inspect.signature(module._compute).parameters
    return tuple(p for p in parameters if p not in ("self", "predictions", "references"))


def _reject_options(name: str, options: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        known = ", ".join(allowed) if allowed else "none"
        raise PluginError(f"metric {name!r} has no option {', '.join(map(repr, unknown))}; its options: {known}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
