"""Preference data layouts -> ``preference`` and ``unpaired_preference`` examples.

``preference`` examples have ``prompt``, ``chosen`` and ``rejected``: either all plain text (the prompt is used as
written), or a conversation (``prompt`` a list of ``{role, content}`` messages, ``chosen``/``rejected`` lists of
the assistant's messages), which :mod:`ftpref.encode` renders with the run's chat template. ``unpaired_preference``
examples have ``prompt``, ``completion`` and a boolean ``label`` (good or bad answer), in the same two spellings.
"""

from __future__ import annotations

import os
from typing import Any

from ftcore import FieldProblem, get_list, text_content

ROLES = {"system", "user", "assistant"}
#: ShareGPT speakers (LLaMA-Factory) -> roles.
SPEAKERS = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "model": "assistant",
            "system": "system"}


def _message(value: Any, where: str) -> dict[str, str]:
    """One ``{role, content}`` message from either spelling (``role``/``content`` or ShareGPT's ``from``/``value``)."""
    if not isinstance(value, dict):
        raise FieldProblem(where, f"expected a message object, got {type(value).__name__}")
    if "from" in value:
        role = SPEAKERS.get(value["from"])
        if role is None:
            raise FieldProblem(f"{where}.from", f"unknown speaker {value['from']!r} (expected human, gpt or system)")
        content = value.get("value")
        key = "value"
    else:
        role, content, key = value.get("role"), value.get("content"), "content"
        if role not in ROLES:
            raise FieldProblem(f"{where}.role", f"must be one of system, user, assistant, got {role!r}")
    # Content parts (OpenAI's or LLaMA-Factory v1's) are joined; image or audio parts are refused.
    return {"role": role, "content": text_content(content, f"{where}.{key}")}


def _messages(record: dict[str, Any], name: str) -> list[dict[str, str]]:
    return [_message(m, f"{name}[{i}]") for i, m in enumerate(get_list(record, name))]


def _answer(value: Any, name: str) -> list[dict[str, str]] | str:
    """An answer: a string (not blank), one assistant message object, or a list of messages."""
    if isinstance(value, str):
        if not value.strip():
            raise FieldProblem(name, "is empty: an answer to learn from needs text")
        return value
    if isinstance(value, dict):
        return [_message(value, name)]
    if isinstance(value, list) and value:
        return [_message(m, f"{name}[{i}]") for i, m in enumerate(value)]
    raise FieldProblem(name, f"expected a string or assistant message(s), got {type(value).__name__}")


def _pair(prompt: Any, chosen: Any, rejected: Any, extra: dict[str, Any]) -> dict[str, Any]:
    """A ``preference`` example; text and conversations are not mixed within one example."""
    conversational = isinstance(prompt, list)
    for name, answer in (("chosen", chosen), ("rejected", rejected)):
        if isinstance(answer, list) != conversational:
            kind = "a conversation" if conversational else "text"
            raise FieldProblem(name, f"the prompt is {kind}, so {name} must be {kind} too")
    if chosen == rejected:
        raise FieldProblem("rejected", "is identical to chosen, so the pair teaches nothing; remove the pair or "
                                       "give a rejected answer that differs")
    return {**extra, "prompt": prompt, "chosen": chosen, "rejected": rejected}


def _extra(record: dict[str, Any], used: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in used}


def preference(record: dict[str, Any]) -> dict[str, Any]:
    """TRL's standard (strings) or conversational (message lists) ``prompt``/``chosen``/``rejected``."""
    raw = record.get("prompt")
    prompt: Any = raw if isinstance(raw, str) else _messages(record, "prompt")
    return _pair(prompt, _answer(record.get("chosen"), "chosen"), _answer(record.get("rejected"), "rejected"),
                 _extra(record, ("prompt", "chosen", "rejected")))


def implicit_preference(record: dict[str, Any]) -> dict[str, Any]:
    """Whole ``chosen``/``rejected`` texts or conversations; their shared beginning is the prompt (Anthropic HH)."""
    chosen, rejected = record.get("chosen"), record.get("rejected")
    extra = _extra(record, ("chosen", "rejected"))
    if isinstance(chosen, str) and isinstance(rejected, str):
        cut = len(os.path.commonprefix([chosen, rejected]))
        if cut == 0 or cut == min(len(chosen), len(rejected)):
            raise FieldProblem("chosen", "chosen and rejected share no prompt (or one contains the other)")
        return _pair(chosen[:cut], chosen[cut:], rejected[cut:], extra)
    good, bad = _messages(record, "chosen"), _messages(record, "rejected")
    shared = 0
    while shared < min(len(good), len(bad)) - 1 and good[shared] == bad[shared]:
        shared += 1
    if shared == 0 or good[shared]["role"] != "assistant" or bad[shared]["role"] != "assistant":
        raise FieldProblem("chosen", "chosen and rejected must share the conversation up to an assistant answer")
    return _pair(good[:shared], good[shared:], bad[shared:], extra)


def sharegpt_preference(record: dict[str, Any]) -> dict[str, Any]:
    """LLaMA-Factory: ShareGPT ``conversations`` (+ optional ``system``) and ``chosen``/``rejected`` turns."""
    prompt = _messages(record, "conversations")
    system = record.get("system")
    if isinstance(system, str) and system:
        prompt = [{"role": "system", "content": system}, *prompt]
    chosen, rejected = record.get("chosen"), record.get("rejected")
    return _pair(prompt, _answer(chosen, "chosen") if not isinstance(chosen, str) else [_assistant(chosen)],
                 _answer(rejected, "rejected") if not isinstance(rejected, str) else [_assistant(rejected)],
                 _extra(record, ("conversations", "system", "chosen", "rejected")))


def _assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


def _label(record: dict[str, Any]) -> bool:
    value = record.get("label")
    if isinstance(value, bool):
        return value
    if value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise FieldProblem("label", f"expected true or false, got {value!r}")


def unpaired(record: dict[str, Any]) -> dict[str, Any]:
    """TRL's unpaired preference: ``prompt``, ``completion`` and a boolean ``label`` (text or conversational)."""
    raw = record.get("prompt")
    prompt: Any = raw if isinstance(raw, str) else _messages(record, "prompt")
    completion = _answer(record.get("completion"), "completion")
    if isinstance(completion, list) != isinstance(prompt, list):
        raise FieldProblem("completion", "the prompt and the completion must both be text or both conversations")
    return {**_extra(record, ("prompt", "completion", "label")), "prompt": prompt, "completion": completion,
            "label": _label(record)}


def messages_unpaired(record: dict[str, Any]) -> dict[str, Any]:
    """LLaMA-Factory KTO: ``messages`` ending with the assistant answer that ``label`` judges."""
    messages = _messages(record, "messages")
    if len(messages) < 2 or messages[-1]["role"] != "assistant":
        raise FieldProblem("messages", "must end with the assistant answer that label judges")
    return {**_extra(record, ("messages", "label")), "prompt": messages[:-1], "completion": messages[-1:],
            "label": _label(record)}
