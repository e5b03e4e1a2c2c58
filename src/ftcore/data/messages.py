"""Chat messages as real data spells them -> ftcore's canonical messages.

Format plugins call these helpers so that every conversational layout accepts the same things and reports a
record that does not fit the same way (a :class:`~ftcore.data.formats.FieldProblem` naming the field):

- content as a string or as a list of parts: text parts in OpenAI's (``{"type": "text", "text": ...}``) or
  LLaMA-Factory v1's (``{"type": "text", "value": ...}``) spelling are joined in order; v1's ``reasoning`` and
  ``tool_call`` parts become the message's reasoning and tool calls; image, audio and other parts are refused;
- per-message loss flags: ``loss_weight`` (LLaMA-Factory), ``weight`` (Axolotl) or ``train``;
- OpenAI ``tool_calls`` (arguments a dict or a JSON string), ``tool`` messages, and a record's ``tools``;
- reasoning in ``reasoning_content``, ``thinking`` or ``reasoning``.

A canonical message has ``role`` (system, user, assistant or tool) and ``content`` (a string), and may have
``tool_calls`` (``[{"type": "function", "id"?, "function": {"name", "arguments"}}]`` with the arguments as a JSON
string), ``reasoning_content``, ``train`` (``True``/``False``: train this message or not; absent: assistant
messages train), ``name`` and ``tool_call_id``. A conversation's tool list is the example's ``tools`` column: a JSON
string of ``[{"type": "function", "function": {json schema}}]``. JSON strings keep each example's arguments and
schemas exactly as written when examples with different keys share one Arrow table.
"""

from __future__ import annotations

import json
from typing import Any

from ftcore.data.formats import ROLES, FieldProblem

#: Roles other spellings map onto (``developer`` is OpenAI's newer name for system, ``function`` its older tool).
ROLE_ALIASES = {"developer": "system", "function": "tool"}
#: Message keys that hold the reasoning before the answer, in the order they are looked up.
REASONING_KEYS = ("reasoning_content", "thinking", "reasoning")
#: Message keys that say whether a message is trained, in the order they are looked up.
TRAIN_KEYS = ("loss_weight", "weight", "train")


def text_content(value: Any, field: str, *, allow_none: bool = False) -> str:
    """A message's content as text: a string as is, a list of parts joined in order.

    :param value: the content as written: a string, or a list of parts (strings or ``{"type", ...}`` objects).
    :param field: where the content is, for errors (``messages[2].content``).
    :param allow_none: a missing content is ``""`` (an assistant message that only calls tools).
    :raises FieldProblem: a non-text part, or a part that is not text in either spelling.
    """
    if value is None and allow_none:
        return ""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise FieldProblem(field, f"expected a string or a list of text parts, got {_kind(value)}")
    check_parts(value, field)
    return "".join(_part_text(part, f"{field}[{i}]") for i, part in enumerate(value) if _part_type(part) == "text")


def _part_type(part: Any) -> str:
    if isinstance(part, str):
        return "text"
    if isinstance(part, dict):
        kind = part.get("type")
        return kind if isinstance(kind, str) else ("text" if "text" in part or "value" in part else "")
    return ""


def _part_text(part: Any, field: str) -> str:
    if isinstance(part, str):
        return part
    for key in ("text", "value"):
        if isinstance(part.get(key), str):
            return part[key]
    raise FieldProblem(field, "is a text part without a 'text' (or 'value') string")


def check_parts(value: Any, field: str) -> None:
    """Refuse parts other than text, reasoning and tool calls, naming the first one's type."""
    if not isinstance(value, list):
        return
    for i, part in enumerate(value):
        kind = _part_type(part)
        if kind not in ("text", "reasoning", "thinking", "tool_call"):
            shown = f"a content part of type {kind!r}" if kind else f"{_kind(part)}, not a content part"
            raise FieldProblem(f"{field}[{i}]", f"is {shown}; this model and method train on text only, so remove "
                                                "image, audio and other non-text parts")


def _parts_of(value: Any, kinds: tuple[str, ...]) -> list[tuple[int, Any]]:
    return [(i, p) for i, p in enumerate(value) if _part_type(p) in kinds] if isinstance(value, list) else []


def train_flag(turn: dict[str, Any], field: str) -> bool | None:
    """Whether a message is trained, from ``loss_weight``, ``weight`` or ``train``; ``None`` when none is given.

    Weights are 0 or 1: ft trains a message's tokens or not, it does not scale their loss.
    """
    found: list[tuple[str, bool]] = []
    for key in TRAIN_KEYS:
        value = turn.get(key)
        if value is None:
            continue
        if isinstance(value, bool):
            found.append((key, value))
        elif isinstance(value, (int, float)) and value in (0, 1):
            found.append((key, bool(value)))
        elif isinstance(value, (int, float)):
            raise FieldProblem(f"{field}.{key}", f"is {value}; ft trains a message or not, so use 0 or 1 "
                                                 "(fractional loss weights are not supported)")
        else:
            raise FieldProblem(f"{field}.{key}", f"expected true/false or 0/1, got {_kind(value)}")
    if len({flag for _, flag in found}) > 1:
        names = " and ".join(key for key, _ in found)
        raise FieldProblem(f"{field}.{found[1][0]}", f"contradicts {found[0][0]} ({names} disagree)")
    return found[0][1] if found else None


def reasoning_text(turn: dict[str, Any], field: str) -> str | None:
    """The reasoning an assistant message gives before its answer, from whichever key holds it (or v1 parts)."""
    for key in REASONING_KEYS:
        value = turn.get(key)
        if value is not None:
            return text_content(value, f"{field}.{key}")
    parts = _parts_of(turn.get("content"), ("reasoning", "thinking"))
    return "".join(_part_text(p, f"{field}.content[{i}]") for i, p in parts) if parts else None


