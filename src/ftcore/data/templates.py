"""Chat templates and rendering: canonical examples -> text plus the character spans that carry the loss.

The template is the tokenizer's own ``chat_template`` (through ``apply_chat_template``), one of ft's built-in
templates (:mod:`ftcore.data.builtin_templates`) or a user's Jinja file. Each trained turn's span is found by
rendering the conversation up to that turn with and without it: the text the turn adds is exactly what the model
must learn to produce, end-of-turn marker included, whatever the template looks like. Tool lists, tool calls and
reasoning are passed to the template as ``apply_chat_template`` expects them.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from pathlib import Path
from typing import Any

from ftcore.data.builtin_templates import CHATML, NAMED_TEMPLATES
from ftcore.errors import DataError

#: Mark the start and end of one message's content in a probe rendering (private-use characters no text has).
_OPEN, _MARK = "\ue000ft-start\ue001", "\ue000ft-end\ue001"

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


def with_system_prompt(messages: list[dict[str, Any]], system_prompt: str | None) -> list[dict[str, Any]]:
    """``messages`` (copies) with ``system_prompt`` in front when it has no system message of its own."""
    plain = [dict(m) for m in messages]
    if system_prompt and (not plain or plain[0]["role"] != "system"):
        return [{"role": "system", "content": system_prompt}, *plain]
    return plain


def template_messages(messages: list[dict[str, Any]], text_arguments: bool = False) -> list[dict[str, Any]]:
    """Canonical messages as chat templates expect them: unset keys and ft's ``train`` flag left out, tool call
    arguments as objects (as JSON text with ``text_arguments``), and the reasoning under both names templates read
    (``reasoning_content``, ``thinking``)."""
    out = []
    for message in messages:
        shown = {k: v for k, v in message.items() if v is not None and k != "train"}
        if shown.get("tool_calls"):
            shown["tool_calls"] = [_call_for_template(call, text_arguments) for call in shown["tool_calls"]]
        else:
            shown.pop("tool_calls", None)
        if shown.get("reasoning_content"):
            shown["thinking"] = shown["reasoning_content"]
        out.append(shown)
    return out


def _call_for_template(call: dict[str, Any], text_arguments: bool) -> dict[str, Any]:
    call = {k: v for k, v in call.items() if v is not None}
    function = dict(call.get("function") or {})
    if isinstance(function.get("arguments"), str) and not text_arguments:
        # A third-party format's free-form (non-JSON) arguments are rendered as written.
        with contextlib.suppress(json.JSONDecodeError):
            function["arguments"] = json.loads(function["arguments"])
    return {**call, "function": function}


def tool_list(tools: str | list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """An example's ``tools`` (a JSON string, as canonical examples hold it, or a list) as a list, or ``None``."""
    if isinstance(tools, str):
        tools = json.loads(tools) if tools else None
    return tools or None


def render_chat(
    messages: list[dict[str, Any]],
    tokenizer: Any,
    template: str,
    generation_prompt: bool = False,
    tools: str | list[dict[str, Any]] | None = None,
) -> str:
    """Render ``messages`` (and the conversation's ``tools``) with ``template`` to text (no tokenization).

    Tool call arguments go to the template as objects, as transformers documents; a template that fails on them
    is given them as JSON text instead (DeepSeek-V3's concatenates them to a string).
    """
    tools = tool_list(tools)
    try:
        return _apply(template_messages(messages), tokenizer, template, generation_prompt, tools)
    except Exception as exc:  # Jinja errors, or a template that rejects this conversation (role order)
        failure = exc
    if any(m.get("tool_calls") for m in messages):
        with contextlib.suppress(Exception):
            return _apply(template_messages(messages, text_arguments=True), tokenizer, template, generation_prompt, tools)
    raise DataError(f"chat template failed on a conversation: {type(failure).__name__}: {failure}") from None


