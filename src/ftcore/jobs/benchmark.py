"""Base model vs fine-tuned run on the same held-out data: report.json, report.md and report.png.

:func:`run_benchmark` is what ``ft benchmark`` runs: it evaluates both models with
:func:`ftcore.jobs.evaluation.evaluate_model` under identical settings, then writes a report directory with
the scores, their absolute and relative differences, sample predictions side by side, and a chart of
the scores next to the run's training loss curve.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftcore.errors import DataError, UsageError

if TYPE_CHECKING:
    from ftcore.artifacts.rundir import RunInfo
    from ftcore.config.schema import DataConfig
    from ftcore.jobs.evaluation import EvalResult
    from ftcore.models.generation import GenerationSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Comparison:
    """One score of both models: the difference, and whether the tuned model is better."""

    score: str
    metric: str
    higher_is_better: bool
    base: float
    tuned: float

    @property
    def delta(self) -> float:
        return self.tuned - self.base

    @property
    def relative(self) -> float | None:
        """``delta / |base|``, or ``None`` when the base scored 0 (no meaningful ratio)."""
        return self.delta / abs(self.base) if self.base and math.isfinite(self.base) else None

    @property
    def improved(self) -> bool:
        return self.delta > 0 if self.higher_is_better else self.delta < 0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "delta": self.delta, "relative_delta": self.relative, "improved": self.improved}


@dataclass
class BenchmarkReport:
    """The outcome of ``ft benchmark``: both evaluations and their comparison."""

    base: EvalResult
    tuned: EvalResult
    data: str | None
    data_source: str
    comparisons: list[Comparison]
    output_dir: Path
    loss_history: list[dict[str, Any]] = field(default_factory=list)


# ----------------------------------------------------------------------------- which data


def benchmark_data(run: RunInfo, output_dir: Path) -> tuple[str, str, DataConfig | None]:
    """The held-out data of a run: ``(path, how it was chosen, data config to read it with or None)``.

    Its ``data.eval`` file when it has one; else the ``eval_ratio`` split of its training data, redrawn
    with the run's seed and written to ``output_dir/eval_data.jsonl``; else its training data (with a
    warning, since those scores say nothing about generalisation).
    """
    from ftcore.config.schema import DataConfig
    from ftcore.data.pipeline import entries

    data = DataConfig.model_validate(run.config.get("data") or {"train": ""})
    eval_entries = entries(data.eval)
    if eval_entries:
        return _single_path(eval_entries, "data.eval"), "the run's data.eval", None
    train = _single_path(entries(data.train), "data.train")
    if data.eval_ratio > 0:
        path = _write_eval_split(train, data, int(run.config.get("seed", 42)), output_dir)
        canonical = data.model_copy(update={"format": None, "columns": {}})
        return str(path), f"the run's eval split (eval_ratio {data.eval_ratio} of {train}, seed {run.config.get('seed', 42)})", canonical
    log.warning("the run has no eval split; benchmarking on its training data (pass --data for held-out examples)")
    return train, "the run's training data (no eval split: pass --data for held-out examples)", None


def _single_path(items: list[Any], key: str) -> str:
    if len(items) != 1:
        raise UsageError(f"the run's {key} has {len(items)} sources; pass --data FILE to choose what to benchmark on")
    item = items[0]
    return item if isinstance(item, str) else item.path


def _write_eval_split(train: str, data: DataConfig, seed: int, output_dir: Path) -> Path:
    """Redraw the held-out split as the training pipeline draws it and save its canonical examples."""
    from ftcore.data import load_examples

    examples = load_examples(train, data)
    n_eval = max(1, round(len(examples) * data.eval_ratio))
    if n_eval >= len(examples):
        raise DataError(f"{train}: too few examples for an eval split; pass --data FILE")
    held_out = examples.train_test_split(test_size=n_eval, seed=seed, shuffle=True)["test"]
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / "eval_data.jsonl"
    with path.open("w", encoding="utf-8") as out:
        for row in held_out:
            out.write(json.dumps({k: v for k, v in row.items() if v is not None}, ensure_ascii=False) + "\n")
    return path


# ----------------------------------------------------------------------------- the benchmark


def run_benchmark(
    tuned: str | Path,
    *,
    base: str | None = None,
    data: str | Path | None = None,
    metrics: list[str] | tuple[str, ...] | None = None,
    settings: GenerationSettings | None = None,
    limit: int | None = None,
    output_dir: str | Path | None = None,
    ci: bool = False,
    ci_resamples: int = 1000,
    metric_options: dict[str, dict[str, Any]] | None = None,
    samples: int = 5,
    dtype: str | None = None,
    device: str | None = None,
) -> BenchmarkReport:
    """Evaluate the run's base model (or ``base``) and the run on the same data; write the report directory."""
    from ftcore.artifacts.rundir import load_run
    from ftcore.jobs.evaluation import DEFAULT_METRICS, bring_own_data, data_config_for, evaluate_model, resolve_metrics
    from ftcore.models.generation import GenerationSettings
    from ftcore.models.loading import require_causal_lm

    run = load_run(tuned)
    require_causal_lm(run, "be benchmarked as a text generator")
    metric_names = list(metrics or DEFAULT_METRICS)
    resolved = resolve_metrics(metric_names)  # unknown names fail before any model loads
    out = Path(output_dir) if output_dir else run.path / "benchmark"
    base = base or run.base_model
    data_path: str | None
    if data is None and bring_own_data(resolved):
        data_path, source, data_config = None, "the metrics' own tasks", None
    elif data is not None:
        data_path, source, data_config = str(data), "--data", None
    else:
        data_path, source, data_config = benchmark_data(run, out)
    common = {
        "metrics": metric_names, "settings": settings or GenerationSettings(), "limit": limit, "ci": ci,
        "ci_resamples": ci_resamples, "metric_options": metric_options, "dtype": dtype, "device": device,
        # Both models read the data as the run reads it, so they see the same prompts.
        "data_config": data_config if data_config is not None or data_path is None else data_config_for(run.path, data_path),
        "overwrite": True,  # the report directory is ft benchmark's own, rewritten whole on every run
    }
    log.info("evaluating the base model %s", base)
    base_result = evaluate_model(base, data_path, output_dir=out / "base", **common)
    log.info("evaluating the tuned run %s", run.path)
    tuned_result = evaluate_model(run.path, data_path, output_dir=out / "tuned", **common)
    report = BenchmarkReport(
        base=base_result, tuned=tuned_result, data=data_path, data_source=source,
        comparisons=compare(base_result, tuned_result), output_dir=out, loss_history=read_loss_history(run.path),
    )
    write_report(report, samples)
    return report


