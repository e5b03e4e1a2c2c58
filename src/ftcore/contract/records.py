"""Reading a format's records into examples, for every format alike: the helpers a format plugin's converter uses.

Nothing here asks the plugin registry, so ftcore's own plugin (:mod:`ftcore.contract.builtin`) and
:func:`ftcore.data.formats.map_records` share it without an import cycle.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ftcore.errors import DataError

if TYPE_CHECKING:
    from datasets import Dataset

    from ftcore.data.sources import DataSource


class FieldProblem(Exception):
    """Raised inside a record converter: ``field`` of the current record is missing or wrong."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def get_str(record: dict[str, Any], name: str, *, optional: bool = False) -> str:
    """``record[name]`` as a string; a missing (unless ``optional``) or non-string value is a FieldProblem."""
    value = record.get(name)
    if value is None:
        if optional:
            return ""
        raise FieldProblem(name, "missing")
    if not isinstance(value, str):
        raise FieldProblem(name, f"expected a string, got {type(value).__name__} {short(value)}")
    return value


def get_list(record: dict[str, Any], name: str) -> list[Any]:
    """``record[name]`` as a list; a JSON string (a CSV cell) is parsed; anything else is a FieldProblem."""
    value = record.get(name)
    if value is None:
        raise FieldProblem(name, "missing")
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise FieldProblem(name, "expected a list (or a JSON-encoded list), got a string") from None
    if not isinstance(value, list):
        raise FieldProblem(name, f"expected a list, got {type(value).__name__} {short(value)}")
    return value


def short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def convert_records(
    source: DataSource,
    fields: Iterable[str],
    convert: Callable[[dict[str, Any]], dict[str, Any]],
    check: Callable[[dict[str, Any]], None] | None = None,
) -> Dataset:
    """A source's raw records converted by ``convert``, each example then passed to ``check`` (when given).

    The user's ``columns`` mapping is applied first, so ``convert`` sees the format's own field names. A
    required field absent from every record names the format and the columns present; a field missing in one
    record, or a :class:`FieldProblem` raised by ``convert`` or ``check``, names the record's ``file:line``.
    """
    from datasets import Dataset

    fields = list(fields)
    records = source.records
    if records is None:
        raise DataError(f"{source.path}: no records were read for format {source.format!r}")
    present = list(records.column_names)
    missing = [f for f in fields if source.field_name(f) not in present]
    if missing:
        raise DataError(_missing_column_message(source, missing[0], present))
    rename = {source.field_name(f): f for f in _all_fields(source, present)}
    examples = []
    for i, raw in enumerate(records.to_list()):  # one conversion: iterating a Dataset row by row is ~25x slower
        record = {rename.get(k, k): v for k, v in raw.items()}
        try:
            for name in fields:
                if record.get(name) is None:
                    raise FieldProblem(name, "missing")
            example = convert(record)
            if check is not None:
                check(example)
        except FieldProblem as problem:
            column = source.field_name(problem.field)
            shown = problem.field if column == problem.field else f"{problem.field} (column {column!r})"
            raise DataError(f"{source.where(i)}: field {shown} {problem.problem} (format {source.format})") from None
        examples.append(example)
    return Dataset.from_list(examples)


def _all_fields(source: DataSource, present: list[str]) -> list[str]:
    return [name for name, column in source.columns.items() if column in present]


def _missing_column_message(source: DataSource, field: str, present: list[str]) -> str:
    column = source.field_name(field)
    what = f"field {field!r}" if column == field else f"field {field!r} (mapped to column {column!r})"
    return (
        f"{source.where(0)}: record is missing {what} required by format {source.format!r}; "
        f"the records have {', '.join(repr(c) for c in present) or 'no fields'} "
        f"(map yours with data.columns, e.g. columns: {{{field}: your_column}}, or set data.format)"
    )
