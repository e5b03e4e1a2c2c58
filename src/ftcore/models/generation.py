"""Text generation for ``ft evaluate``, ``ft benchmark``, ``ft generate`` and ``ft chat``.

One settings class (:class:`GenerationSettings`) and one stop rule (:func:`stop_token_ids`) serve every
command, so a model answers the same way whichever command asks: :func:`generate_predictions` continues
many prompts in left-padded batches (evaluation), :func:`stream_reply` streams one reply to the terminal
(generate and chat). Both pass :func:`generate_kwargs` to ``model.generate``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

# A reply no chat template would rewrite: what a template renders after it closes the assistant turn.
_REPLY_MARKER = "ft-reply-marker"


@dataclass(frozen=True)
class GenerationSettings:
    """How many tokens to generate and how to pick them; the same for every model compared in a benchmark.

    Greedy decoding unless ``do_sample``; ``temperature`` and ``top_p`` apply only when sampling.
    ``seed`` ``None`` leaves torch's random state as it is. ``batch_size`` prompts are generated together.
    """

    max_new_tokens: int = 128
    batch_size: int = 8
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = 0

    @classmethod
    def from_options(cls, *, max_new_tokens: int = 128, temperature: float = 0.0, top_p: float = 1.0,
                     sample: bool = False, seed: int | None = 0, batch_size: int = 8) -> GenerationSettings:
        """Settings from the options the commands share: sampling with ``sample`` or a temperature above 0
        (at 1.0 when none is given), greedy decoding otherwise."""
        sampling = sample or temperature > 0
        return cls(max_new_tokens=max_new_tokens, batch_size=batch_size, do_sample=sampling,
                   temperature=temperature if temperature > 0 else 1.0, top_p=top_p, seed=seed)


# ----------------------------------------------------------------------------- stopping and decoding settings


def stop_token_ids(model: Any, tokenizer: Any, template: str | None = None) -> list[int]:
    """Token ids that end a reply: the model's and the tokenizer's end-of-sequence ids, and the end-of-turn
    token of the chat template the prompts were rendered with (default: the tokenizer's, else ChatML)."""
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = list(configured) if isinstance(configured, (list, tuple)) else [configured]
    ids += [tokenizer.eos_token_id, end_of_turn_id(tokenizer, template)]
    return list(dict.fromkeys(i for i in ids if i is not None))


def end_of_turn_id(tokenizer: Any, template: str | None = None) -> int | None:
    """The special token a chat template closes an assistant turn with (``<|im_end|>``, ``<|eot_id|>``...), if any.

    Read from the template itself, by rendering a reply and tokenizing what follows it, so any template
    works without a list of known markers.
    """
    from ftcore.data.templates import render_chat, resolve_chat_template
    from ftcore.errors import DataError

    messages = [{"role": "user", "content": "?"}, {"role": "assistant", "content": _REPLY_MARKER}]
    try:
        text = render_chat(messages, tokenizer, template or resolve_chat_template(None, tokenizer))
    except DataError:
        return None  # a template that refuses this conversation: end-of-sequence alone ends replies
    after = text.partition(_REPLY_MARKER)[2].lstrip()
    ids = tokenizer(after, add_special_tokens=False)["input_ids"] if after else []
    # Only an added (special) token marks the turn's end; ordinary text after a reply is not a stop signal.
    return ids[0] if ids and ids[0] in getattr(tokenizer, "added_tokens_decoder", {}) else None


def pad_token_id(tokenizer: Any) -> int:
    """The id batches are padded with: the tokenizer's pad token, else its end-of-sequence token."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def generate_kwargs(model: Any, tokenizer: Any, settings: GenerationSettings, template: str | None = None) -> dict[str, Any]:
    """Keyword arguments for ``model.generate``: length, greedy or sampling, stop ids and padding."""
    kwargs: dict[str, Any] = {
        "max_new_tokens": settings.max_new_tokens,
        "do_sample": settings.do_sample,
        "eos_token_id": stop_token_ids(model, tokenizer, template),
        "pad_token_id": pad_token_id(tokenizer),
    }
    if settings.do_sample:
        # top_k=0 turns off a generation config's top-k, so temperature and top_p alone shape the sampling.
        kwargs.update(temperature=settings.temperature, top_p=settings.top_p, top_k=0)
    else:
        # A generation config with sampling defaults would warn about unused settings under greedy decoding.
        kwargs.update(temperature=None, top_p=None, top_k=None)
    return kwargs


def _seed(settings: GenerationSettings) -> None:
    import torch

    if settings.seed is not None:
        torch.manual_seed(settings.seed)


# ----------------------------------------------------------------------------- batches of prompts


def generate_predictions(
    model: Any, tokenizer: Any, prompts: list[list[int]], settings: GenerationSettings, template: str | None = None
) -> list[str]:
    """The continuation of each tokenized prompt, up to its first stop token (batched, left-padded).

    ``template`` is the chat template the prompts were rendered with (see :func:`stop_token_ids`).
    """
    import torch
    from tqdm.auto import tqdm

    kwargs = generate_kwargs(model, tokenizer, settings, template)
    _seed(settings)
    # Batches of similar length waste less compute on padding; the original order is restored after.
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    outputs: dict[int, str] = {}
    with tqdm(total=len(prompts), desc="generating", unit="ex", leave=False) as bar:
        for start in range(0, len(order), settings.batch_size):
            batch = order[start : start + settings.batch_size]
            input_ids, attention_mask = left_padded([prompts[i] for i in batch], kwargs["pad_token_id"])
            with torch.no_grad():
                generated = model.generate(
                    input_ids=input_ids.to(model.device), attention_mask=attention_mask.to(model.device), **kwargs
                )
            new_tokens = [until_stop(row, kwargs["eos_token_id"]) for row in generated[:, input_ids.shape[1] :].tolist()]
            for i, text in zip(batch, tokenizer.batch_decode(new_tokens, skip_special_tokens=True), strict=True):
                outputs[i] = text.strip()
            bar.update(len(batch))
    return [outputs[i] for i in range(len(prompts))]


def until_stop(tokens: list[int], stop_ids: list[int]) -> list[int]:
    """The generated tokens before the first stop token (which is not part of the answer, special or not).

    Rows of a batch that stopped early are padded after their stop token; this cuts that off too.
    """
    stops = set(stop_ids)
    for position, token in enumerate(tokens):
        if token in stops:
            return tokens[:position]
    return tokens


def left_padded(rows: list[list[int]], pad_id: int) -> tuple[Any, Any]:
    """``(input_ids, attention_mask)`` tensors with padding on the left, so every prompt ends at the last column.

    A decoder-only model continues from the last position; right padding would put pad tokens between a
    short prompt and its continuation.
    """
    import torch

    width = max(len(row) for row in rows)
    ids = [[pad_id] * (width - len(row)) + list(row) for row in rows]
    mask = [[0] * (width - len(row)) + [1] * len(row) for row in rows]
    return torch.tensor(ids, dtype=torch.long), torch.tensor(mask, dtype=torch.long)


# ----------------------------------------------------------------------------- one streamed reply


def stream_reply(model: Any, tokenizer: Any, ids: list[int], settings: GenerationSettings) -> Iterator[str]:
    """Generate from ``ids`` in a background thread and yield the decoded text piece by piece."""
    import torch
    from transformers import TextIteratorStreamer

    _seed(settings)
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    inputs = torch.tensor([ids], device=model.device)
    kwargs = dict(input_ids=inputs, attention_mask=torch.ones_like(inputs), streamer=streamer,
                  **generate_kwargs(model, tokenizer, settings))
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with torch.no_grad():
                model.generate(**kwargs)
        except BaseException as exc:  # re-raised in the caller's thread below
            errors.append(exc)
            streamer.on_finalized_text("", stream_end=True)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    yield from streamer
    worker.join()
    if errors:
        raise errors[0]
