"""``ft data``: look at what training will see."""

from __future__ import annotations

import click

from ftcore.commands.output import examples, use_color


@click.group()
def data() -> None:
    """Inspect datasets as ft tokenizes them."""


@data.command(epilog=examples(
    "ft data preview train.jsonl --model HuggingFaceTB/SmolLM2-135M-Instruct",
    "ft data preview train.jsonl                  # no tokenizer: formats, shapes and record checks only",
    "ft data preview --config run.yaml -n 4 --no-color",
    "ft data preview a.jsonl b.jsonl --column prompt=question --json",
))
@click.argument("files", nargs=-1, metavar="[FILE]...")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Run config (YAML); FILEs, when given, replace its data.train.")
@click.option("--model", default=None, help="Model (directory, .gguf file or Hub id) whose tokenizer to use; "
              "without it and without --config, records are checked but not tokenized.")
@click.option("--method", default=None, help="Training method (default: the config's, else one that trains on "
              "the data's shape, the first in `ft recommend`'s order).")
@click.option("--format", "data_format", default=None, help="Dataset format (default: detected per file).")
@click.option("--column", "columns", multiple=True, metavar="FIELD=COLUMN",
              help="Map a format field to your column (or nested path), e.g. --column prompt=question.")
@click.option("-n", "count", default=2, show_default=True, type=click.IntRange(0), help="Examples to show.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a key, e.g. data.max_seq_len=256.")
@click.option("--color/--no-color", default=None, help="Colour trained tokens (default: when stdout is a terminal and NO_COLOR is unset).")
@click.option("--json", "as_json", is_flag=True, help="Print the audit, statistics and examples as one JSON object.")
def preview(files: tuple[str, ...], config_path: str | None, model: str | None, method: str | None,
            data_format: str | None, columns: tuple[str, ...], count: int, overrides: tuple[str, ...],
            color: bool | None, as_json: bool) -> None:
    """Show tokenized examples (trained tokens green, or in [[ ]] without colour), each source's format and
    shape, the share of tokens trained, length statistics, and warnings about the data.
    """
    from ftcore.data.preview import preview_config, show_preview

    cfg, tokenize = preview_config(config_path, files, model, method, data_format, columns, overrides)
    color = use_color(click.get_text_stream("stdout"), color)
    tokenizer = None
    if tokenize:
        from ftcore.models.loading import load_tokenizer

        tokenizer = load_tokenizer(cfg)
    show_preview(cfg, tokenizer, count, color, as_json, click.echo)
