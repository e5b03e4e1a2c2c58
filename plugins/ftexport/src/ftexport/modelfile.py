"""An Ollama ``Modelfile`` for an exported GGUF: FROM, a TEMPLATE equal to the chat template, stops, parameters.

Ollama's templates are Go templates, not Jinja, so the chat template is not translated but measured: it is
rendered with marker strings in place of each role's content, which yields the text around a system, user,
assistant and tool turn (a tool result, where the template writes one), the generation prompt and any default system prompt. The Go template built from those
pieces is then rendered (by a small simulation here) on several conversations and must equal the Jinja
rendering of each; when it does not (a template with logic Ollama's cannot express), the Modelfile has no
TEMPLATE and says so, and Ollama falls back to the chat template stored in the GGUF.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_S, _U, _A, _V, _B = "ftmarkSYS", "ftmarkUSER", "ftmarkASSISTANT", "ftmarkSECOND", "ftmarkREPLY"


@dataclass(frozen=True)
class Turns:
    """The text a chat template writes around each role's content, measured by rendering markers."""

    system: tuple[str, str] | None
    user: tuple[str, str]
    assistant: tuple[str, str]
    generation_prompt: str
    default_system: str | None
    tool: tuple[str, str] | None = None


def modelfile_text(gguf_name: str, tokenizer: Any, generation_config: Any = None) -> str:
    """The Modelfile for ``gguf_name`` (a path relative to the Modelfile) and the run's tokenizer."""
    lines = [f"# Ollama: ollama create NAME -f {gguf_name.rsplit('.gguf', 1)[0]}.Modelfile", f"FROM ./{gguf_name}"]
    turns = measure_turns(tokenizer) if tokenizer.chat_template else None
    if turns is not None:
        lines += ['TEMPLATE """' + go_template(turns) + '"""']
        if turns.default_system:
            lines += ['SYSTEM """' + turns.default_system + '"""']
    else:
        lines += [
            "# TEMPLATE: the chat template cannot be written as an Ollama template; "
            "Ollama reads the one stored in the GGUF"
        ]
    for stop in stop_strings(tokenizer, turns):
        lines.append(f'PARAMETER stop "{stop}"')
    lines += parameter_lines(generation_config)
    return "\n".join(lines) + "\n"


def stop_strings(tokenizer: Any, turns: Turns | None) -> list[str]:
    """End of an assistant turn, start of a user turn (for templates without an end marker) and eos."""
    stops = []
    if turns is not None:
        stops += [turns.assistant[1].strip(), turns.user[0].strip()]
    stops.append(tokenizer.eos_token or "")
    return [s for s in dict.fromkeys(stops) if s and '"' not in s and "\n" not in s]


def parameter_lines(generation_config: Any) -> list[str]:
    """Sampling settings of the run's generation config; greedy (temperature 0) when it does not sample."""
    if generation_config is None or not getattr(generation_config, "do_sample", False):
        return ["PARAMETER temperature 0"]
    lines = []
    for name, key in (
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("top_k", "top_k"),
        ("repeat_penalty", "repetition_penalty"),
    ):
        value = getattr(generation_config, key, None)
        if value is not None:
            lines.append(f"PARAMETER {name} {value}")
    return lines


def measure_turns(tokenizer: Any) -> Turns | None:
    """The template's :class:`Turns`, or None when its renderings cannot be split into per-role pieces."""
    try:
        turns = _measure(tokenizer)
    except Exception:  # a template that refuses these conversations: no TEMPLATE, Ollama uses the GGUF's
        return None
    if turns is None or any("{{" in piece or '"""' in piece for piece in _pieces(turns)):
        return None
    return (
        turns if all(render_go(turns, chat) == _render(tokenizer, chat, gen) for chat, gen in _checks(turns)) else None
    )


def _render(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool) -> str:
    from ftexport.gguf_writer import adds_bos

    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    bos = tokenizer.bos_token
    # A tokenizer that prepends BOS has llama.cpp prepend it too (add_bos_token), so the Go template must not
    # write it again; SmolLM2's "BOS" is <|im_start|> but never prepended, so its text stays.
    return text[len(bos) :] if bos and adds_bos(tokenizer) and text.startswith(bos) else text


