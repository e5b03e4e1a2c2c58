"""Render preference examples to the text TRL's trainers tokenize, with the run's chat template.

Conversations are rendered here, with the template ftcore resolved for the run (``data.chat_template``, the
tokenizer's, or ChatML) and the run's system prompt, so preference training sees exactly the chat format
supervised training and ``ft generate`` use. The answer is what the full conversation adds to the prompt
rendered with its generation prompt. Plain-text examples pass through unchanged.
"""

from __future__ import annotations

from typing import Any

from ftcore import DataError, render_chat, with_system_prompt


def _answer_text(prompt: list[dict[str, str]], answer: list[dict[str, str]], tokenizer: Any, settings: Any,
                 prompt_text: str) -> str:
    full = render_chat(prompt + answer, tokenizer, settings.template)
    if not full.startswith(prompt_text):
        raise DataError("the chat template renders the prompt differently alone and followed by an answer, so the "
                        "answer cannot be separated from it; use another data.chat_template")
    return full[len(prompt_text):]


def render_example(example: dict[str, Any], answers: tuple[str, ...], tokenizer: Any, settings: Any) -> dict[str, Any]:
    """``prompt`` and each of ``answers`` as text; other columns unchanged."""
    prompt = example["prompt"]
    if isinstance(prompt, str):
        return {name: example[name] for name in ("prompt", *answers)}
    messages = with_system_prompt(prompt, settings.system_prompt)
    prompt_text = render_chat(messages, tokenizer, settings.template, generation_prompt=True)
    rendered = {"prompt": prompt_text}
    for name in answers:
        rendered[name] = _answer_text(messages, example[name], tokenizer, settings, prompt_text)
    return rendered


def encode_preference(examples: Any, shape: str, tokenizer: Any, settings: Any) -> Any:
    """The examples as text columns: ``prompt``/``chosen``/``rejected``, or ``prompt``/``completion``/``label``."""
    answers = ("chosen", "rejected") if shape == "preference" else ("completion",)
    keep = ("label",) if shape == "unpaired_preference" else ()

    def render(example: dict[str, Any]) -> dict[str, Any]:
        return {**render_example(example, answers, tokenizer, settings), **{k: example[k] for k in keep}}

    return examples.map(render, remove_columns=examples.column_names, desc=f"rendering {shape} examples")
