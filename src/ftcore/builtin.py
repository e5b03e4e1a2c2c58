"""ftcore's own plugin: the two formats every run can use without any plugin installed.

``text`` (raw text, for continued pre-training) and ``completion`` (``prompt`` + ``completion``).
Registered by the host itself, not through an entry point.
"""

from __future__ import annotations

from typing import Any

from ftcore import hookimpl
from ftcore.specs import FormatSpec

FORMATS = {
    "text": FormatSpec("text", "raw text for continued pre-training (column: text)", columns=("text",)),
    "completion": FormatSpec(
        "completion", "prompt and completion; loss on the completion (columns: prompt, completion)",
        columns=("prompt", "completion"),
    ),
}


@hookimpl
def register_dataset_formats() -> list[FormatSpec]:
    return list(FORMATS.values())


@hookimpl(specname="load_dataset")
def load_builtin_dataset(source: Any, config: Any) -> Any:
    """Map ``text`` and ``completion`` records (string fields only) into canonical examples."""
    if source.format not in FORMATS:
        return None
    from ftcore.data.formats import get_str, map_records

    fields = FORMATS[source.format].columns
    return map_records(source, fields, lambda record: {name: get_str(record, name) for name in fields})
