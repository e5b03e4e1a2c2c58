"""The model card (README.md) ``ft upload`` publishes, built with huggingface_hub's ``ModelCard`` API.

Metadata goes through ``ModelCardData`` (base model, library, license, tags, datasets) and evaluation
scores through ``EvalResult``, so the Hub reads them as a model index: ``eval.json`` of ``ft evaluate``
and the tuned side of ``ft benchmark``'s ``report.json``, each score with its 95% confidence interval
when one was computed. The text says what was trained and how (method and its options, the main
hyperparameters, how the run went with ``train_loss`` the run's mean and the last logged loss beside it, the
data fingerprint (once) and counts, the training curve ``loss.png``), how to load the model by its Hub id (with
peft's ``PeftModel`` for an adapter), and the package versions. Nothing machine-specific is written: no local paths, no
caches, no tracker settings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ftcore import RunInfo

#: Where ``ft evaluate`` and ``ft benchmark`` leave their results inside a run directory.
EVAL_FILES = ("eval/eval.json", "eval.json")
BENCHMARK_REPORT = "benchmark/report.json"

#: The training settings a card shows (what shapes the result; not where files or caches live).
_DATA_KEYS = ("format", "chat_template", "system_prompt", "train_on_inputs", "max_seq_len", "overflow", "packing",
              "eval_ratio")
_TRAINING_KEYS = ("epochs", "max_steps", "learning_rate", "lr_scheduler", "warmup_ratio", "warmup_steps", "batch_size",
                  "gradient_accumulation", "optimizer", "weight_decay", "max_grad_norm", "precision",
                  "gradient_checkpointing", "neftune_noise_alpha")


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``, or None when it is missing or unreadable."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def read_eval(run_dir: Path) -> dict[str, Any] | None:
    """The run's ``eval.json`` (``ft evaluate``'s results), if it was evaluated."""
    return next((found for name in EVAL_FILES if (found := read_json(run_dir / name)) is not None), None)


# ----------------------------------------------------------------------------- evaluation results


def _dataset_label(data: Any) -> str:
    """A Hub dataset id as is; a local file by its name only (its path is this machine's business)."""
    from ftcore import is_hub_id

    text = str(data or "data")
    return text if is_hub_id(text) and not Path(text).suffix else Path(text).name


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def eval_results(evaluation: dict[str, Any] | None) -> list[Any]:
    """``EvalResult`` entries of one ``eval.json`` payload: one per numeric score, its interval in the name."""
    from huggingface_hub import EvalResult

    if not evaluation or not isinstance(evaluation.get("scores"), dict):
        return []
    dataset = _dataset_label(evaluation.get("data"))
    ci = evaluation.get("ci") if isinstance(evaluation.get("ci"), dict) else {}
    results = []
    for score, value in evaluation["scores"].items():
        if not _number(value):
            continue
        interval = ci.get(score) if isinstance(ci.get(score), dict) else None
        results.append(EvalResult(
            task_type="text-generation", dataset_type=dataset, dataset_name=dataset,
            dataset_revision=evaluation.get("data_fingerprint"), metric_type=score, metric_value=round(float(value), 6),
            metric_name=f"{score} ({_interval_text(interval)})" if interval else score,
        ))
    return results


def _interval_text(interval: dict[str, Any]) -> str:
    level = round(100 * float(interval.get("level", 0.95)))
    return f"{level}% CI {interval['low']:.4g} to {interval['high']:.4g}"


def all_eval_results(evaluation: dict[str, Any] | None, report: dict[str, Any] | None) -> list[Any]:
    """The run's scores from ``eval.json`` and from the benchmark's tuned side, each (dataset, score) once."""
    results, seen = [], set()
    for payload in (report.get("tuned") if report else None, evaluation):
        for result in eval_results(payload if isinstance(payload, dict) else None):
            key = (result.dataset_type, result.dataset_revision, result.metric_type)
            if key not in seen:
                seen.add(key)
                results.append(result)
    return results


# ----------------------------------------------------------------------------- sections


def _value(value: Any) -> str:
    return f"`{json.dumps(value, ensure_ascii=False)}`" if isinstance(value, (dict, list)) else f"`{value}`"


def _table(rows: list[tuple[str, Any]], head: tuple[str, str] = ("setting", "value")) -> str:
    lines = [f"| {head[0]} | {head[1]} |", "|---|---|"]
    lines += [f"| {key} | {_value(value)} |" for key, value in rows]
    return "\n".join(lines) + "\n"


def _chat_template_label(choice: Any) -> str:
    """A built-in template by its name (chatml, alpaca...), a Jinja file by its file name only."""
    if choice is None:
        return "the base tokenizer's (ChatML when it has none)"
    path = Path(str(choice))
    return f"a Jinja file ({path.name})" if path.suffix or len(path.parts) > 1 else str(choice)


def training_section(run: RunInfo) -> str:
    """Method and its options, the main data and training settings, and how the run went."""
    config, manifest = run.config, run.manifest
    data, training = config.get("data") or {}, config.get("training") or {}
    rows: list[tuple[str, Any]] = [("method", run.manifest.get("method") or config.get("method"))]
    rows += [(f"method_options.{k}", v) for k, v in (config.get("method_options") or {}).items()]
    rows += [(f"data.{k}", _chat_template_label(data.get(k)) if k == "chat_template" else data[k])
             for k in _DATA_KEYS if k in data or k == "chat_template"]
    rows += [(f"training.{k}", training[k]) for k in _TRAINING_KEYS if training.get(k) is not None]
    rows.append(("seed", config.get("seed")))
    outcome = [(k, v) for k, v in outcome_rows(manifest) if v is not None]
    text = _table(rows)
    if outcome:
        text += "\n" + _table([(k, round(v, 4) if isinstance(v, float) else v) for k, v in outcome], ("result", "value"))
    if (run.path / "loss.png").is_file():
        text += "\n![training curve: loss per step](loss.png)\n"
    return text


def outcome_rows(manifest: dict[str, Any]) -> list[tuple[str, Any]]:
    """How the run went, as the card's result table shows it: ``train_loss`` is the run's mean
    (``train_loss_mean``), with the last logged value on the row beside it."""
    rows = [(k, manifest.get(k)) for k in ("global_step", "epoch", "tokens_seen")]
    rows += [("train_loss", manifest.get("train_loss_mean")), ("train_loss_last_logged", manifest.get("train_loss"))]
    rows += [(k, manifest.get(k)) for k in ("eval_loss", "trainable_params", "total_params", "train_runtime_s")]
    return rows


def data_section(run: RunInfo) -> str:
    """The training data: Hub ids or file names, fingerprint and the pipeline's counts."""
    data = run.manifest.get("data") if isinstance(run.manifest.get("data"), dict) else {}
    fingerprint = data.get("fingerprint") or run.manifest.get("data_fingerprint")
    sources = (run.config.get("data") or {}).get("train")
    sources = [sources] if isinstance(sources, (str, dict)) else list(sources or [])
    names = [_dataset_label(s.get("path") if isinstance(s, dict) else s) for s in sources]
    lines = [f"- sources: {', '.join(f'`{n}`' for n in names)}" if names else "- sources: not recorded",
             f"- fingerprint: `{fingerprint}`" if fingerprint else "- fingerprint: not recorded"]
    stats = data.get("stats") if isinstance(data.get("stats"), dict) else run.manifest.get("data_stats")
    if isinstance(stats, dict):
        lines += [f"- {key}: {value}" for key, value in stats.items()
                  if not isinstance(value, (dict, list)) and key not in ("cache_hit", "shape_source", "fingerprint")]
    return "\n".join(lines) + "\n"


def evaluation_section(evaluation: dict[str, Any] | None, report: dict[str, Any] | None) -> str:
    """``ft evaluate``'s scores and ``ft benchmark``'s comparison with the base model, intervals included."""
    parts = []
    if report and isinstance(report.get("comparison"), list):
        tuned_ci = (report.get("tuned") or {}).get("ci") or {}
        base_ci = (report.get("base") or {}).get("ci") or {}
        n = (report.get("tuned") or {}).get("n_examples")
        lines = [f"`ft benchmark` against the base model on `{_dataset_label(report.get('data'))}`"
                 + (f" ({n} examples)" if n else "") + ":", "",
                 "| score | base | tuned | Δ |", "|---|---|---|---|"]
        for row in report["comparison"]:
            if all(_number(row.get(k)) for k in ("base", "tuned", "delta")):
                arrow = "↑" if row.get("higher_is_better", True) else "↓"
                lines.append(f"| {row['score']} ({arrow}) | {_with_ci(row['base'], base_ci.get(row['score']))} | "
                             f"{_with_ci(row['tuned'], tuned_ci.get(row['score']))} | {row['delta']:+.4g} |")
        parts.append("\n".join(lines) + "\n")
    if evaluation and isinstance(evaluation.get("scores"), dict):
        ci = evaluation.get("ci") or {}
        n = evaluation.get("n_examples")
        lines = [f"`ft evaluate` on `{_dataset_label(evaluation.get('data'))}`" + (f" ({n} examples)" if n else "") + ":",
                 "", "| score | value |", "|---|---|"]
        lines += [f"| {k} | {_with_ci(v, ci.get(k))} |" for k, v in evaluation["scores"].items() if _number(v)]
        parts.append("\n".join(lines) + "\n")
    if not parts:
        return "Not evaluated yet: `ft evaluate RUN_DIR --data FILE` or `ft benchmark RUN_DIR` adds scores here.\n"
    return "\n".join(parts)


def _with_ci(value: float, interval: Any) -> str:
    if isinstance(interval, dict) and _number(interval.get("low")) and _number(interval.get("high")):
        return f"{value:.4g} [{interval['low']:.4g}, {interval['high']:.4g}]"
    return f"{value:.4g}"


def loading_snippet(repo_id: str, base_id: str, revision: str | None, adapter: bool) -> str:
    """Python that loads the published model from the Hub and chats with it (plain transformers/peft)."""
    pinned = f', revision="{revision}"' if revision else ""
    load = (f'base = AutoModelForCausalLM.from_pretrained("{base_id}"{pinned})\n'
            f'model = PeftModel.from_pretrained(base, "{repo_id}")\n') if adapter else \
        f'model = AutoModelForCausalLM.from_pretrained("{repo_id}")\n'
    imports = ("from peft import PeftModel\n" if adapter else "") + "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
    return (
        f"```python\n{imports}\n{load}"
        f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}")  # with the chat template used in training\n\n'
        'messages = [{"role": "user", "content": "Hello! Who are you?"}]\n'
        "inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors=\"pt\", return_dict=True)\n"
        "output = model.generate(**inputs, max_new_tokens=64)\n"
        'print(tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))\n```\n'
    )


