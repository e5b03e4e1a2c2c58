"""ftcore's own plugin: the shapes ftcore renders and the two formats every run can use without any plugin.

Shapes ``messages``, ``completion`` and ``text``; formats ``text`` (raw text, for continued pre-training) and
``completion`` (``prompt`` + ``completion``). Registered by the host itself, not through an entry point.
"""

from __future__ import annotations

from typing import Any

from ftcore import hookimpl
from ftcore.contract.specs import FormatSpec, ShapeSpec

SHAPES = {
    "messages": ShapeSpec("messages", "a chat: messages of {role, content}; loss on assistant turns", columns=("messages",)),
    "completion": ShapeSpec("completion", "a prompt and its completion; loss on the completion",
                            columns=("prompt", "completion")),
    "text": ShapeSpec("text", "raw text; loss on every token", columns=("text",)),
}

FORMATS = {
    "text": FormatSpec("text", "raw text for continued pre-training (column: text)", columns=("text",), shape="text",
                       fields=("text",)),
    "completion": FormatSpec(
        "completion", "prompt and completion; loss on the completion (columns: prompt, completion)",
        columns=("prompt", "completion"), shape="completion", fields=("prompt", "completion"),
    ),
}


@hookimpl
def register_shapes() -> list[ShapeSpec]:
    return list(SHAPES.values())


@hookimpl
def register_dataset_formats() -> list[FormatSpec]:
    return list(FORMATS.values())


@hookimpl(specname="load_dataset")
def load_builtin_dataset(source: Any) -> Any:
    """Map ``text`` and ``completion`` records (string fields only) into canonical examples."""
    if source.format not in FORMATS:
        return None
    from ftcore.contract.records import convert_records, get_str

    # Every field is read as a string, so the examples have the core shape the format declares.
    fields = FORMATS[source.format].columns
    return convert_records(source, fields, lambda record: {name: get_str(record, name) for name in fields})