def _apply(messages: list[dict[str, Any]], tokenizer: Any, template: str, generation_prompt: bool, tools: Any) -> str:
    fast = _fast_renderer(tokenizer, template)
    if fast is not None:
        return fast(messages, tools, generation_prompt)
    return _reference(messages, tokenizer, template, generation_prompt, tools)


def _reference(messages: list[dict[str, Any]], tokenizer: Any, template: str, generation_prompt: bool, tools: Any) -> str:
    return tokenizer.apply_chat_template(messages, tools=tools, chat_template=template, tokenize=False,
                                         add_generation_prompt=generation_prompt)


#: (id(tokenizer), template) -> (tokenizer, the fast renderer or None). The tokenizer is kept so its id is not reused.
_FAST: dict[tuple[int, str], tuple[Any, Any]] = {}


def _fast_renderer(tokenizer: Any, template: str) -> Any:
    """The compiled template's own ``render``, for a tokenizer and template where it gives exactly what
    ``apply_chat_template`` gives, else ``None``.

    ``apply_chat_template`` spends about twice the rendering's own time rebuilding and checking its inputs, for
    rich objects that ft's canonical messages (plain JSON values) never hold; preparing a large dataset renders
    every conversation twice. The compiled template is transformers' own (same sandbox, same filters), given the
    same variables; before it is used it must render every probe conversation (plain turns, a system prompt,
    tools, tool calls, reasoning; with and without the generation prompt) exactly as ``apply_chat_template``
    does, or fail where it fails.
    """
    key = (id(tokenizer), template)
    if key not in _FAST:
        _FAST[key] = (tokenizer, _checked_renderer(tokenizer, template))
    return _FAST[key][1]


def _checked_renderer(tokenizer: Any, template: str) -> Any:
    try:
        from transformers.utils.chat_template_utils import _compile_jinja_template

        compiled = _compile_jinja_template(template)
    except Exception:  # another transformers, or a template that does not compile: apply_chat_template says why
        return None

    def render(messages: list[dict[str, Any]], tools: Any, generation_prompt: bool) -> str:
        return compiled.render(messages=[_aliased(m) for m in messages], tools=tools, documents=None,
                               add_generation_prompt=generation_prompt, **tokenizer.special_tokens_map)

    plain = [{"role": "user", "content": "Hi {{ there }}"}, {"role": "assistant", "content": "Hello."},
             {"role": "user", "content": "Again?"}, {"role": "assistant", "content": "Yes."}]
    probes = [(plain, None), ([{"role": "system", "content": "Be brief."}, *plain], None),
              *((template_messages(m), t) for m, t, _ in _PROBES.values())]
    for messages, tools in probes:
        for generation_prompt in (False, True):
            for upto in range(1, len(messages) + 1):
                outcomes = []
                for way in (render, functools.partial(_reference, tokenizer=tokenizer, template=template)):
                    try:
                        outcomes.append(way(messages[:upto], tools=tools, generation_prompt=generation_prompt))
                    except Exception:
                        outcomes.append(None)
                if outcomes[0] != outcomes[1]:
                    return None
    return render


def _aliased(message: dict[str, Any]) -> dict[str, Any]:
    """A message with its reasoning under every name templates read, as ``apply_chat_template`` passes it."""
    reasoning = next((message[k] for k in ("reasoning_content", "thinking", "reasoning") if message.get(k) is not None),
                     None)
    return message if reasoning is None else {"thinking": reasoning, **message, "reasoning_content": reasoning}


def trains(message: dict[str, Any]) -> bool:
    """Whether a message carries the loss: its ``train`` flag, else whether it is the assistant's."""
    flag = message.get("train")
    return flag if flag is not None else message["role"] == "assistant"


