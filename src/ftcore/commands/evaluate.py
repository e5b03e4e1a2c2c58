"""``ft evaluate``: score a model or run directory on a file of examples."""

from __future__ import annotations

import click

from ftcore.commands.decoding import decoding_options, settings_from
from ftcore.commands.output import examples, json_option, print_json, result_on_stdout

# ftcore.jobs.evaluation imports nothing heavy at module level; the default list is defined there once.
from ftcore.jobs.evaluation import DEFAULT_METRICS


def generation_options(func):
    """The options ``ft evaluate`` and ``ft benchmark`` share: decoding, which examples, metric options, intervals, device."""
    options = [
        click.option("--batch-size", default=8, show_default=True, type=click.IntRange(1), help="Examples per generation batch."),
        click.option("--limit", default=None, type=click.IntRange(1), help="Evaluate only the first N examples."),
        click.option("--metric-option", "metric_options", multiple=True, metavar="METRIC.KEY=VALUE",
                     help="A metric option, e.g. rouge.use_stemmer=true (repeatable)."),
        click.option("--ci", is_flag=True, help="Add 95% bootstrap confidence intervals."),
        click.option("--ci-resamples", default=1000, show_default=True, type=click.IntRange(10), help="Bootstrap resamples."),
        click.option("--dtype", default=None, type=click.Choice(["auto", "float32", "bfloat16", "float16"]), help="Weights dtype."),
        click.option("--device", default=None, help="Device to run on (cpu, cuda, cuda:1; default: best available)."),
    ]
    for option in reversed(options):
        func = option(func)
    return decoding_options(func)


@click.command(epilog=examples(
    "ft evaluate runs/run1 --data data/test.jsonl",
    "ft evaluate runs/run1 --data data/test.jsonl --metrics exact_match,rouge --ci",
    "ft evaluate HuggingFaceTB/SmolLM2-135M-Instruct --data data/test.jsonl --limit 50",
    "ft evaluate runs/run1 --data data/test.jsonl --json | jq .scores",
))
@click.argument("model_or_run_dir")
@click.option("--data", default=None, type=click.Path(dir_okay=False),
              help="Examples to evaluate on (.jsonl/.json/.csv/.parquet); not needed when every metric brings its own.")
@click.option("--metrics", default=",".join(DEFAULT_METRICS), show_default=True,
              help="Comma-separated metric names (`ft plugins` lists them; evaluate:<name> for any Hub metric).")
@click.option("--output", default=None, type=click.Path(file_okay=False),
              help="Where eval.json and predictions.jsonl go (default: RUN_DIR/eval, or ./eval-<model>).")
@click.option("--overwrite", is_flag=True, help="Replace the eval.json and predictions.jsonl of an earlier evaluation.")
@generation_options
@json_option
def evaluate(model_or_run_dir: str, data: str | None, metrics: str, output: str | None, overwrite: bool,
             as_json: bool, **kwargs) -> None:
    """Evaluate MODEL_OR_RUN_DIR (a run directory, local model, Hub id or .gguf file) on --data."""
    from ftcore.jobs.evaluation import (
        default_output_dir,
        evaluate_model,
        format_table,
        parse_metric_names,
        parse_metric_options,
    )

    output_dir = output or default_output_dir(model_or_run_dir)
    with result_on_stdout(as_json) as out:
        result = evaluate_model(
            model_or_run_dir, data, parse_metric_names(metrics), settings=settings_from(kwargs), limit=kwargs["limit"],
            output_dir=output_dir, ci=kwargs["ci"], ci_resamples=kwargs["ci_resamples"],
            metric_options=parse_metric_options(kwargs["metric_options"]), dtype=kwargs["dtype"], device=kwargs["device"],
            overwrite=overwrite,
        )
    if as_json:
        print_json({**result.as_dict(), "output_dir": str(output_dir)}, out)
        return
    where = f"{result.data} ({result.n_examples} examples, " if result.data is not None else "its metrics' own tasks ("
    click.echo(f"{result.model} on {where}{result.seconds:.1f}s)")
    click.echo(format_table(result.scores, result.ci))
    click.echo(f"wrote {output_dir}/eval.json and predictions.jsonl")
