"""The instruction formats: alpaca, sharegpt and messages, mapped into canonical ``messages``."""

from __future__ import annotations

from typing import Any

from ftcore import FieldProblem, chat_message, get_list, get_str, tool_calls, tools_json, train_flag

#: ShareGPT's speaker names -> canonical roles (``observation``: LLaMA-Factory's tool results).
SHAREGPT_ROLES = {
    "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "chatgpt": "assistant",
    "model": "assistant", "bing": "assistant", "bard": "assistant", "system": "system", "observation": "tool",
    "tool": "tool",
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
    """``conversations`` of ``{from, value}`` turns -> canonical messages.

    Speakers human/gpt/system as in ShareGPT; LLaMA-Factory's ``function_call`` (the assistant calling tools: the
    value is a JSON ``{"name", "arguments"}`` object, or a list of them) and ``observation`` (a tool's result);
    the record's ``tools`` (JSON schemas, or a JSON string of them) and ``system`` go to the template.
    """
    turns = get_list(record, "conversations")
    messages = []
    system = get_str(record, "system", optional=True)
    if system:
        messages.append({"role": "system", "content": system})
    for j, turn in enumerate(turns):
        where = f"conversations[{j}]"
        if not isinstance(turn, dict):
            raise FieldProblem(where, "expected an object with 'from' and 'value'")
        speaker = turn.get("from")
        if speaker == "function_call":
            messages.append(_function_call(turn, where))
        elif speaker in SHAREGPT_ROLES:
            messages.append(chat_message(turn, where, role=SHAREGPT_ROLES[speaker]))
        else:
            raise FieldProblem(f"{where}.from", f"unknown speaker {speaker!r} (expected human, gpt, system, "
                                                "function_call or observation)")
    return _with_tools({"messages": messages}, record)


def _function_call(turn: dict[str, Any], where: str) -> dict[str, Any]:
    """A ``function_call`` turn: the assistant's tool call(s), trained like its answers."""
    if turn.get("value") is None:
        raise FieldProblem(f"{where}.value", "missing (the call as JSON: {\"name\": ..., \"arguments\": {...}})")
    message = {"role": "assistant", "content": "", "tool_calls": tool_calls(turn["value"], f"{where}.value")}
    flag = train_flag(turn, where)
    return message if flag is None else {**message, "train": flag}


def messages(record: dict[str, Any]) -> dict[str, Any]:
    """OpenAI-style (or LLaMA-Factory v1) ``messages``: content as a string or parts, tool calls, tool results,
    reasoning and per-message loss flags (see :mod:`ftcore.data.messages`); the record's ``tools`` too."""
    turns = get_list(record, "messages")
    return _with_tools({"messages": [chat_message(turn, f"messages[{j}]") for j, turn in enumerate(turns)]}, record)


def _with_tools(example: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    # Every example has the column (None without tools): a dataset's columns are its first example's keys.
    return {**example, "tools": tools_json(record.get("tools"))}
