"""Evaluate a model on a file of examples: generate answers, score them, measure perplexity, write eval.json.

``evaluate_model`` is what ``ft evaluate`` runs and what ``ft benchmark`` runs twice. Metrics come from
plugins through the ``compute_metric`` hook; this module only produces what they score: generated
predictions for ``needs="generation"`` metrics, and the token-level loss of the references, masked exactly
as in training, for ``needs="loss"`` metrics such as perplexity.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftcore.errors import DataError, PluginError, UsageError

if TYPE_CHECKING:
    from ftcore.config import DataConfig
    from ftcore.plugins import PluginInfo
    from ftcore.specs import MetricSpec

log = logging.getLogger(__name__)

DEFAULT_METRICS = ("rouge", "bleu", "perplexity")


@dataclass(frozen=True)
class GenerationSettings:
    """How predictions are generated: the same for every model compared in a benchmark."""

    max_new_tokens: int = 128
    batch_size: int = 8
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0


@dataclass(frozen=True)
class ResolvedMetric:
    """A requested metric name with the spec and plugin that provide it."""

    name: str
    spec: MetricSpec
    plugin: PluginInfo


@dataclass
class Example:
    """One evaluated example: what the model saw, what it should say, what it said."""

    prompt: str
    reference: str
    prediction: str = ""
    token_nll: float = 0.0
    token_count: int = 0
    prompt_ids: list[int] = field(default_factory=list, repr=False)


@dataclass
class EvalResult:
    """Everything ``eval.json`` holds, plus the examples (written to ``predictions.jsonl``)."""

    model: str
    data: str
    data_fingerprint: str
    n_examples: int
    generation: dict[str, Any]
    scores: dict[str, float]
    metrics: dict[str, dict[str, Any]]
    ci: dict[str, dict[str, float]] = field(default_factory=dict)
    loss: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    examples: list[Example] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The ``eval.json`` payload (examples are in ``predictions.jsonl``)."""
        payload = asdict(self)
        payload.pop("examples")
        payload["ftcore_version"] = _ftcore_version()
        return payload


# ----------------------------------------------------------------------------- metric names


def parse_metric_names(text: str | list[str] | tuple[str, ...]) -> list[str]:
    """``"rouge, bleu"`` (or a list of such strings) -> ``["rouge", "bleu"]``, duplicates removed."""
    items = [text] if isinstance(text, str) else list(text)
    names = [name.strip() for item in items for name in item.split(",") if name.strip()]
    if not names:
        raise UsageError("--metrics: no metric named (e.g. --metrics rouge,bleu,perplexity)")
    return list(dict.fromkeys(names))


def resolve_metrics(names: list[str]) -> list[ResolvedMetric]:
    """Look each name up among the installed metrics (``evaluate:x`` resolves to ``evaluate``).

    Raises :class:`PluginError` listing the installed metrics (and how to install some) for an unknown name.
    """
    from ftcore.plugins import get_registry, unknown_name_message

    registry = get_registry()
    resolved = []
    for name in names:
        base = name.split(":", 1)[0]
        if base not in registry.metrics:
            raise PluginError(unknown_name_message("metric", name, sorted(registry.metrics), registry.failed))
        spec, plugin = registry.metrics[base]
        resolved.append(ResolvedMetric(name, spec, plugin))
    return resolved


