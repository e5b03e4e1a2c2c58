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


#: Why a pair or an answer is dropped: TRL truncates prompt + answer from the end, so a prompt of ``max_length``
#: tokens or more leaves it nothing to learn from (TRL's DPO and KTO trainers drop those too, without a word).
NO_ANSWER = "no answer tokens: the prompt alone fills max_seq_len"
#: ``data.overflow: drop``: the status ftcore gives its own examples dropped for their length.
TOO_LONG = "longer than max_seq_len"
#: A source where more than this share of the examples lose every answer token is refused.
NO_ANSWER_LIMIT = 0.5


def encode_preference(examples: Any, shape: str, tokenizer: Any, settings: Any) -> Any:
    """The examples as text columns: ``prompt``/``chosen``/``rejected``, or ``prompt``/``completion``/``label``,
    each with its lengths as TRL will tokenize it (:func:`measure`): ``status``, ``full_length`` and
    ``length_<part>``, which ftcore reports and removes."""
    answers = ("chosen", "rejected") if shape == "preference" else ("completion",)
    keep = ("label",) if shape == "unpaired_preference" else ()

    def render(example: dict[str, Any]) -> dict[str, Any]:
        return {**render_example(example, answers, tokenizer, settings), **{k: example[k] for k in keep}}

    rendered = examples.map(render, remove_columns=examples.column_names, desc=f"rendering {shape} examples")
    measured = rendered.map(measure, batched=True, fn_kwargs={"answers": answers, "tokenizer": tokenizer,
                                                               "max_length": settings.max_seq_len,
                                                               "drop": settings.overflow == "drop"},
                            desc=f"measuring {shape} examples")
    lost = measured["status"].count(NO_ANSWER)
    if len(measured) and lost / len(measured) > NO_ANSWER_LIMIT:
        raise DataError(f"{lost} of {len(measured)} examples have a prompt of data.max_seq_len "
                        f"({settings.max_seq_len}) tokens or more, so nothing of their answers would train",
                        hint="raise data.max_seq_len or shorten the prompts")
    return measured


def measure(batch: dict[str, list[Any]], answers: tuple[str, ...], tokenizer: Any, max_length: int,
            drop: bool = False) -> dict[str, list[Any]]:
    """Token lengths of each example's prompt and answers as TRL's DPO and KTO trainers tokenize the text: the
    prompt alone, and prompt + answer (+ EOS when missing), the prompt ending where the two first differ; then
    whether ``max_length`` (kept from the start) keeps it whole, truncates an answer (or, with ``drop``, drops it),
    or leaves no answer token."""
    eos = tokenizer.eos_token or ""
    prompts = tokenizer(batch["prompt"])["input_ids"]
    full = {name: tokenizer([p + (a if a.endswith(eos) else a + eos) for p, a in
                             zip(batch["prompt"], batch[name], strict=True)])["input_ids"] for name in answers}
    out: dict[str, list[Any]] = {"status": [], "full_length": [], "length_prompt": [],
                                 **{f"length_{name}": [] for name in answers}}
    for i, prompt in enumerate(prompts):
        prompt_len = min(_common_prefix(prompt, full[name][i]) for name in answers)
        lengths = [len(full[name][i]) - prompt_len for name in answers]
        longest = prompt_len + max(lengths)
        out["status"].append("kept" if longest <= max_length else TOO_LONG if drop
                             else NO_ANSWER if prompt_len >= max_length else "truncated")
        out["full_length"].append(longest)
        out["length_prompt"].append(prompt_len)
        for name, n in zip(answers, lengths, strict=True):
            out[f"length_{name}"].append(n)
    return out


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