def render_messages(
    messages: list[dict[str, Any]],
    tokenizer: Any,
    template: str,
    train_on_inputs: bool,
    tools: str | list[dict[str, Any]] | None = None,
) -> tuple[str, list[Span]]:
    """The full conversation text and the character spans that carry the loss.

    The trained messages are the assistant's unless a message's ``train`` flag says otherwise; with
    ``train_on_inputs`` everything is. A message's span is what it adds to the conversation before it (for the
    assistant, from after the generation prompt through its end-of-turn marker). A template that rewrites earlier
    turns once the conversation goes on (Qwen3-style templates drop the reasoning of earlier answers) is handled
    by locating the turn as the whole conversation renders it, so the trained tokens are the ones the model sees.
    """
    text = render_chat(messages, tokenizer, template, tools=tools)
    if train_on_inputs:
        return text, [(0, len(text))]
    trained = [k for k, message in enumerate(messages) if trains(message)]
    if trained == [len(messages) - 1] and tools is None:
        start = _answer_start(text, messages, tokenizer, template)
        if start is not None:
            return text, [(start, len(text))]
    return text, [_turn_span(k, text, messages, tokenizer, template, tools) for k in trained]


def _answer_start(text: str, messages: list[dict[str, Any]], tokenizer: Any, template: str) -> int | None:
    """Where the last message's span starts in ``text`` (the conversation rendered whole), found without
    rendering the conversation again: for a plain conversation (no tools, tool calls or reasoning) ending in an
    assistant answer whose text the template writes as given, right after the template's generation prompt.

    That is exactly :func:`_turn_span`'s start (after the prompt rendered with the generation prompt) for a
    template whose :func:`_generation_prompt` was checked on probe conversations; ``None`` sends the example to
    :func:`_turn_span` (the answer not found as written after the generation prompt, another turn opening after
    it, or a richer conversation).
    """
    last = messages[-1]
    if len(messages) < 2 or last["role"] != "assistant" or not last["content"] or not FAST_SPANS:
        return None
    if any(m.get("tool_calls") or m.get("reasoning_content") for m in messages):
        return None
    opening = _generation_prompt(tokenizer, template)
    if opening is None:
        return None
    at = text.rfind(opening + last["content"])
    # The last turn's opening, not an earlier turn's with the same answer (nothing opens a turn after it).
    if at < 0 or text.find(opening, at + len(opening) + len(last["content"])) >= 0:
        return None
    return at + len(opening)


#: Whether :func:`render_messages` may locate a single last answer without a second rendering (tests compare
#: both ways).
FAST_SPANS = True
#: (id(tokenizer), template) -> (tokenizer, the checked generation prompt or None).
_OPENINGS: dict[tuple[int, str], tuple[Any, str | None]] = {}


def _generation_prompt(tokenizer: Any, template: str) -> str | None:
    """What the template adds for ``add_generation_prompt`` (for ChatML ``<|im_start|>assistant\n``), when
    locating a last answer right after it gives :func:`_turn_span`'s start on every probe conversation, else
    ``None``."""
    key = (id(tokenizer), template)
    if key not in _OPENINGS:
        _OPENINGS[key] = (tokenizer, _checked_opening(tokenizer, template))
    return _OPENINGS[key][1]


def _checked_opening(tokenizer: Any, template: str) -> str | None:
    answers = ["Hello.", "Yes", "  two\nlines ", "<b>{{ x }}</b>", "Hi {{ there }}"]
    plain = [{"role": "user", "content": "Hi {{ there }}"}, {"role": "assistant", "content": "Hello."},
             {"role": "user", "content": "Again?"}, {"role": "assistant", "content": "Yes."}]
    probes = [plain, [{"role": "system", "content": "Be brief."}, *plain],
              *([{"role": "user", "content": "Say it."}, {"role": "assistant", "content": a}] for a in answers)]
    opening = None
    try:
        for messages in probes:
            for k in range(1, len(messages)):
                if messages[k]["role"] != "assistant":
                    continue
                chat = (messages[: k + 1], tokenizer, template, None)
                text = _render(chat, k + 1)
                before = _render(chat, k, generation_prompt=True)
                plain_before = _render(chat, k)
                if opening is None:
                    if not before.startswith(plain_before) or len(before) == len(plain_before):
                        return None
                    opening = before[len(plain_before):]
                content = messages[k]["content"]
                at = text.rfind(opening + content)
                if not text.startswith(before) or at < 0 or at + len(opening) != len(before):
                    return None
    except DataError:
        return None
    return opening


