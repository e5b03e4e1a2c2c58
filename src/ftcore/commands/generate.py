"""``ft generate`` and ``ft chat``: a quick look at a tuned model, tokens streamed to the terminal."""

from __future__ import annotations

import sys

import click

from ftcore.commands.decoding import decoding_options, settings_from
from ftcore.commands.output import examples


def _sampling_options(command):
    command = decoding_options(command)
    command = click.option("--dtype", type=click.Choice(["auto", "float32", "bfloat16", "float16"]), default=None,
                           help="Dtype to load the weights in.")(command)
    command = click.option("--system", default=None, help="System message.")(command)
    return command


def _load(model: str, dtype: str | None):
    from ftcore.models.loading import load_for_inference

    return load_for_inference(model, dtype=dtype)


@click.command(epilog=examples(
    'ft generate runs/run1 -p "Name three primary colours."',
    'ft generate merged/ -p "Once upon a time" --raw --max-new-tokens 64',
    'ft generate runs/run1 -p "Write a haiku" --temperature 0.8 --seed 1',
))
@click.argument("model", metavar="RUN_DIR_OR_MODEL")
@click.option("--prompt", "-p", required=True, help="The prompt (a user message when the tokenizer has a chat template).")
@click.option("--raw", is_flag=True, help="Feed the prompt as plain text, without the chat template.")
@_sampling_options
def generate(model: str, prompt: str, raw: bool, system: str | None, dtype: str | None, **decoding) -> None:
    """Generate a reply to --prompt with RUN_DIR_OR_MODEL: a run directory, model directory, Hub id or .gguf file."""
    from ftcore.jobs.generate import generate as run_generate

    loaded, tokenizer = _load(model, dtype)
    settings = settings_from(decoding)
    run_generate(loaded, tokenizer, prompt, settings, chat=not raw, system=system, on_text=_write)
    click.echo()


@click.command(epilog=examples(
    "ft chat runs/run1",
    'ft chat runs/run1 --system "You are terse." --temperature 0.7',
    "printf 'hi\\n' | ft chat runs/run1           # one turn from a pipe; replies on stdout",
))
@click.argument("model", metavar="RUN_DIR_OR_MODEL")
@_sampling_options
def chat(model: str, system: str | None, dtype: str | None, **decoding) -> None:
    """Chat with RUN_DIR_OR_MODEL using its chat template; /reset clears the history, /exit or Ctrl-D ends."""
    from ftcore.jobs.generate import chat_loop

    loaded, tokenizer = _load(model, dtype)
    interactive = sys.stdin.isatty()
    if interactive:
        click.echo("Chatting with the model; /reset clears the history, /exit or Ctrl-D quits.", err=True)
    settings = settings_from(decoding)
    chat_loop(loaded, tokenizer, lambda: _read(interactive), _write, settings, system)


def _read(interactive: bool) -> str | None:
    """One line of user input (None at end of input); the prompt goes to stderr so stdout holds replies only."""
    if interactive:
        click.echo("you> ", nl=False, err=True)
    line = sys.stdin.readline()
    return line if line else None


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()
