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
    "ft config validate cfg.yaml --method full --set training.learning_rate=1e-4",
))
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a key, e.g. training.learning_rate=1e-4.")
@click.option("--method", default=None, help="Override the method.")
def validate(path: str, overrides: tuple[str, ...], method: str | None) -> None:
    """Validate PATH against ftcore's schema and the method plugin's options, without loading anything heavy."""
    from ftcore.config.schema import load_config, validate_run_config

    cfg = load_config(path, overrides, method=method)
    spec, _ = validate_run_config(cfg)
    if isinstance(cfg.training.deepspeed, str):
        from ftcore.run.distributed import load_deepspeed

        load_deepspeed(cfg.training.deepspeed)  # the file ft train reads, checked the same way
    click.echo(f"{path}: valid (method {spec.name}, model {cfg.model})")


@config.command(epilog=examples(
    "ft config schema > ft-config.schema.json     # for editor completion of YAML configs",
    "ft config schema --method full",
))
@click.option("--method", default=None, help="Print the options schema of this method instead.")
def schema(method: str | None) -> None:
    """Print the JSON Schema of the run config (or of one method's options)."""
    from ftcore.config.schema import json_schema
    from ftcore.contract.plugins import get_registry
    from ftcore.errors import UsageError

    if method is None:
        click.echo(json.dumps(json_schema(), indent=2))
        return
    spec = get_registry().method(method)
    if spec.options is None:
        raise UsageError(f"method {method!r} takes no options")
    click.echo(json.dumps(spec.options.model_json_schema(), indent=2))


@config.command(name="import", epilog=examples(
    "ft config import axolotl.yml -o ft.yaml",
    "ft config import llama3_sft.yaml --from llamafactory",
    "ft config import peer.yaml -o ft.yaml --overwrite",
))
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--from", "tool", default=None, metavar="TOOL",
              help="The tool that wrote PATH, an installed importer (ft plugins lists them; default: detected).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Write the ft config here (default: print it to stdout, the key table to stderr).")
@click.option("--overwrite", is_flag=True, help="Replace the -o file when it exists.")
def import_(path: str, tool: str | None, output: str | None, overwrite: bool) -> None:
    """Convert another tool's config (Axolotl, LLaMA-Factory, TRL with the ftimport plugin) into an ft config,
    with a table of what became of each key. A kind of training ft cannot run is refused: nothing is written."""
    from pathlib import Path

    from ftcore.errors import ConfigError
    from ftcore.jobs.config_import import as_yaml, check_target, import_config, problems, table, write_output

    if output is not None:
        check_target(output, overwrite)
    name, imported = import_config(path, tool)
    click.echo(table(imported.rows), err=output is None)
    blocking = [row for row in imported.rows if row.status == "blocking"]
    if blocking:
        raise ConfigError(f"{path}: {blocking[0].key}: {blocking[0].note}; no config written")
    for line in problems(imported.config):
        click.echo(f"note: the imported config still needs a fix: {line}", err=True)
    text = as_yaml(imported.config, name, Path(path).name, output or "ft.yaml")
    if output is None:
        click.echo(text, nl=False)
    else:
        write_output(output, text)
        click.echo(f"wrote {output} ({name} config imported)")