Chat = tuple[list[dict[str, Any]], Any, str, Any]  # messages, tokenizer, template, tools


def _turn_span(k: int, text: str, *chat: Any) -> Span:
    """Where message ``k`` is in ``text``, the rendering of the whole conversation: from after what comes before
    it (for the assistant, after the generation prompt) through what it adds, end of turn included. A turn the
    template renders differently once later messages follow is trained from its content on (not the emptied or
    dropped reasoning markers before it) through its end of turn, as it appears in ``text``."""
    start = _start(k, text, chat)
    # The whole conversation is already rendered: the last message needs no render of its own.
    through = text if k == len(chat[0]) - 1 else _render(chat, k + 1)
    if text.startswith(through) and len(through) > start:
        return start, len(through)
    first, end = _rewritten(k, text, start, chat)
    return max(start, first), end


def _render(chat: Chat, upto: int, generation_prompt: bool = False, messages: list[dict[str, Any]] | None = None) -> str:
    messages_, tokenizer, template, tools = chat
    return render_chat((messages or messages_)[:upto], tokenizer, template, generation_prompt, tools)


def _start(k: int, text: str, chat: Chat) -> int:
    if k == 0:
        return 0
    assistant = chat[0][k]["role"] == "assistant"
    before = _render(chat, k, generation_prompt=assistant)
    if text.startswith(before):
        return len(before)
    # Earlier turns render differently once this one follows, or the generation prompt opens more than a
    # finished turn shows (an empty think block): start where the previous message ends, after as much of the
    # generation prompt as the text has there.
    plain = _render(chat, k) if assistant else before
    if not before.startswith(plain):
        raise _unlocatable(chat, k)
    through = _render(chat, k)
    previous = len(through) if text.startswith(through) else _rewritten(k - 1, text, 0, chat)[1]
    return previous + _matched(before[len(plain) :], text, previous, chat[1])


def _rewritten(k: int, text: str, start: int, chat: Chat) -> tuple[int, int]:
    """Where the content of message ``k`` starts in ``text`` and where the message ends, for a message the template
    renders differently once later messages follow.

    What the template writes after the content (tool calls, end of turn) is read from the message rendered last,
    where nothing rewrites it. The content is marked at both ends and the whole conversation rendered again: the
    marks show where the content is in ``text``, and the message runs on over as much of that tail as follows it
    there (a template may close a conversation differently from a turn: an end-of-sequence token, ``<|return|>``
    for ``<|end|>``). A message without content (only tool calls) is matched instead by the longest run of its
    last-rendered form that ``text`` has where it starts (a template that drops the reasoning before the calls).
    """
    messages, tokenizer = chat[0], chat[1]
    found = None
    if messages[k]["content"]:
        marked = [*messages[:k], {**messages[k], "content": _OPEN + messages[k]["content"] + _MARK},
                  *messages[k + 1 :]]
        whole = _render(chat, len(marked), messages=marked)
        alone = _render(chat, k + 1, messages=marked)
        if (whole.count(_OPEN) == whole.count(_MARK) == 1 and _MARK in alone and whole.find(_OPEN) >= start
                and whole.replace(_OPEN, "").replace(_MARK, "") == text):
            at = whole.index(_MARK) - len(_OPEN)
            found = whole.index(_OPEN), at + _matched(alone[alone.index(_MARK) + len(_MARK) :], text, at, tokenizer)
    else:
        through = _render(chat, k + 1)
        live = through[len(os.path.commonprefix([_render(chat, k), through])) :]
        runs = [_matched(live[i:], text, start, tokenizer) for i in range(len(live)) if live[i] == text[start : start + 1]]
        found = (start, start + max(runs)) if runs and max(runs) else None
    if found is None:
        raise _unlocatable(chat, k)
    return found