def compare(base: EvalResult, tuned: EvalResult) -> list[Comparison]:
    """One :class:`Comparison` per score both evaluations have, in the order they were computed."""
    rows = []
    for metric, described in tuned.metrics.items():
        for score in described["scores"]:
            if score in base.scores:
                rows.append(Comparison(score, metric, described["higher_is_better"], base.scores[score], tuned.scores[score]))
    return rows


def read_loss_history(run_dir: Path) -> list[dict[str, Any]]:
    """The logged steps of a run (``metrics.jsonl``); empty when it has none."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                log.warning("%s: skipping an unreadable line", path)
    return rows


# ----------------------------------------------------------------------------- writing the report


def write_report(report: BenchmarkReport, samples: int = 5) -> None:
    """report.json, report.md and report.png in the report's directory."""
    out = report.output_dir
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report_payload(report, samples), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "report.md").write_text(report_markdown(report, samples), encoding="utf-8")
    write_chart(report, out / "report.png")


def report_payload(report: BenchmarkReport, samples: int) -> dict[str, Any]:
    """The ``report.json`` content: both evaluations, the comparison and a few side-by-side samples."""
    return {
        "base": {**report.base.as_dict(), "output": str(report.output_dir / "base")},
        "tuned": {**report.tuned.as_dict(), "output": str(report.output_dir / "tuned")},
        "data": report.data,
        "data_source": report.data_source,
        "comparison": [c.as_dict() for c in report.comparisons],
        "samples": sample_rows(report, samples),
        "final_train_loss": _last(report.loss_history, "loss"),
        "final_eval_loss": _last(report.loss_history, "eval_loss"),
    }


def sample_rows(report: BenchmarkReport, samples: int) -> list[dict[str, str]]:
    """The first ``samples`` examples with both models' predictions."""
    rows = []
    for base, tuned in list(zip(report.base.examples, report.tuned.examples, strict=True))[:samples]:
        rows.append({"prompt": base.prompt, "reference": base.reference, "base": base.prediction, "tuned": tuned.prediction})
    return rows


