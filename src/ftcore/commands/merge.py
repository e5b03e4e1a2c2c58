"""``ft merge``: fold a run's LoRA/DoRA/QLoRA adapter into its base and save a standalone model."""

from __future__ import annotations

import click


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--output", "-o", required=True, type=click.Path(), help="Directory for the merged model.")
@click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16"]), default=None,
              help="Dtype of the saved weights (default: the base model's).")
@click.option("--max-shard-size", default="5GB", show_default=True, help="Split safetensors files above this size.")
@click.option("--overwrite", is_flag=True, help="Write into a non-empty output directory.")
def merge(run_dir: str, output: str, dtype: str | None, max_shard_size: str, overwrite: bool) -> None:
    """Merge the adapter of RUN_DIR into its base model; the result loads with plain transformers.

    A QLoRA run is merged into its dequantized 4-bit base, the weights it was trained against.
    """
    from ftcore.merge import merge_run

    path = merge_run(run_dir, output, dtype=dtype, max_shard_size=max_shard_size, overwrite=overwrite)
    files = sorted(p.name for p in path.iterdir())
    click.echo(f"Merged model written to {path} ({', '.join(files)})")