def parse_metric_options(items: list[str] | tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """``["rouge.use_stemmer=true"]`` -> ``{"rouge": {"use_stemmer": True}}`` (values parsed as YAML)."""
    import yaml

    options: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        metric, dot, option = key.strip().rpartition(".")
        if not sep or not dot or not metric or not option:
            raise UsageError(f"--metric-option {item!r}: expected METRIC.OPTION=VALUE, e.g. rouge.use_stemmer=true")
        options.setdefault(metric, {})[option] = yaml.safe_load(raw) if raw.strip() else ""
    return options


# ----------------------------------------------------------------------------- data


def data_config_for(model_or_run_dir: str | Path, data: str | Path) -> DataConfig:
    """The data settings to read ``data`` with: a run's own (format, columns, template), else defaults."""
    from ftcore.config import DataConfig
    from ftcore.rundir import is_run_dir, load_run

    if is_run_dir(str(model_or_run_dir)):
        raw = dict(load_run(model_or_run_dir).config.get("data") or {})
        raw.update({"train": str(data), "eval": None, "eval_ratio": 0.0, "packing": False})
        return DataConfig.model_validate(raw)
    return DataConfig(train=str(data))


def load_eval_examples(data: str | Path, data_config: DataConfig, tokenizer: Any, limit: int | None) -> tuple[list[Example], list[dict[str, Any]]]:
    """The examples of ``data`` split into prompt and reference, and the canonical records they came from."""
    from ftcore.data import load_examples, prompt_and_reference, prompt_token_ids

    records = _as_records(load_examples(str(data), data_config), limit)
    if not records:
        raise DataError(f"{data}: no examples to evaluate")
    _require_references(data, records)
    examples = []
    for i, record in enumerate(records, start=1):
        prompt, reference = prompt_and_reference(record, tokenizer, data_config)
        prompt_ids = prompt_token_ids(prompt, record, tokenizer)
        if not prompt_ids:
            raise DataError(f"{data}: example {i} has an empty prompt; there is nothing to generate an answer from")
        examples.append(Example(prompt=prompt, reference=reference, prompt_ids=prompt_ids))
    return examples, records


def _as_records(examples: Any, limit: int | None) -> list[dict[str, Any]]:
    if limit is not None and limit < len(examples):
        examples = examples.select(range(limit)) if hasattr(examples, "select") else examples[:limit]
    return [dict(row) for row in examples]


def _require_references(data: str | Path, records: list[dict[str, Any]]) -> None:
    """Evaluation needs an answer to compare with: prompt + completion, or messages ending in an assistant reply."""
    for i, record in enumerate(records, start=1):
        messages = record.get("messages")
        if messages:
            if not any(m.get("role") == "assistant" for m in messages):
                raise DataError(
                    f"{data}: example {i} has no assistant message to use as the reference",
                    hint="end each conversation with the expected assistant reply",
                )
        elif record.get("completion") is None:
            fields = ", ".join(sorted(k for k, v in record.items() if v is not None))
            raise DataError(
                f"{data}: example {i} has no reference answer (fields: {fields}); evaluation needs "
                "'prompt' and 'completion', or 'messages' ending with an assistant reply",
                hint="map your columns with a run's data.columns, or convert the file",
            )


def data_fingerprint(records: list[dict[str, Any]]) -> str:
    """A digest of the canonical examples evaluated (so two evaluations can be checked to match)."""
    digest = hashlib.sha256()
    for record in records:
        digest.update(json.dumps(record, sort_keys=True, ensure_ascii=False, default=str).encode())
        digest.update(b"\n")
    return "sha256:" + digest.hexdigest()[:32]


# ----------------------------------------------------------------------------- generation


def generate_predictions(model: Any, tokenizer: Any, prompts: list[list[int]], settings: GenerationSettings) -> list[str]:
    """Continue each tokenized prompt (batched, left-padded, stopping at EOS); returns the new text of each."""
    import torch
    from tqdm.auto import tqdm

    pad_id = _pad_id(tokenizer)
    kwargs = _generate_kwargs(model, tokenizer, settings, pad_id)
    torch.manual_seed(settings.seed)
    # Batches of similar length waste less compute on padding; the original order is restored after.
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    outputs: dict[int, str] = {}
    with tqdm(total=len(prompts), desc="generating", unit="ex", leave=False) as bar:
        for start in range(0, len(order), settings.batch_size):
            batch = order[start : start + settings.batch_size]
            input_ids, attention_mask = left_padded([prompts[i] for i in batch], pad_id)
            with torch.no_grad():
                generated = model.generate(
                    input_ids=input_ids.to(model.device), attention_mask=attention_mask.to(model.device), **kwargs
                )
            new_tokens = [until_stop(row, kwargs["eos_token_id"]) for row in generated[:, input_ids.shape[1] :].tolist()]
            for i, text in zip(batch, tokenizer.batch_decode(new_tokens, skip_special_tokens=True), strict=True):
                outputs[i] = text.strip()
            bar.update(len(batch))
    return [outputs[i] for i in range(len(prompts))]


def until_stop(tokens: list[int], stop_ids: list[int]) -> list[int]:
    """The generated tokens before the first stop token (which is not part of the answer, special or not)."""
    stops = set(stop_ids)
    for position, token in enumerate(tokens):
        if token in stops:
            return tokens[:position]
    return tokens


def left_padded(rows: list[list[int]], pad_id: int) -> tuple[Any, Any]:
    """``(input_ids, attention_mask)`` tensors with padding on the left, so every prompt ends at the last column.

    A decoder-only model continues from the last position; right padding would put pad tokens between a
    short prompt and its continuation.
    """
    import torch

    width = max(len(row) for row in rows)
    ids = [[pad_id] * (width - len(row)) + list(row) for row in rows]
    mask = [[0] * (width - len(row)) + [1] * len(row) for row in rows]
    return torch.tensor(ids, dtype=torch.long), torch.tensor(mask, dtype=torch.long)


def _pad_id(tokenizer: Any) -> int:
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer.pad_token_id


def stop_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """The model's end-of-sequence ids (its generation config's and the tokenizer's EOS)."""
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = list(configured) if isinstance(configured, (list, tuple)) else [configured]
    ids.append(tokenizer.eos_token_id)
    return list(dict.fromkeys(i for i in ids if i is not None))


def _generate_kwargs(model: Any, tokenizer: Any, settings: GenerationSettings, pad_id: int) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "max_new_tokens": settings.max_new_tokens,
        "do_sample": settings.do_sample,
        "eos_token_id": stop_token_ids(model, tokenizer),
        "pad_token_id": pad_id,
    }
    if settings.do_sample:
        kwargs.update(temperature=settings.temperature, top_p=settings.top_p, top_k=0)
    else:
        # A generation config with sampling defaults would warn about unused settings under greedy decoding.
        kwargs.update(temperature=None, top_p=None, top_k=None)
    return kwargs


