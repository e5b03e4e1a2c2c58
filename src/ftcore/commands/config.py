"""``ft config``: validate a run config, print the JSON Schema."""

from __future__ import annotations

import json

import click


@click.group()
def config() -> None:
    """Check and describe run configs."""


@config.command()
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a key, e.g. training.learning_rate=1e-4.")
@click.option("--method", default=None, help="Override the method.")
def validate(path: str, overrides: tuple[str, ...], method: str | None) -> None:
    """Validate PATH against ftcore's schema and the method plugin's options, without loading anything heavy."""
    from ftcore.config import load_config, validate_run_config

    cfg = load_config(path, overrides, method=method)
    spec, _ = validate_run_config(cfg)
    click.echo(f"{path}: valid (method {spec.name}, model {cfg.model})")


@config.command()
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
