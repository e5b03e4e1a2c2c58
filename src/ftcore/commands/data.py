"""``ft data``: look at what training will see."""

from __future__ import annotations

import click

from ftcore.commands.output import examples, use_color


@click.group()
def data() -> None:
    """Inspect datasets as ft tokenizes them."""


@data.command(epilog=examples(
    "ft data preview --config cfg.yaml",
    "ft data preview --config cfg.yaml -n 5 --set data.max_seq_len=256 --no-color",
))
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False), help="Run config (YAML).")
@click.option("-n", "count", default=2, show_default=True, type=click.IntRange(0), help="Examples to show.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a key, e.g. data.max_seq_len=256.")
@click.option("--color/--no-color", default=None,
              help="Colour trained tokens (default: when stdout is a terminal and NO_COLOR is unset).")
def preview(config_path: str, count: int, overrides: tuple[str, ...], color: bool | None) -> None:
    """Show tokenized examples (trained tokens green, or in [[ ]] without colour) and the length distribution."""
    from ftcore.config import load_config
    from ftcore.data.pipeline import preview_data
    from ftcore.data.preview import length_report, render_example
    from ftcore.models import load_tokenizer

    cfg = load_config(config_path, overrides)
    tokenizer = load_tokenizer(cfg)
    prepared = preview_data(cfg, tokenizer)
    color = use_color(click.get_text_stream("stdout"), color)
    if prepared.collator is None:
        _show_plugin_rows(prepared, count)
        return
    for i in range(min(count, len(prepared.train))):
        row = prepared.train[i]
        click.echo(f"--- example {i + 1} ({len(row['input_ids'])} tokens, "
                   f"{sum(label != -100 for label in row['labels'])} trained)")
        click.echo(render_example(row["input_ids"], row["labels"], tokenizer, color), color=color)
    stats = prepared.stats
    dropped = ", ".join(f"{n} {reason}" for reason, n in stats["dropped"].items()) or "none"
    click.echo(f"--- {stats['examples']} examples read: {stats['kept']} kept ({stats['truncated']} of them truncated "
               f"to {stats['max_seq_len']} tokens), dropped: {dropped}")
    full = {**stats["train"], "examples": stats["examples"], "lengths": stats["full_lengths"]}
    click.echo("before truncation: " + length_report(full, totals=False))
    click.echo("train: " + length_report(stats["train"]))
    if stats.get("eval"):
        click.echo("eval: " + length_report(stats["eval"]))


def _show_plugin_rows(prepared, count: int) -> None:
    """Rows of a plugin's shape as its encode_examples left them (ftcore cannot tell trained tokens there)."""
    import json

    for i in range(min(count, len(prepared.train))):
        click.echo(f"--- example {i + 1} (shape {prepared.shape})")
        click.echo(json.dumps(prepared.train[i], ensure_ascii=False, default=str)[:2000])
    click.echo(f"--- {prepared.stats['examples']} examples of shape {prepared.shape!r}; "
               f"train {prepared.stats['train']['examples']}"
               + (f", eval {prepared.stats['eval']['examples']}" if prepared.stats.get("eval") else ""))