# ----------------------------------------------------------------------------- loss on references


def reference_rows(records: list[dict[str, Any]], tokenizer: Any, data_config: DataConfig) -> list[tuple[list[int], list[int]]]:
    """Token ids and labels of each example, masked exactly as training masks it (loss on the responses).

    Examples the training pipeline would drop (nothing left to score) become empty rows.
    """
    from ftcore.data.encode import EncodeOptions, encode_batch
    from ftcore.data.formats import shape_of
    from ftcore.data.templates import resolve_chat_template

    options = EncodeOptions(
        template=resolve_chat_template(data_config.chat_template, tokenizer),
        train_on_inputs=False,  # perplexity of the references, whatever the run trained on
        system_prompt=data_config.system_prompt,
        max_seq_len=data_config.max_seq_len,
        overflow="truncate",
    )
    shape = shape_of(records[0].keys())
    columns = {key: [record.get(key) for record in records] for key in records[0]}
    encoded = encode_batch(columns, tokenizer, shape, options)
    return list(zip(encoded["input_ids"], encoded["labels"], strict=True))


def reference_nll(model: Any, tokenizer: Any, rows: list[tuple[list[int], list[int]]], batch_size: int) -> list[tuple[float, int]]:
    """Per example: the summed negative log-likelihood of its labelled tokens and how many there are."""
    import torch
    from tqdm.auto import tqdm

    from ftcore.data.collate import PaddingCollator

    collate = PaddingCollator(_pad_id(tokenizer))
    results: list[tuple[float, int]] = [(0.0, 0)] * len(rows)
    kept = [i for i, (ids, _) in enumerate(rows) if ids]
    for start in tqdm(range(0, len(kept), batch_size), desc="scoring references", leave=False):
        batch = kept[start : start + batch_size]
        features = collate([{"input_ids": rows[i][0], "labels": rows[i][1]} for i in batch])
        labels = features.pop("labels").to(model.device)
        with torch.no_grad():
            logits = model(**{k: v.to(model.device) for k, v in features.items()}).logits.float()
        # Token t is predicted from the tokens before it: compare logits[:, t-1] with labels[:, t].
        targets = labels[:, 1:]
        nll = torch.nn.functional.cross_entropy(
            logits[:, :-1].transpose(1, 2), targets, ignore_index=-100, reduction="none"
        )
        mask = targets != -100
        for row, i in enumerate(batch):
            results[i] = (float(nll[row][mask[row]].double().sum()), int(mask[row].sum()))
    return results


