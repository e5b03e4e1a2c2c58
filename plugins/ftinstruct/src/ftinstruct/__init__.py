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

#: Needs plugin API 2 (formats declare their shape).
FTCORE_PLUGIN_API = 2

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


@hookimpl
def load_adapter(model: Any, path: Any, method: str) -> Any:
    """Apply a trained ``instruction`` adapter (LoRA's, through ftlora) to its base, for inference."""
    if method != "instruction":
        return None
    from ftinstruct.method import load

    return load(model, path)


@hookimpl
def merge_adapter(model: Any, path: Any, method: str) -> Any:
    """Fold a trained ``instruction`` adapter into its base (through ftlora)."""
    if method != "instruction":
        return None
    from ftinstruct.method import merge

    return merge(model, path)


@hookimpl
def trained_tensor_shapes(model: Any, method: str) -> dict[str, list[int]] | None:
    """Shapes of the adapter tensors an ``instruction`` checkpoint holds (LoRA's)."""
    if method != "instruction":
        return None
    from ftinstruct.method import tensor_shapes

    return tensor_shapes(model)