def _matched(piece: str, text: str, at: int, tokenizer: Any) -> int:
    """How many leading characters of ``piece`` ``text`` has from ``at`` on, in whole tokens of ``piece`` (so a
    partly matching special token, ``<|return|>`` against ``<|end|>``, is not counted)."""
    n = 0
    for a, b in zip(piece, text[at : at + len(piece)], strict=False):
        if a != b:
            break
        n += 1
    if n == len(piece):
        return n
    offsets = tokenizer(piece, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    return max((end for _, end in offsets if end <= n), default=0)


def _unlocatable(chat: Chat, k: int) -> DataError:
    return DataError(f"the chat template renders message {k} ({chat[0][k]['role']}) differently once later messages "
                     "follow, in a way ft cannot locate in the whole conversation, so it cannot mask the loss "
                     "exactly; use another data.chat_template (ft's chatml-think handles rewritten reasoning)")


#: Probe conversations for what a template renders: feature -> (messages, tools, strings that must appear).
_PROBE_CALL = {"type": "function", "function": {"name": "ft_probe_call", "arguments": '{"ft_probe_arg": 1}'}}
_PROBES: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]] | None, tuple[str, ...]]] = {
    "tools": ([{"role": "user", "content": "?"}, {"role": "assistant", "content": "!"}],
              [{"type": "function", "function": {"name": "ft_probe_tool", "description": "probe",
                                                 "parameters": {"type": "object", "properties": {}}}}],
              ("ft_probe_tool",)),
    "tool_calls": ([{"role": "user", "content": "?"}, {"role": "assistant", "content": "", "tool_calls": [_PROBE_CALL]},
                    {"role": "tool", "content": "ft_probe_result", "name": "ft_probe_call"},
                    {"role": "assistant", "content": "!"}], None, ("ft_probe_call", "ft_probe_arg", "ft_probe_result")),
    "reasoning": ([{"role": "user", "content": "?"},
                   {"role": "assistant", "content": "!", "reasoning_content": "ft_probe_thought"}], None,
                  ("ft_probe_thought",)),
}
_RENDERS: dict[tuple[str, str], bool] = {}


def renders(feature: str, tokenizer: Any, template: str) -> bool:
    """Whether ``template`` shows ``feature`` (``tools``, ``tool_calls`` with tool results, ``reasoning``) to the
    model: a probe conversation using it must come out with the probe's names in the text."""
    key = (feature, template)
    if key not in _RENDERS:
        messages, tools, needed = _PROBES[feature]
        try:
            text = render_chat(messages, tokenizer, template, tools=tools)
        except DataError:  # a template that refuses tool roles or calls cannot render them either
            text = ""
        _RENDERS[key] = all(name in text for name in needed)
    return _RENDERS[key]


def render_completion(prompt: str, completion: str, eos: str, train_on_inputs: bool) -> tuple[str, list[Span]]:
    """``prompt + completion + eos``; the completion and eos carry the loss."""
    text = prompt + completion + eos
    return text, [(0 if train_on_inputs else len(prompt), len(text))]


def template_to_save(choice: str | None, tokenizer: Any) -> str | dict[str, str]:
    """The chat template a run's tokenizer is saved with: the one ft rendered its chats with.

    That is :func:`resolve_chat_template` of the run's ``data.chat_template``, so a named fallback, a Jinja
    file or the ChatML used for a tokenizer without a template travels with the run (and with a merged model
    or an upload), and ``ft generate`` renders prompts exactly as training did. A tokenizer that keeps several
    named templates keeps the others, with the trained one as its default.
    """
    template = resolve_chat_template(choice, tokenizer)
    own = getattr(tokenizer, "chat_template", None)
    if isinstance(own, dict):
        return {**own, "default": template}
    return template