# ----------------------------------------------------------------------------- scoring


def score(
    metrics: list[ResolvedMetric], examples: list[Example], options: dict[str, dict[str, Any]]
) -> tuple[dict[str, float], dict[str, dict[str, Any]]]:
    """All scores (flat ``{score_name: value}``) and, per metric, its plugin, version and details."""
    scores: dict[str, float] = {}
    described: dict[str, dict[str, Any]] = {}
    for metric in metrics:
        result, details = compute(metric, examples, options.get(metric.name, {}))
        scores.update(result)
        described[metric.name] = {
            "scores": sorted(result),
            "needs": metric.spec.needs,
            "higher_is_better": metric.spec.higher_is_better,
            "plugin": metric.plugin.name,
            "dist": metric.plugin.dist,
            "version": metric.plugin.version,
            **({"options": options[metric.name]} if options.get(metric.name) else {}),
            **details,
        }
    return scores, described


def compute(metric: ResolvedMetric, examples: list[Example], options: dict[str, Any]) -> tuple[dict[str, float], dict[str, Any]]:
    """One metric on these examples through the ``compute_metric`` hook: (scores, details)."""
    from ftcore.plugins import get_registry

    context: dict[str, Any] = {"options": dict(options), "details": {}}
    if metric.spec.needs == "loss":
        context["token_nll"] = sum(e.token_nll for e in examples)
        context["token_count"] = sum(e.token_count for e in examples)
    predictions = [e.prediction for e in examples] if metric.spec.needs == "generation" else []
    result = get_registry().hook.compute_metric(
        name=metric.name, predictions=predictions, references=[e.reference for e in examples], context=context
    )
    if result is None:
        raise PluginError(f"metric {metric.name!r}: no plugin computed it (its provider {metric.plugin.label} returned nothing)")
    details = {k: v for k, v in context["details"].items() if k != "options"}
    return {k: float(v) for k, v in result.items()}, details