def _versions_section(manifest: dict[str, Any]) -> str:
    versions = manifest.get("versions") if isinstance(manifest.get("versions"), dict) else {}
    rows = [(k, v) for k, v in versions.items() if isinstance(v, (str, int, float))]
    return _table(rows, ("package", "version")) if rows else "Not recorded.\n"


# ----------------------------------------------------------------------------- the card


def card_data(run: RunInfo, repo_id: str, base_id: str, *, merged: bool, adapter: bool, license: str | None,
              results: list[Any]) -> Any:
    """The card's ``ModelCardData``: base model, library, license, tags, datasets and the model index."""
    from huggingface_hub import ModelCardData

    from ftcore import is_hub_id

    method = run.manifest.get("method") or run.config.get("method")
    tags = ["ft", "fine-tuned", *([method] if method else []), *(["merged"] if merged else []),
            *(["adapter"] if adapter and not merged else [])]
    sources = (run.config.get("data") or {}).get("train")
    sources = [sources] if isinstance(sources, (str, dict)) else list(sources or [])
    paths = [s.get("path") if isinstance(s, dict) else s for s in sources]
    datasets = [p for p in paths if is_hub_id(p) and not Path(str(p)).suffix and not Path(str(p)).exists()]
    return ModelCardData(
        base_model=base_id, library_name="peft" if adapter and not merged else "transformers",
        pipeline_tag="text-generation", license=license, tags=list(dict.fromkeys(tags)), datasets=datasets or None,
        model_name=repo_id.split("/")[-1], eval_results=results or None,
    )


