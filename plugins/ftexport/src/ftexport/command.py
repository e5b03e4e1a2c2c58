"""``ft export``: a run as a GGUF file and an Ollama Modelfile, checked against the run (parity)."""

from __future__ import annotations

import click

from ftcore import help_examples


@click.command(epilog=help_examples(
    "ft export runs/lora                              # f16 GGUF + Modelfile in runs/lora/export/",
    "ft export runs/lora --type q8_0 -o model.gguf",
    'ft export runs/lora --prompt "Hello" --prompt "Reverse: a b c"   # parity on your prompts',
))
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--format", "fmt", type=click.Choice(["gguf"]), default="gguf", show_default=True, help="Output format.")
@click.option(
    "--type",
    "gguf_type",
    type=click.Choice(["f16", "q8_0"]),
    default="f16",
    show_default=True,
    help="Storage of the weight matrices (norms stay float32).",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(),
    default=None,
    help="A .gguf file, or a directory to write <run>-<type>.gguf into (default: RUN_DIR/export/).",
)
@click.option(
    "--prompt",
    "prompts",
    multiple=True,
    metavar="TEXT",
    help="A prompt for the parity check (repeatable; default: four fixed prompts).",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing GGUF, Modelfile and parity report.")
def export(
    run_dir: str, fmt: str, gguf_type: str, output: str | None, prompts: tuple[str, ...], overwrite: bool
) -> None:
    """Export RUN_DIR as one GGUF file (weights with the adapter merged, tokenizer, chat template) plus an
    Ollama Modelfile, then load it back and compare its logits and greedy answers with the run's.

    An f16 export that disagrees with the run beyond the tolerance is removed and the command fails;
    for q8_0 the agreement is reported. Architectures: Llama, Mistral, Mixtral, Qwen2, Qwen3, Qwen3-MoE,
    Gemma 2, Gemma 3 (text), Phi-3, with a byte-level or SentencePiece-style BPE tokenizer.
    """
    from ftexport.export import export_run

    result = export_run(
        run_dir, fmt=fmt, gguf_type=gguf_type, output=output, overwrite=overwrite, prompts=list(prompts) or None
    )
    size = result.path.stat().st_size / 2**20
    click.echo(f"GGUF written to {result.path} ({size:.1f} MiB); Ollama: ollama create NAME -f {result.modelfile}")
    click.echo(result.parity.line())
