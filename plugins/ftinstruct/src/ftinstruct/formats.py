"""The instruction formats: alpaca, sharegpt and messages, mapped into canonical ``messages``."""

from __future__ import annotations

from typing import Any

from ftcore.data.formats import FieldProblem, get_list, get_str

#: ShareGPT's speaker names -> canonical roles.
SHAREGPT_ROLES = {
    "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "chatgpt": "assistant",
    "model": "assistant", "bing": "assistant", "bard": "assistant", "system": "system",
}


def alpaca(record: dict[str, Any]) -> dict[str, Any]:
    """``instruction`` (+ optional ``input``, ``system``) and ``output`` -> system?/user/assistant."""
    instruction = get_str(record, "instruction")
    extra = get_str(record, "input", optional=True)
    system = get_str(record, "system", optional=True)
    user = f"{instruction}\n\n{extra}" if extra else instruction
    messages = [{"role": "system", "content": system}] if system else []
    messages += [{"role": "user", "content": user}, {"role": "assistant", "content": get_str(record, "output")}]
    return {"messages": messages}


def sharegpt(record: dict[str, Any]) -> dict[str, Any]:
    """``conversations`` of ``{from, value}`` turns (human/gpt/system) -> canonical messages."""
    turns = get_list(record, "conversations")
    messages = []
    for j, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise FieldProblem(f"conversations[{j}]", "expected an object with 'from' and 'value'")
        speaker = turn.get("from")
        if speaker not in SHAREGPT_ROLES:
            raise FieldProblem(
                f"conversations[{j}].from", f"unknown speaker {speaker!r} (expected human, gpt or system)"
            )
        if not isinstance(turn.get("value"), str):
            raise FieldProblem(f"conversations[{j}].value", f"expected a string, got {type(turn.get('value')).__name__}")
        messages.append({"role": SHAREGPT_ROLES[speaker], "content": turn["value"]})
    return {"messages": messages}


def messages(record: dict[str, Any]) -> dict[str, Any]:
    """OpenAI-style ``messages`` of ``{role, content}``; extra keys per message (name, ...) are dropped."""
    turns = get_list(record, "messages")
    out = []
    for j, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise FieldProblem(f"messages[{j}]", "expected an object with 'role' and 'content'")
        out.append({"role": turn.get("role"), "content": turn.get("content")})
    return {"messages": out}
