"""Quick looks at a tuned model: one completion (``ft generate``) or an interactive chat (``ft chat``).

The model comes from :func:`ftcore.models.load_for_inference`: a run directory (base + adapter, or
full weights), a model directory, a Hub id or a GGUF file. Prompts go through the tokenizer's chat
template when it has one (the way instruction runs were trained); tokens stream to the terminal as
they are generated. Temperature 0 means greedy decoding, so a given model and prompt always give
the same text.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Sampling:
    """How to pick tokens: greedy at temperature 0, else sampling with temperature and top-p."""

    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None

    def generate_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``model.generate``."""
        if self.temperature <= 0:
            return {"max_new_tokens": self.max_new_tokens, "do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        return {"max_new_tokens": self.max_new_tokens, "do_sample": True, "temperature": self.temperature, "top_p": self.top_p}


def stop_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """Token ids that end a reply: the generation config's eos ids, the tokenizer's eos and ChatML's ``<|im_end|>``."""
    ids: list[int] = []
    configured = getattr(model.generation_config, "eos_token_id", None)
    ids += configured if isinstance(configured, list) else ([configured] if configured is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>") if "<|im_end|>" in tokenizer.get_vocab() else None
    if end_of_turn is not None:
        ids.append(end_of_turn)
    return list(dict.fromkeys(ids))


def prompt_ids(tokenizer: Any, messages: list[dict[str, str]] | None = None, text: str | None = None) -> list[int]:
    """Token ids of a chat (rendered with the chat template, generation prompt added) or of raw text."""
    if messages is not None:
        if not tokenizer.chat_template:
            # No template: a plain transcript, still better than refusing to chat.
            rendered = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"
            return tokenizer(rendered, add_special_tokens=True)["input_ids"]
        return list(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"])
    return tokenizer(text or "", add_special_tokens=True)["input_ids"]


def stream_reply(model: Any, tokenizer: Any, ids: list[int], sampling: Sampling) -> Iterator[str]:
    """Generate from ``ids`` in a background thread and yield the decoded text piece by piece."""
    import torch
    from transformers import TextIteratorStreamer

    if sampling.seed is not None:
        torch.manual_seed(sampling.seed)
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    inputs = torch.tensor([ids], device=model.device)
    kwargs = dict(
        input_ids=inputs, attention_mask=torch.ones_like(inputs), streamer=streamer,
        eos_token_id=stop_token_ids(model, tokenizer), pad_token_id=tokenizer.pad_token_id, **sampling.generate_kwargs(),
    )
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


def generate(model: Any, tokenizer: Any, prompt: str, sampling: Sampling = Sampling(), *, chat: bool = True,
             system: str | None = None, on_text: Callable[[str], None] | None = None) -> str:
    """The model's continuation of ``prompt`` (as a user turn when ``chat`` and a template exist)."""
    if chat:
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
        ids = prompt_ids(tokenizer, messages=messages)
    else:
        ids = prompt_ids(tokenizer, text=prompt)
    return _collect(stream_reply(model, tokenizer, ids, sampling), on_text)


def _collect(pieces: Iterable[str], on_text: Callable[[str], None] | None) -> str:
    text = []
    for piece in pieces:
        text.append(piece)
        if on_text is not None and piece:
            on_text(piece)
    return "".join(text)


def chat_loop(model: Any, tokenizer: Any, read: Callable[[], str | None], write: Callable[[str], None],
              sampling: Sampling = Sampling(), system: str | None = None) -> list[dict[str, str]]:
    """Talk until ``read`` returns None or ``/exit``; ``/reset`` forgets the history. Returns the conversation.

    Each reply streams through ``write`` and ends with a newline.
    """
    messages: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []
    while True:
        line = read()
        if line is None or line.strip() in ("/exit", "/quit"):
            return messages
        if line.strip() == "/reset":
            messages = messages[:1] if system else []
            continue
        if not line.strip():
            continue
        messages.append({"role": "user", "content": line.rstrip("\n")})
        reply = _collect(stream_reply(model, tokenizer, prompt_ids(tokenizer, messages=messages), sampling), write)
        write("\n")
        messages.append({"role": "assistant", "content": reply})
