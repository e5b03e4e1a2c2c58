"""``ft config``: validate a run config, print the JSON Schema."""

from __future__ import annotations

import json

import click

from ftcore.commands.output import examples


@click.group()
def config() -> None:
    """Check and describe run configs."""


@config.command(epilog=examples(
    "ft config validate cfg.yaml",
    "ft config validate cfg.yaml --method qlora --set training.learning_rate=1e-4",
))
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a key, e.g. training.learning_rate=1e-4.")
@click.option("--method", default=None, help="Override the method.")
def validate(path: str, overrides: tuple[str, ...], method: str | None) -> None:
    """Validate PATH against ftcore's schema and the method plugin's options, without loading anything heavy."""
    from ftcore.config import load_config, validate_run_config

    cfg = load_config(path, overrides, method=method)
    spec, _ = validate_run_config(cfg)
    click.echo(f"{path}: valid (method {spec.name}, model {cfg.model})")


@config.command(epilog=examples(
    "ft config schema > ft-config.schema.json     # for editor completion of YAML configs",
    "ft config schema --method lora",
))
@click.option("--method", default=None, help="Print the options schema of this method instead.")
def schema(method: str | None) -> None:
    """Print the JSON Schema of the run config (or of one method's options)."""
    from ftcore.config import json_schema
    from ftcore.errors import UsageError
    from ftcore.plugins import get_registry

    if method is None:
        click.echo(json.dumps(json_schema(), indent=2))
        return
    spec = get_registry().method(method)
    if spec.options is None:
        raise UsageError(f"method {method!r} takes no options")
    click.echo(json.dumps(spec.options.model_json_schema(), indent=2))


@config.command(name="import", epilog="""\b
Examples:
  ft config import axolotl.yml -o ft.yaml
  ft config import llama3_lora_sft.yaml --from llamafactory
""")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--from", "peer", type=click.Choice(["axolotl", "llamafactory", "trl"]), default=None,
              help="The tool that wrote PATH (default: detected from its keys).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Write the ft config here (default: print it to stdout, the key table to stderr).")
def import_(path: str, peer: str | None, output: str | None) -> None:
    """Convert an Axolotl, LLaMA-Factory or TRL config into an ft config, with a table of what became of each key."""
    from pathlib import Path

    from ftcore.peers import as_yaml, import_file, problems, table

    conv = import_file(path, peer)
    text = as_yaml(conv, Path(path).name, output or "ft.yaml")
    click.echo(table(conv), err=output is None)
    for line in problems(conv):
        click.echo(f"note: the imported config still needs a fix: {line}", err=True)
    if output is None:
        click.echo(text, nl=False)
    else:
        Path(output).write_text(text, encoding="utf-8")
        click.echo(f"wrote {output} ({conv.peer} config imported)")
