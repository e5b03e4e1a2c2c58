"""``ft train``: fine-tune a model as a config describes and write a run directory."""

from __future__ import annotations

import click

from ftcore.commands.output import examples, json_option, print_json, result_on_stdout
from ftcore.errors import UsageError
from ftcore.run.launch import launch_options


def check_before_launch(config_path: str | None, method: str | None, overrides: tuple[str, ...],
                        output_dir: str | None, resume: str | None, overwrite: bool, allow_config_change: bool,
                        processes: int, as_json: bool = False) -> None:
    """With ``--nproc``: the checks that need no heavy import, once, before the launcher starts the ranks."""
    from ftcore.artifacts import rundir
    from ftcore.config.schema import load_config, validate_run_config
    from ftcore.run import distributed
    from ftcore.run.runlock import RunLock

    _check_flags(resume, allow_config_change)
    config = load_config(config_path, overrides, method=method, output_dir=output_dir)
    validate_run_config(config)
    distributed.check_layout(config, processes)
    RunLock(rundir.output_location(config.output_dir)).check()
    rundir.plan_run(config.output_dir, overwrite=overwrite, resume=True if resume == "latest" else resume)


def _check_flags(resume: str | None, allow_config_change: bool) -> None:
    if allow_config_change and not resume:
        raise UsageError("--allow-config-change only applies with --resume")


@click.command(epilog=examples(
    "ft train --config cfg.yaml",
    "ft train -c cfg.yaml --method full --set training.max_steps=50 -o runs/try1",
    "ft train -c cfg.yaml --resume                # continue after an interruption",
    "ft train -c cfg.yaml --nproc 2               # two processes (torchrun)",
    "ft train -c cfg.yaml --json > result.json    # the run's manifest as JSON",
))
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Run config (YAML); keys can also come from --set.")
@click.option("--method", default=None, help="Training method (`ft plugins` lists them); overrides the config.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config key, e.g. --set training.max_steps=50 (repeatable).")
@click.option("-o", "--output-dir", default=None, help="Run directory to write; overrides output_dir.")
@click.option("--resume", default=None, is_flag=False, flag_value="latest", metavar="[PATH]",
              help="Continue from the latest checkpoint of the output directory, or from PATH.")
@click.option("--overwrite", is_flag=True,
              help="Replace a finished ft run in the output directory (once the new one is done).")
@click.option("--allow-config-change", is_flag=True,
              help="With --resume: continue even though the config or data changed the optimisation or the data.")
@json_option
@launch_options(before_launch=check_before_launch)
def train(config_path: str | None, method: str | None, overrides: tuple[str, ...], output_dir: str | None,
          resume: str | None, overwrite: bool, allow_config_change: bool, as_json: bool) -> None:
    """Fine-tune a causal language model and save the adapter or model as a run directory."""
    from ftcore.config.schema import load_config
    from ftcore.jobs.train import run_training

    with result_on_stdout(as_json) as out:
        config = load_config(config_path, overrides, method=method, output_dir=output_dir)
        _check_flags(resume, allow_config_change)
        result = run_training(config, overwrite=overwrite, resume=True if resume == "latest" else resume,
                              allow_config_change=allow_config_change)
    manifest = result.manifest
    if not manifest:  # a rank other than 0 of a multi-process run: rank 0 reports
        return
    if as_json:
        print_json({"run_dir": str(result.run_dir), **manifest}, out)
        return
    loss = manifest.get("train_loss")
    summary = f"step {manifest.get('global_step')}, train loss {loss:.4f}" if loss is not None else ""
    click.echo(f"run saved to {result.run_dir}" + (f" ({summary})" if summary else ""))
