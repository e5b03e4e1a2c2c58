"""``ft merge``: fold a run's LoRA/DoRA/QLoRA adapter into its base and save a standalone model."""

from __future__ import annotations

import click

from ftcore.commands.output import examples, json_option, print_json, result_on_stdout


@click.command(epilog=examples(
    "ft merge runs/run1 -o merged/",
    "ft merge runs/run2 -o merged/ --dtype bfloat16 --max-shard-size 2GB",
))
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--output", "-o", required=True, type=click.Path(), help="Directory for the merged model.")
@click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16"]), default=None,
              help="Dtype of the saved weights (default: the base model's).")
@click.option("--max-shard-size", default="5GB", show_default=True, help="Split safetensors files above this size.")
@click.option("--overwrite", is_flag=True, help="Write into a non-empty output directory.")
@json_option
def merge(run_dir: str, output: str, dtype: str | None, max_shard_size: str, overwrite: bool, as_json: bool) -> None:
    """Merge the adapter of RUN_DIR into its base model; the result loads with plain transformers.

    A QLoRA run is merged into its dequantized 4-bit base, the weights it was trained against.
    """
    from ftcore.jobs.merge import merge_run

    with result_on_stdout(as_json) as out:
        path = merge_run(run_dir, output, dtype=dtype, max_shard_size=max_shard_size, overwrite=overwrite)
    files = sorted(p.name for p in path.iterdir())
    if as_json:
        print_json({"run_dir": run_dir, "output": str(path), "files": files,
                    "bytes": sum(p.stat().st_size for p in path.iterdir() if p.is_file())}, out)
        return
    click.echo(f"Merged model written to {path} ({', '.join(files)})")