def report_markdown(report: BenchmarkReport, samples: int) -> str:
    """``report.md``: the comparison table and sample predictions side by side."""
    lines = [
        "# ft benchmark",
        "",
        f"- base: `{report.base.model}`",
        f"- tuned: `{report.tuned.model}`",
        (f"- data: `{report.data}` ({report.data_source}), {report.tuned.n_examples} examples, fingerprint `{report.tuned.data_fingerprint}`"
         if report.data is not None else f"- data: {report.data_source}"),
        # ft's decoding settings say nothing of metrics that bring their own data (they decode as their tasks say).
        *([f"- generation: {_settings_text(report.tuned.generation)}"] if report.data is not None else []),
        "",
        "| metric | base | tuned | Δ | Δ % | better |",
        "|---|---:|---:|---:|---:|:---:|",
    ]
    for c in report.comparisons:
        arrow = "↑" if c.higher_is_better else "↓"
        relative = f"{c.relative:+.1%}" if c.relative is not None else "n/a"
        lines.append(
            f"| {c.score} ({arrow}) | {c.base:.4f} | {c.tuned:.4f} | {c.delta:+.4f} | {relative} | {'tuned' if c.improved else 'base' if c.delta else '='} |"
        )
    rows = sample_rows(report, samples)
    if rows:
        lines += ["", "## Sample predictions", "", "| # | prompt | reference | base | tuned |", "|---|---|---|---|---|"]
        for i, row in enumerate(rows, start=1):
            cells = [_cell(row[k]) for k in ("prompt", "reference", "base", "tuned")]
            lines.append(f"| {i} | " + " | ".join(cells) + " |")
    lines += ["", "![scores and training loss](report.png)", ""]
    return "\n".join(lines)


def _settings_text(generation: dict[str, Any]) -> str:
    mode = f"sampling (temperature {generation['temperature']}, top_p {generation['top_p']})" if generation["do_sample"] else "greedy"
    return f"{mode}, max_new_tokens {generation['max_new_tokens']}, batch size {generation['batch_size']}, seed {generation['seed']}"


def _cell(text: str, width: int = 160) -> str:
    """Text fit for one Markdown table cell: no pipes or newlines, shortened."""
    text = text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", "").replace("\n", "<br>")
    return text if len(text) <= width else text[: width - 1] + "…"


def _last(history: list[dict[str, Any]], key: str) -> float | None:
    values = [row[key] for row in history if isinstance(row.get(key), (int, float))]
    return values[-1] if values else None


def write_chart(report: BenchmarkReport, path: Path) -> None:
    """report.png: one bar pair (base, tuned) per score, and the run's training loss curve below."""
    from matplotlib.figure import Figure  # a bare Figure renders with Agg and leaves pyplot's global state alone

    from ftcore.artifacts.curves import plot_loss, series

    scores = report.comparisons
    columns = max(len(scores), 1)
    figure = Figure(figsize=(max(8.0, 1.9 * columns), 7.0), layout="constrained")
    grid = figure.add_gridspec(2, columns, height_ratios=[1, 1.1])
    for i, c in enumerate(scores):
        axes = figure.add_subplot(grid[0, i])
        bars = axes.bar(["base", "tuned"], [c.base, c.tuned], color=["#9aa5b1", "#2f7ed8" if c.improved else "#d8572f"])
        axes.bar_label(bars, fmt="%.3g", fontsize=8)
        axes.set_title(f"{c.score} {'↑' if c.higher_is_better else '↓'}", fontsize=10)
        axes.tick_params(labelsize=8)
        axes.margins(y=0.2)
        if min(c.base, c.tuned) >= 0:
            # Scores are non-negative: start at 0, and give two zero bars a sensible axis.
            axes.set_ylim(bottom=0, top=None if max(c.base, c.tuned) > 0 else 1)
    loss_axes = figure.add_subplot(grid[1, :])
    plot_loss(loss_axes, report.loss_history)
    rewards = series(report.loss_history, "reward")
    if rewards:  # a run that learned from rewards (GRPO): its mean reward per step on a second axis
        twin = loss_axes.twinx()
        twin.plot(*zip(*rewards, strict=True), label="mean reward", color="#3a9d23")
        twin.set_ylabel("reward")
        twin.legend(loc="upper left")
    figure.suptitle(f"{Path(report.tuned.model).name} vs {Path(report.base.model).name}")
    figure.savefig(path, dpi=100, format="png")