def bootstrap_ci(
    metrics: list[ResolvedMetric],
    examples: list[Example],
    options: dict[str, dict[str, Any]],
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Percentile bootstrap intervals of every score: resample the examples with replacement, rescore."""
    rng = random.Random(seed)
    n = len(examples)
    draws: dict[str, list[float]] = {}
    samples = [[examples[rng.randrange(n)] for _ in range(n)] for _ in range(resamples)]
    for metric in metrics:
        for sample in samples:
            result, _ = compute(metric, sample, options.get(metric.name, {}))
            for key, value in result.items():
                draws.setdefault(key, []).append(value)
    tail = (1 - level) / 2
    return {
        key: {"low": _quantile(values, tail), "high": _quantile(values, 1 - tail), "level": level, "resamples": resamples}
        for key, values in draws.items()
    }


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    below, above = math.floor(position), math.ceil(position)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


# ----------------------------------------------------------------------------- the whole evaluation


def evaluate_model(
    model_or_run_dir: str | Path,
    data: str | Path,
    metrics: list[str] | tuple[str, ...] = DEFAULT_METRICS,
    *,
    settings: GenerationSettings = GenerationSettings(),
    limit: int | None = None,
    output_dir: str | Path | None = None,
    ci: bool = False,
    ci_resamples: int = 1000,
    metric_options: dict[str, dict[str, Any]] | None = None,
    dtype: str | None = None,
    device: str | None = None,
    data_config: DataConfig | None = None,
) -> EvalResult:
    """Evaluate a model, run directory, Hub id or GGUF file on ``data``; write eval.json and predictions.jsonl.

    ``data_config`` says how to read ``data`` (default: the run's data settings, or ft's defaults for a
    plain model). Metric names and the data file are checked before the model is loaded.
    """
    from ftcore.models import load_for_inference

    started = time.monotonic()
    resolved = resolve_metrics(list(metrics))
    options = metric_options or {}
    _check_options_target(options, resolved)
    if not Path(data).exists():
        raise DataError(f"--data: file not found: {data}")
    data_config = data_config or data_config_for(model_or_run_dir, data)
    model, tokenizer = load_for_inference(model_or_run_dir, dtype=dtype, device=device)
    examples, records = load_eval_examples(data, data_config, tokenizer, limit)
    if any(m.spec.needs == "generation" for m in resolved):
        predictions = generate_predictions(model, tokenizer, [e.prompt_ids for e in examples], settings)
        for example, prediction in zip(examples, predictions, strict=True):
            example.prediction = prediction
    loss: dict[str, Any] = {}
    if any(m.spec.needs == "loss" for m in resolved):
        loss = _score_references(model, tokenizer, examples, records, data_config, settings.batch_size)
    scores, described = score(resolved, examples, options)
    result = EvalResult(
        model=str(model_or_run_dir),
        data=str(data),
        data_fingerprint=data_fingerprint(records),
        n_examples=len(examples),
        generation=asdict(settings),
        scores=scores,
        metrics=described,
        loss=loss,
        examples=examples,
    )
    if ci:
        result.ci = bootstrap_ci(resolved, examples, options, resamples=ci_resamples, seed=settings.seed)
    result.seconds = round(time.monotonic() - started, 3)
    if output_dir is not None:
        write_outputs(result, Path(output_dir))
    return result


def _check_options_target(options: dict[str, dict[str, Any]], resolved: list[ResolvedMetric]) -> None:
    names = [m.name for m in resolved]
    for metric in options:
        if metric not in names:
            raise UsageError(f"--metric-option {metric}.…: {metric!r} is not among the requested metrics ({', '.join(names)})")


def _score_references(
    model: Any, tokenizer: Any, examples: list[Example], records: list[dict[str, Any]], data_config: DataConfig, batch_size: int
) -> dict[str, Any]:
    rows = reference_rows(records, tokenizer, data_config)
    for example, (nll, count) in zip(examples, reference_nll(model, tokenizer, rows, batch_size), strict=True):
        example.token_nll, example.token_count = nll, count
    tokens = sum(e.token_count for e in examples)
    return {
        "token_nll": sum(e.token_nll for e in examples),
        "token_count": tokens,
        "mean_token_nll": sum(e.token_nll for e in examples) / tokens if tokens else None,
        "examples_without_tokens": sum(1 for e in examples if e.token_count == 0),
    }


def write_outputs(result: EvalResult, output_dir: Path) -> None:
    """``eval.json`` and ``predictions.jsonl`` (prompt, reference, prediction per line) in ``output_dir``."""
    output_dir.mkdir(parents=True, exist_ok=True)
    with (output_dir / "predictions.jsonl").open("w", encoding="utf-8") as out:
        for index, example in enumerate(result.examples):
            row = {"index": index, **asdict(example)}
            row.pop("prompt_ids")
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    (output_dir / "eval.json").write_text(json.dumps(result.as_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def default_output_dir(model_or_run_dir: str | Path) -> Path:
    """Where ``ft evaluate`` writes without ``--output``: ``eval/`` inside a run directory, else ``./eval-<model>``."""
    from ftcore.rundir import is_run_dir

    if is_run_dir(str(model_or_run_dir)):
        return Path(model_or_run_dir) / "eval"
    name = Path(str(model_or_run_dir).rstrip("/")).name or "model"
    return Path(f"eval-{name.removesuffix('.gguf')}")


def format_table(scores: dict[str, float], ci: dict[str, dict[str, float]] | None = None) -> str:
    """The scores as an aligned text table (with the confidence interval when there is one)."""
    ci = ci or {}
    width = max([len("metric"), *map(len, scores)])
    lines = [f"{'metric':<{width}}  {'score':>10}" + ("  95% CI" if ci else "")]
    for name, value in scores.items():
        line = f"{name:<{width}}  {value:>10.4f}"
        if name in ci:
            line += f"  [{ci[name]['low']:.4f}, {ci[name]['high']:.4f}]"
        lines.append(line)
    return "\n".join(lines)


def _ftcore_version() -> str:
    from ftcore import __version__

    return __version__