def tool_calls(value: Any, field: str) -> list[dict[str, Any]]:
    """OpenAI-style tool calls (or bare ``{"name", "arguments"}`` objects) with the arguments as a JSON string.

    :param value: a list of calls, one call, or a JSON string of either.
    :raises FieldProblem: a call without a function name, or arguments that are not an object.
    """
    value = _json_value(value, field)
    calls = value if isinstance(value, list) else [value]
    return [_tool_call(call, f"{field}[{i}]" if isinstance(value, list) else field) for i, call in enumerate(calls)]


def _tool_call(call: Any, field: str) -> dict[str, Any]:
    if not isinstance(call, dict):
        raise FieldProblem(field, f"expected a tool call object, got {_kind(call)}")
    function = call.get("function", call)
    if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
        raise FieldProblem(f"{field}.function.name" if "function" in call else f"{field}.name", "missing tool name")
    where = f"{field}.function.arguments" if "function" in call else f"{field}.arguments"
    written = function.get("arguments")
    arguments = _json_value(written if written is not None else {}, where)
    if isinstance(written, dict):
        arguments = _without_nulls(arguments)
    if not isinstance(arguments, dict):
        raise FieldProblem(where, f"expected an object of arguments, got {_kind(arguments)}")
    out: dict[str, Any] = {"type": "function", "function": {"name": function["name"], "arguments": json.dumps(arguments)}}
    if isinstance(call.get("id"), str):
        out["id"] = call["id"]
    return out


def tools_json(value: Any, field: str = "tools") -> str | None:
    """A record's tool list as a JSON string of ``[{"type": "function", "function": schema}]``; ``None`` if empty.

    Accepts a list of JSON schemas (bare ``{"name", "description", "parameters"}`` or wrapped in
    ``{"type": "function", "function": ...}``), one schema, or a JSON string of either.
    """
    if value is None or value == "" or value == []:
        return None
    value = _json_value(value, field)
    schemas = value if isinstance(value, list) else [value]
    tools = []
    for i, schema in enumerate(schemas):
        where = f"{field}[{i}]" if isinstance(value, list) else field
        function = schema.get("function", schema) if isinstance(schema, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise FieldProblem(where, "expected a tool's JSON schema with a 'name'")
        tools.append({"type": "function", "function": function if isinstance(value, str) else _without_nulls(function)})
    return json.dumps(tools) if tools else None


def _without_nulls(value: Any) -> Any:
    """Objects read from a file without their null members: the records' common Arrow structure gives each object
    every key any record's object has, set to null where it had none (a JSON string keeps its nulls)."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _json_value(value: Any, field: str) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise FieldProblem(field, f"is not valid JSON ({exc.msg} at character {exc.pos})") from None


def chat_message(turn: Any, field: str, role: str | None = None) -> dict[str, Any]:
    """One canonical message from an OpenAI-style (or LLaMA-Factory v1) message object.

    :param turn: the message as written: ``role``, ``content`` (string or parts), and optionally ``tool_calls``,
        reasoning, a loss flag, ``name``, ``tool_call_id``.
    :param field: where the message is (``messages[3]``), for errors.
    :param role: the role, when the layout spells it otherwise (ShareGPT's ``from``).
    """
    if not isinstance(turn, dict):
        raise FieldProblem(field, f"expected a message object, got {_kind(turn)}")
    if role is None:
        written = turn.get("role")
        role = ROLE_ALIASES.get(written, written)
        if role not in ROLES:
            raise FieldProblem(f"{field}.role", f"must be one of {', '.join(ROLES)}, got {written!r}")
    key = "content" if "content" in turn or "value" not in turn else "value"
    raw = turn.get(key)
    check_parts(raw, f"{field}.{key}")  # before anything else: an image part is the first thing to report
    calls = _calls_of(turn, raw, field)
    message: dict[str, Any] = {
        "role": role, "content": text_content(raw, f"{field}.{key}", allow_none=bool(calls))
    }
    if calls:
        message["tool_calls"] = calls
    reasoning = reasoning_text(turn, field)
    if reasoning:
        message["reasoning_content"] = reasoning
    flag = train_flag(turn, field)
    if flag is not None:
        if flag and role == "tool":
            raise FieldProblem(f"{field}.{_flag_key(turn)}", "a tool result is never trained (the model reads it, "
                                                             "it does not write it)")
        message["train"] = flag
    for extra in ("name", "tool_call_id"):
        if isinstance(turn.get(extra), str):
            message[extra] = turn[extra]
    if calls or reasoning:
        _require_assistant(role, field, "tool_calls" if calls else "reasoning")
    return message


def _calls_of(turn: dict[str, Any], raw: Any, field: str) -> list[dict[str, Any]]:
    calls = tool_calls(turn["tool_calls"], f"{field}.tool_calls") if turn.get("tool_calls") else []
    for i, part in _parts_of(raw, ("tool_call",)):
        where = f"{field}.content[{i}]"
        calls += tool_calls(part.get("value", part.get("text")) if isinstance(part, dict) else part, where)
    return calls


def _flag_key(turn: dict[str, Any]) -> str:
    return next(key for key in TRAIN_KEYS if turn.get(key) is not None)


def _require_assistant(role: str, field: str, what: str) -> None:
    if role != "assistant":
        raise FieldProblem(f"{field}.role", f"only assistant messages carry {what}, this one is {role!r}")


def _kind(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"
