"""Chat templates and rendering: canonical examples -> text plus the character spans that carry the loss.

The template is the tokenizer's own ``chat_template`` (through ``apply_chat_template``), a named fallback
(``chatml``, ``alpaca``) or a user's Jinja file. Each assistant turn's span is found by rendering the
conversation up to that turn with and without it: the text the turn adds is exactly what the model must
learn to produce, end-of-turn marker included, whatever the template looks like.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ftcore.errors import DataError

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

ALPACA = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] + '\n\n' }}"
    "{% elif message['role'] == 'user' %}{{ '### Instruction:\n' + message['content'] + '\n\n' }}"
    "{% else %}{{ '### Response:\n' + message['content'] + eos_token + '\n\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '### Response:\n' }}{% endif %}"
)

NAMED_TEMPLATES = {"chatml": CHATML, "alpaca": ALPACA}

Span = tuple[int, int]


def resolve_chat_template(choice: str | None, tokenizer: Any) -> str:
    """The Jinja source to render chats with: the tokenizer's, a named fallback, or a file's content.

    ``None`` means the tokenizer's own template when it has one, else ``chatml``.
    """
    own = getattr(tokenizer, "chat_template", None)
    if isinstance(own, dict):  # tokenizers with several named templates keep the default under "default"
        own = own.get("default")
    if choice is None:
        return own or CHATML
    if choice == "tokenizer":
        if not own:
            raise DataError(
                "data.chat_template: the tokenizer has no chat template",
                hint=f"use one of {', '.join(NAMED_TEMPLATES)} or a Jinja file",
            )
        return own
    if choice in NAMED_TEMPLATES:
        return NAMED_TEMPLATES[choice]
    path = Path(choice).expanduser()
    if not path.is_file():
        raise DataError(
            f"data.chat_template: {choice!r} is neither 'tokenizer', a named template "
            f"({', '.join(NAMED_TEMPLATES)}) nor an existing Jinja file"
        )
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte offset {exc.start})") from None


def with_system_prompt(messages: list[dict[str, str]], system_prompt: str | None) -> list[dict[str, str]]:
    """``messages`` with ``system_prompt`` in front when it has no system message of its own."""
    plain = [{"role": m["role"], "content": m["content"]} for m in messages]
    if system_prompt and (not plain or plain[0]["role"] != "system"):
        return [{"role": "system", "content": system_prompt}, *plain]
    return plain


def render_chat(messages: list[dict[str, str]], tokenizer: Any, template: str, generation_prompt: bool = False) -> str:
    """Render ``messages`` with ``template`` to text (no tokenization)."""
    try:
        return tokenizer.apply_chat_template(
            messages, chat_template=template, tokenize=False, add_generation_prompt=generation_prompt
        )
    except Exception as exc:  # Jinja errors, or a template that rejects this conversation (role order)
        raise DataError(f"chat template failed on a conversation: {type(exc).__name__}: {exc}") from None


def render_messages(
    messages: list[dict[str, str]], tokenizer: Any, template: str, train_on_inputs: bool
) -> tuple[str, list[Span]]:
    """The full conversation text and the character spans that carry the loss.

    Every assistant turn is trained; with ``train_on_inputs`` everything is. A template for which a prefix of
    the conversation does not render as a prefix of the whole (some templates rewrite earlier turns) falls back
    to locating each assistant message's content in the text.
    """
    text = render_chat(messages, tokenizer, template)
    if train_on_inputs:
        return text, [(0, len(text))]
    spans: list[Span] = []
    for k, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = render_chat(messages[:k], tokenizer, template, generation_prompt=True) if k else ""
        # The whole conversation is already rendered: the last turn needs no render of its own.
        through = text if k == len(messages) - 1 else render_chat(messages[: k + 1], tokenizer, template)
        if text.startswith(through) and through.startswith(before) and len(through) > len(before):
            spans.append((len(before), len(through)))
        else:
            spans.append(_find_content(text, message["content"], spans[-1][1] if spans else 0))
    return text, spans


def _find_content(text: str, content: str, start: int) -> Span:
    at = text.find(content, start)
    if at < 0:
        raise DataError("chat template does not reproduce an assistant message verbatim; cannot mask the loss")
    return at, at + len(content)


def render_completion(prompt: str, completion: str, eos: str, train_on_inputs: bool) -> tuple[str, list[Span]]:
    """``prompt + completion + eos``; the completion and eos carry the loss."""
    text = prompt + completion + eos
    return text, [(0 if train_on_inputs else len(prompt), len(text))]
