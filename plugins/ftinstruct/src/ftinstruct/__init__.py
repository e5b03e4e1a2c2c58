"""ftinstruct: instruction tuning for ft.

Formats ``alpaca``, ``sharegpt`` and ``messages`` (mapped into canonical chat messages; ftcore renders the
chat template and masks everything but the assistant turns), and the method ``instruction``: LoRA on
instruction data, with the chat template and response-only loss on by default.
Nothing heavy is imported here: peft and torch load inside the hooks.
"""

from __future__ import annotations

from typing import Any

from ftcore import FormatSpec, MethodSpec, hookimpl

__version__ = "0.1.0"

FORMATS = {
    "alpaca": FormatSpec(
        "alpaca", "instruction, optional input and system, output (Stanford Alpaca)",
        columns=("instruction", "output"),
    ),
    "sharegpt": FormatSpec("sharegpt", "conversations of {from, value} turns: human, gpt, system", columns=("conversations",)),
    "messages": FormatSpec("messages", "OpenAI chat: messages of {role, content}, multi-turn", columns=("messages",)),
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
def load_instruction_dataset(source: Any, config: Any) -> Any:
    """Map alpaca/sharegpt/messages records into canonical ``messages`` examples."""
    if source.format not in FORMATS:
        return None
    from ftcore.data.formats import map_records
    from ftinstruct import formats

    return map_records(source, _REQUIRED[source.format], getattr(formats, source.format))


@hookimpl
def setup_peft(model: Any, method: str, config: Any, options: Any) -> Any:
    """Attach LoRA adapters for the ``instruction`` method."""
    if method != "instruction":
        return None
    from ftinstruct.method import attach

    return attach(model, options, config)
