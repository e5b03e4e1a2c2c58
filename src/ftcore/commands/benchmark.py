"""``ft benchmark``: the base model against a fine-tuned run on the same held-out data."""

from __future__ import annotations

import click

from ftcore.commands.decoding import settings_from
from ftcore.commands.evaluate import generation_options
from ftcore.commands.output import examples, json_option, print_json, result_on_stdout
from ftcore.jobs.evaluation import DEFAULT_METRICS


@click.command(epilog=examples(
    "ft benchmark --tuned runs/run1                       # held-out data of the run",
    "ft benchmark --tuned runs/run1 --data data/test.jsonl --ci",
    "ft benchmark --tuned runs/run1 --json | jq '.comparison[] | {score, base, tuned}'",
))
@click.option("--tuned", required=True, type=click.Path(file_okay=False), help="The fine-tuned run directory.")
@click.option("--base", default=None, help="Base model to compare with (default: the run's base model).")
@click.option("--data", default=None, type=click.Path(dir_okay=False),
              help="Held-out examples (default: the run's data.eval, else its eval_ratio split).")
@click.option("--metrics", default=",".join(DEFAULT_METRICS), show_default=True, help="Comma-separated metric names.")
@click.option("--output", default=None, type=click.Path(file_okay=False), help="Report directory (default: RUN_DIR/benchmark).")
@click.option("--samples", default=5, show_default=True, type=click.IntRange(0), help="Sample predictions shown side by side.")
@generation_options
@json_option
def benchmark(tuned: str, base: str | None, data: str | None, metrics: str, output: str | None, samples: int,
              as_json: bool, **kwargs) -> None:
    """Evaluate --base and --tuned with the same settings; write report.json, report.md and report.png."""
    from ftcore.jobs.benchmark import report_payload, run_benchmark
    from ftcore.jobs.evaluation import parse_metric_names, parse_metric_options

    with result_on_stdout(as_json) as out:
        report = run_benchmark(
            tuned, base=base, data=data, metrics=parse_metric_names(metrics), settings=settings_from(kwargs),
            limit=kwargs["limit"], output_dir=output, ci=kwargs["ci"], ci_resamples=kwargs["ci_resamples"],
            metric_options=parse_metric_options(kwargs["metric_options"]), samples=samples,
            dtype=kwargs["dtype"], device=kwargs["device"],
        )
    if as_json:
        print_json({**report_payload(report, samples), "output_dir": str(report.output_dir)}, out)
        return
    click.echo(f"{report.tuned.n_examples} examples from {report.data} ({report.data_source})" if report.data is not None
               else f"data: {report.data_source}")
    click.echo(comparison_table(report))
    click.echo(f"wrote {report.output_dir}/report.md, report.json and report.png")


def comparison_table(report) -> str:
    """Base vs tuned as aligned text, one score per line."""
    width = max([len("metric"), *(len(c.score) + 2 for c in report.comparisons)])
    lines = [f"{'metric':<{width}}  {'base':>10}  {'tuned':>10}  {'delta':>10}  {'rel':>8}"]
    for c in report.comparisons:
        relative = f"{c.relative:+.1%}" if c.relative is not None else "n/a"
        name = f"{c.score} {'↑' if c.higher_is_better else '↓'}"
        mark = " *" if c.improved else ""
        lines.append(f"{name:<{width}}  {c.base:>10.4f}  {c.tuned:>10.4f}  {c.delta:>+10.4f}  {relative:>8}{mark}")
    lines.append("(↑ higher is better, ↓ lower is better; * tuned is better)")
    return "\n".join(lines)
