"""``ft upload``: publish a run directory (adapter or merged model) to the Hugging Face Hub."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from ftcore import help_examples

if TYPE_CHECKING:
    from fthub.upload import UploadPlan


def _size(n: int) -> str:
    if n < 0:
        return "(merged at upload)"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def show_plan(plan: UploadPlan, verb: str, private: bool = False) -> None:
    """Print the files ``plan`` sends (with sizes) and the GGUF exports it leaves out."""
    click.echo(f"{verb} {len(plan.files)} files to {plan.repo_id}{' (private)' if private else ''}:")
    for name, size in plan.files:
        click.echo(f"  {name:<40} {_size(size)}")
    click.echo(f"  {'(total)':<40} {_size(sum(size for _, size in plan.files if size > 0))}")
    if plan.left_out:
        click.echo(f"Left out ({len(plan.left_out)} GGUF export files; --include-gguf sends them):")
        for name, size in plan.left_out:
            click.echo(f"  {name:<40} {_size(size)}")


@click.command(epilog=help_examples(
    "ft upload runs/lora --repo-id alice/smollm2-lora --dry-run",
    "ft upload runs/lora --repo-id alice/smollm2-lora --private",
    "ft upload runs/lora --repo-id alice/smollm2-merged --merged --dtype bfloat16",
    "ft upload runs/lora --repo-id alice/smollm2-lora --include-gguf",
))
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--repo-id", required=True, help="Target repository, NAMESPACE/NAME (e.g. alice/llama-lora).")
@click.option("--private", is_flag=True, help="Create the repository as private.")
@click.option("--merged", is_flag=True, help="Merge the adapter into its base and publish the standalone model.")
@click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16"]), default=None,
              help="Dtype of merged weights (default: the base model's).")
@click.option("--include-gguf", is_flag=True,
              help="Also send the run's GGUF exports (with their Modelfile and parity report); left out by default.")
@click.option("--dry-run", is_flag=True, help="List the files and show the model card; send nothing.")
@click.option("--message", default=None, help="Commit message.")
@click.option("--base-model", default=None, metavar="ORG/NAME",
              help="Hub id of the base model, for a run that started from a local directory or GGUF file whose Hub "
                   "id ft could not tell.")
@click.option("--license", "license_", default=None, metavar="ID",
              help="License of the model card (e.g. apache-2.0; default: the base GGUF file's, else none).")
def upload(run_dir: str, repo_id: str, private: bool, merged: bool, dtype: str | None, include_gguf: bool,
           dry_run: bool, message: str | None, base_model: str | None, license_: str | None) -> None:
    """Publish RUN_DIR to the Hub with a generated model card, in one commit.

    The token comes from HF_TOKEN or `hf auth login` and is checked before anything is uploaded; the files
    are listed before they are sent. GGUF exports go only with --include-gguf.
    """
    from fthub import upload as up

    if dry_run:
        plan = up.dry_run(run_dir, repo_id, merged=merged, base_model=base_model, license=license_,
                          include_gguf=include_gguf)
        show_plan(plan, "Would upload", private)
        click.echo("\n--- README.md ---")
        click.echo(plan.card)
        return
    result = up.upload_run(run_dir, repo_id, private=private, merged=merged, dtype=dtype, commit_message=message,
                           base_model=base_model, license=license_, include_gguf=include_gguf,
                           before_sending=lambda plan: show_plan(plan, "Uploading", private))
    click.echo(f"Uploaded {len(result.files)} files to {result.repo_url}")
    click.echo(f"Commit: {result.commit_url}")
