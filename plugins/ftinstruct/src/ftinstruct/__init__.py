"""ftinstruct: instruction tuning for ft.

Formats ``alpaca``, ``sharegpt`` and ``messages`` (mapped into canonical chat messages; ftcore renders the
chat template and masks everything but the assistant turns), and the method ``instruction``: LoRA on
instruction data, with the chat template and response-only loss on by default.
The ``instruction`` method's adapter hooks are ftlora's (:mod:`ftlora.kit`). Nothing heavy is imported here:
peft and torch load inside the hooks.
"""

from __future__ import annotations

from typing import Any

from ftlora.kit import (  # noqa: F401  (the instruction method's hooks are LoRA's)
    load_adapter,
    memory_profile,
    merge_adapter,
    setup_peft,
    trained_tensor_shapes,
)

from ftcore import FormatSpec, MethodSpec, hookimpl

__version__ = "0.1.0"

#: Needs plugin API 3 (memory_profile; API 2: formats declare their shape).
FTCORE_PLUGIN_API = 3

#: Columns of preference data (chosen/rejected answers, a KTO good/bad label): a file that has them is not
#: supervised chat data, even when it also has ``messages`` or ``conversations``; training its answers as
#: good ones would be silently wrong, so auto-detection never picks these formats for it.
PREFERENCE_COLUMNS = ("chosen", "rejected", "label")

FORMATS = {
    "alpaca": FormatSpec(
        "alpaca", "instruction, optional input and system, output (Stanford Alpaca)",
        columns=("instruction", "output"), shape="messages", excludes=PREFERENCE_COLUMNS,
        fields=("instruction", "input", "output", "system"),
    ),
    "sharegpt": FormatSpec(
        "sharegpt", "conversations of {from, value} turns: human, gpt, system", columns=("conversations",),
        shape="messages", excludes=PREFERENCE_COLUMNS, fields=("conversations", "tools", "system"),
    ),
    "messages": FormatSpec(
        "messages", "OpenAI chat: messages of {role, content}, multi-turn", columns=("messages",),
        shape="messages", excludes=PREFERENCE_COLUMNS, fields=("messages", "tools"),
    ),
}

_REQUIRED = {"alpaca": ("instruction", "output"), "sharegpt": ("conversations",), "messages": ("messages",)}


@hookimpl
def register_dataset_formats() -> list[FormatSpec]:
    return list(FORMATS.values())


@hookimpl
def register_methods() -> list[MethodSpec]:
    from ftinstruct.method import method_spec

    return [method_spec()]


@hookimpl(specname="load_dataset")
def load_instruction_dataset(source: Any) -> Any:
    """Map alpaca/sharegpt/messages records into canonical ``messages`` examples."""
    from ftcore import map_records
    from ftinstruct import formats

    return map_records(source, _REQUIRED[source.format], getattr(formats, source.format))
