"""``ft recommend``: estimate memory per method and write a config that fits this machine."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from ftcore.commands.output import examples, json_option, print_json, result_on_stdout

if TYPE_CHECKING:
    from ftcore.contract.specs import MethodSpec


@click.command(epilog=examples(
    "ft recommend --model HuggingFaceTB/SmolLM2-135M-Instruct",
    "ft recommend -m meta-llama/Llama-3.1-8B --memory 24 --seq-len 2048 -o cfg.yaml",
    "ft recommend -m ./my-model --method full --json",
))
@click.option("--model", "-m", required=True, help="Hub id, local model directory, .gguf file or run directory.")
@click.option("--method", default=None,
              help="Only consider this installed method (default: every installed method that takes part in "
                   "recommendations, in their order; `ft plugins` lists them).")
@click.option("--seq-len", type=click.IntRange(min=8), default=512, show_default=True, help="Training sequence length.")
@click.option("--memory", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Memory to plan for, in GB (default: the GPU's, else system RAM).")
@click.option("--margin", type=click.FloatRange(0, 0.9), default=0.15, show_default=True, help="Share of memory kept free.")
@click.option("--rank", type=click.IntRange(min=1), default=16, show_default=True,
              help="Adapter rank, for methods that train a low-rank adapter.")
@click.option("--global-batch", type=click.IntRange(min=1), default=16, show_default=True,
              help="Sequences per optimizer step (micro-batch x gradient accumulation).")
@click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16"]), default=None,
              help="Weight dtype (default: bfloat16 on GPUs that support it, else float32).")
@click.option("--data", default="data/train.jsonl", show_default=True, help="data.train of the written config.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None, help="Write the recommended config here.")
@json_option
def recommend(model: str, method: str | None, seq_len: int, memory: float | None, margin: float, rank: int,
              global_batch: int, dtype: str | None, data: str, output: str | None, as_json: bool) -> None:
    """Estimate peak training memory of MODEL per method and recommend a setup that fits."""
    import yaml

    from ftcore.errors import FtError
    from ftcore.jobs import recommend as rc
    from ftcore.models import estimate

    with result_on_stdout(as_json) as out:
        methods = _methods(method)
        shape = estimate.model_shape(model)
        rec = rc.recommend(shape, estimate.detect_hardware(), methods=methods, seq_len=seq_len,
                           memory=int(memory * estimate.GB) if memory else None, margin=margin, rank=rank,
                           global_batch=global_batch, dtype=dtype)
        if as_json:
            # The result is printed even when nothing fits (``fits: false``), then the command fails as without --json.
            print_json(rc.as_dict(rec, data=data), out)
        else:
            click.echo(rc.breakdown(rec))
        if rec.chosen is None:
            raise FtError(rc.cannot_fit_message(rec))
        if output:
            text = yaml.safe_dump(rc.config_for(rec, data=data), sort_keys=False)
            with open(output, "w", encoding="utf-8") as handle:
                handle.write(f"# ft train --config {output}\n# written by: ft recommend --model {model}\n{text}")
            click.echo(f"\nwrote {output}")


def _methods(name: str | None) -> list[MethodSpec]:
    """The methods to consider: ``name`` checked against the installed ones, else the recommended ones."""
    from ftcore.contract.plugins import get_registry
    from ftcore.errors import UsageError
    from ftcore.jobs.recommend import recommended_methods
    from ftcore.util.suggest import did_you_mean

    if name is None:
        return recommended_methods()
    registry = get_registry()
    if name not in registry.methods and ("method", name) not in registry.clashes:
        installed = ", ".join(sorted(registry.methods)) or "none"
        raise UsageError(f"--method: unknown method {name!r}{did_you_mean(name, registry.methods)}; "
                         f"installed methods: {installed}")
    return [registry.method(name)]