def model_card(run: RunInfo, repo_id: str, base_id: str, *, merged: bool = False, license: str | None = None) -> Any:
    """The run's ``huggingface_hub.ModelCard``; ``base_id`` is the Hub id of its base model."""
    from huggingface_hub import ModelCard

    adapter = run.output == "adapter"
    evaluation, report = read_eval(run.path), read_json(run.path / BENCHMARK_REPORT)
    provenance = run.manifest.get("base_model_provenance") or {}
    revision = provenance.get("commit") or provenance.get("revision") if provenance.get("hub_id") == base_id else None
    license = license or (provenance.get("gguf") or {}).get("license")
    data = card_data(run, repo_id, base_id, merged=merged, adapter=adapter, license=license,
                     results=all_eval_results(evaluation, report))
    method = run.manifest.get("method") or run.config.get("method") or "unknown"
    kind = "merged model" if merged and adapter else ("adapter" if adapter else "full fine-tune")
    body = (
        f"# {repo_id.split('/')[-1]}\n\n"
        f"{'An' if kind[0] in 'aeiou' else 'A'} {kind} of [{base_id}](https://huggingface.co/{base_id}) trained with "
        f"ft (finetune-cli), method `{method}`.{_base_note(provenance, base_id)}\n\n"
        f"## How to use\n\n{loading_snippet(repo_id, base_id, revision, adapter and not merged)}\n"
        "The tokenizer carries the chat template the model was trained with (`chat_template.jinja`).\n\n"
        f"## Training\n\n{training_section(run)}\n"
        f"## Training data\n\n{data_section(run)}\n"
        f"## Evaluation\n\n{evaluation_section(evaluation, report)}\n"
        f"## Framework versions\n\n{_versions_section(run.manifest)}"
    )
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}")


def _base_note(provenance: dict[str, Any], base_id: str) -> str:
    gguf = provenance.get("gguf") or {}
    if not gguf:
        return ""
    quant = f" {gguf['file_type']}" if gguf.get("file_type") else ""
    return (f" It was trained on a{quant} GGUF file of the base, dequantized; loaded on `{base_id}`'s own weights "
            "its outputs can differ slightly.")