def _measure(tokenizer: Any) -> Turns | None:
    def msg(role: str, content: str) -> dict[str, str]:
        return {"role": role, "content": content}

    one = _render(tokenizer, [msg("user", _U)], False)
    with_reply = _render(tokenizer, [msg("user", _U), msg("assistant", _A)], False)
    two = _render(tokenizer, [msg("user", _U), msg("assistant", _A), msg("user", _V)], False)
    prompt = _render(tokenizer, [msg("user", _U)], True)
    if not (with_reply.startswith(one) and two.startswith(with_reply) and prompt.startswith(one)):
        return None
    user = _split(two[len(with_reply) :], _V)
    assistant = _split(with_reply[len(one) :], _A)
    if user is None or assistant is None:
        return None
    lead = one[: len(one) - len(user[0] + _U + user[1])]
    system = None
    try:
        with_system = _render(tokenizer, [msg("system", _S), msg("user", _U)], False)
        if with_system.endswith(user[0] + _U + user[1]):
            system = _split(with_system[: len(with_system) - len(user[0] + _U + user[1])], _S)
    except Exception:  # templates that refuse a system message
        system = None
    default = None
    if lead:
        if system is None or not (lead.startswith(system[0]) and lead.endswith(system[1])):
            return None
        default = lead[len(system[0]) : len(lead) - len(system[1])]
    return Turns(system, user, assistant, prompt[len(one) :], default, _measure_tool(tokenizer, with_reply))


def _measure_tool(tokenizer: Any, with_reply: str) -> tuple[str, str] | None:
    """The text around a tool result after an assistant turn; None when the template writes none."""
    chat = [{"role": "user", "content": _U}, {"role": "assistant", "content": _A}, {"role": "tool", "content": _V}]
    try:
        text = _render(tokenizer, chat, False)
    except Exception:  # templates that refuse a tool message
        return None
    return _split(text[len(with_reply) :], _V) if text.startswith(with_reply) else None


def _split(text: str, marker: str) -> tuple[str, str] | None:
    before, found, after = text.partition(marker)
    return (before, after) if found and marker not in after else None


def _pieces(turns: Turns) -> list[str]:
    return [*(turns.system or ()), *turns.user, *turns.assistant, *(turns.tool or ()), turns.generation_prompt,
            turns.default_system or ""]


def go_template(turns: Turns) -> str:
    """Ollama's Go template: every message wrapped in its role's text, then the generation prompt."""
    branches = [("user", turns.user), ("assistant", turns.assistant)]
    if turns.system is not None:
        branches.insert(0, ("system", turns.system))
    if turns.tool is not None:
        branches.append(("tool", turns.tool))
    body = "".join(
        f'{{{{ {"if" if i == 0 else "else if"} eq .Role "{role}" }}}}{pre}{{{{ .Content }}}}{post}'
        for i, (role, (pre, post)) in enumerate(branches)
    )
    return f"{{{{- range .Messages }}}}{body}{{{{ end }}}}{{{{ end }}}}{turns.generation_prompt}"


def render_go(turns: Turns, messages: list[dict[str, str]]) -> str:
    """What Ollama renders with :func:`go_template` (its default system message included) for ``messages``."""
    if turns.default_system is not None and messages[0]["role"] != "system":
        messages = [{"role": "system", "content": turns.default_system}, *messages]
    wraps = {"user": turns.user, "assistant": turns.assistant, "system": turns.system or ("", ""),
             "tool": turns.tool or ("", "")}
    body = "".join(wraps[m["role"]][0] + m["content"] + wraps[m["role"]][1] for m in messages)
    return body + turns.generation_prompt


def _checks(turns: Turns) -> list[tuple[list[dict[str, str]], bool]]:
    """Conversations the Go template must render exactly as the chat template does (always ending in a prompt)."""
    talk = [
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Name two colours."},
    ]
    chats = [talk[:1], talk]
    if turns.system is not None:
        chats.append([{"role": "system", "content": "Be brief."}, *talk])
    if turns.tool is not None:
        chats.append([*talk[:2], {"role": "tool", "content": '{"colours": ["red", "blue"]}'}])
    return [(chat, True) for chat in chats]

