"""From raw records to canonical examples: format detection, the ``load_dataset`` hook, record mapping.

Canonical examples have a *shape*: ftcore's own are ``messages`` (a list of ``{role, content}``), ``prompt`` +
``completion``, and ``text``; plugins register more (see :class:`ftcore.ShapeSpec`). Format plugins use
:func:`map_records` so that a record that does not fit is reported the same way for every format:
``file:line: field 'output' ... (format alpaca)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ftcore.contract.records import FieldProblem, convert_records
from ftcore.contract.records import get_list as get_list  # re-exported: plugins' converters read fields with these
from ftcore.contract.records import get_str as get_str
from ftcore.contract.records import short as _short
from ftcore.contract.specs import CORE_SHAPES
from ftcore.errors import DataError, PluginError

if TYPE_CHECKING:
    from datasets import Dataset

    from ftcore.config.schema import DataConfig, FtConfig
    from ftcore.data.sources import DataSource

ROLES = ("system", "user", "assistant", "tool")


def map_records(
    source: DataSource,
    fields: Iterable[str],
    convert: Callable[[dict[str, Any]], dict[str, Any]],
) -> Dataset:
    """Map a source's raw records into canonical examples with ``convert``.

    The user's ``columns`` mapping is applied first, so ``convert`` sees the format's own field names.
    A required field absent from every record names the format and the columns present; a field missing in
    one record, or a :class:`FieldProblem` raised by ``convert``, names the record's ``file:line``. Each
    example must have the shape the format declares (:attr:`ftcore.FormatSpec.shape`): ftcore's shapes are
    checked field by field, a plugin's shape for its columns.

    :param source: the data source handed to the ``load_dataset`` hook.
    :param fields: the format's required fields.
    :param convert: one renamed record -> one canonical example.
    :returns: a ``datasets.Dataset`` of canonical examples.
    """
    shape = declared_shape(source.format)
    return convert_records(source, fields, convert, lambda example: check_canonical(example, shape))


def declared_shape(format_name: str | None) -> str | None:
    """The shape format ``format_name`` declares, or ``None`` (an API-1 format, or no such format)."""
    from ftcore.contract.plugins import get_registry

    found = get_registry().formats.get(format_name or "")
    return found[0].shape if found else None


def check_canonical(example: dict[str, Any], shape: str | None = None) -> None:
    """Raise :class:`FieldProblem` unless ``example`` has ``shape`` (or, when ``None``, one of ftcore's shapes)."""
    if shape is not None and shape not in CORE_SHAPES:
        _check_plugin_shape(example, shape)
    elif "messages" in example:
        messages = example["messages"]
        if not isinstance(messages, list) or not messages:
            raise FieldProblem("messages", "expected a non-empty list of {role, content}")
        for j, message in enumerate(messages):
            if not isinstance(message, dict):
                raise FieldProblem(f"messages[{j}]", "expected an object with role and content")
            _check_message(message, f"messages[{j}]")
        if not isinstance(example.get("tools"), (str, type(None))):
            raise FieldProblem("tools", "expected a JSON string of tool schemas (see ftcore.data.messages.tools_json)")
    elif "prompt" in example and "completion" in example:
        for name in ("prompt", "completion"):
            if not isinstance(example[name], str):
                raise FieldProblem(name, "expected a string")
    elif "text" in example:
        if not isinstance(example["text"], str):
            raise FieldProblem("text", "expected a string")
    elif not ("input_ids" in example and "labels" in example):
        raise FieldProblem("(example)", "converter returned none of messages, prompt+completion, text")


#: The optional keys of a canonical message and their types.
_OPTIONAL_KINDS: dict[str, type] = {"reasoning_content": str, "train": bool, "tool_calls": list, "name": str,
                                    "tool_call_id": str}


def _check_message(message: dict[str, Any], where: str) -> None:
    """One canonical message: role, string content, and the optional keys of :mod:`ftcore.data.messages`."""
    if message.get("role") not in ROLES:
        raise FieldProblem(f"{where}.role", f"must be one of {', '.join(ROLES)}, got {message.get('role')!r}")
    if not isinstance(message.get("content"), str):
        raise FieldProblem(f"{where}.content", f"expected a string, got {_short(message.get('content'))}")
    if len(message) == 2:  # role and content only (most converted records): nothing else to check
        return
    for key, value in message.items():
        kind = _OPTIONAL_KINDS.get(key)
        if kind is not None and value is not None and not isinstance(value, kind):
            raise FieldProblem(f"{where}.{key}", f"expected {kind.__name__}, got {_short(value)}")
    if message.get("train") and message["role"] == "tool":
        raise FieldProblem(f"{where}.train", "a tool result is never trained")


def _check_plugin_shape(example: dict[str, Any], shape: str) -> None:
    from ftcore.contract.plugins import get_registry

    for column in get_registry().shape(shape).columns:
        if example.get(column) is None:
            raise FieldProblem(column, f"missing (required by shape {shape!r})")


def shape_of(columns: Iterable[str], where: str = "") -> str:
    """Which shape examples with these columns have: ``tokens``, else the registered shape whose columns
    are all present (most columns wins: ftcore's ``messages``, ``completion``, ``text``, or a plugin's)."""
    from ftcore.contract.plugins import get_registry

    columns = set(columns)
    if "input_ids" in columns and "labels" in columns:
        return "tokens"
    # Most columns wins; among equals ftcore's shapes in their order (messages before text), then by name.
    fits = sorted((-len(spec.columns), _core_rank(name), name) for name, (spec, _) in get_registry().shapes.items()
                  if spec.columns and set(spec.columns) <= columns)
    if not fits:
        known = ", ".join(f"{name} ({', '.join(spec.columns)})" for name, (spec, _) in sorted(get_registry().shapes.items()))
        raise DataError(f"{where + ': ' if where else ''}examples have none of the installed shapes' columns "
                        f"(columns: {', '.join(sorted(columns))}; shapes: {known})")
    return fits[0][2]


def _core_rank(shape: str) -> int:
    return CORE_SHAPES.index(shape) if shape in CORE_SHAPES else len(CORE_SHAPES)


# ----------------------------------------------------------------------------- format resolution


def detect_format(source: DataSource, method_shapes: tuple[str, ...] | None = None) -> str:
    """The registered format whose identifying columns all appear in the source (most columns wins).

    With ``method_shapes`` (the shapes the run's method trains on), formats giving those shapes are preferred:
    a GSM8K file mapped with ``columns: {prompt: question}`` is prompts for ``grpo`` even where a question/answer
    format would also fit. When no such format fits, every format is considered (and a shape the method does not
    train on is then refused, naming the methods that do).
    """
    from ftcore.contract.plugins import get_registry

    registry = get_registry()
    present = set(source.records.column_names) if source.records is not None else set()
    scores = []
    for name, (spec, _info) in registry.formats.items():
        needed = [source.field_name(c) for c in spec.columns]
        excluded = any(source.field_name(c) in present for c in spec.excludes)
        if needed and all(c in present for c in needed) and not excluded:
            scores.append((len(needed), name))
    if method_shapes is not None:
        preferred = [score for score in scores if _gives(registry.formats[score[1]][0], method_shapes)]
        scores = preferred or scores
    if not scores:
        installed = ", ".join(sorted(registry.formats)) or "none"
        raise DataError(
            f"{source.path}: cannot detect the data format from the fields {', '.join(sorted(map(repr, present)))}",
            hint=f"set data.format (installed: {installed}) or map fields with data.columns",
        )
    scores.sort(reverse=True)
    if len(scores) > 1 and scores[0][0] == scores[1][0]:
        raise DataError(
            f"{source.path}: the fields fit formats {scores[0][1]!r} and {scores[1][1]!r} equally; set data.format"
        )
    return scores[0][1]


def _gives(spec: Any, shapes: tuple[str, ...]) -> bool:
    """Whether a format's examples have one of ``shapes`` (a format declaring none gives ftcore's shapes)."""
    return spec.shape in shapes if spec.shape else any(shape in CORE_SHAPES for shape in shapes)


def canonical_examples(source: DataSource, data: DataConfig, config: FtConfig | None = None) -> tuple[Dataset, str]:
    """Resolve the source's format, ask its plugin (``load_dataset`` hook) for examples: ``(examples, shape)``."""
    from ftcore.contract.plugins import get_registry

    registry = get_registry()
    detected = source.format is None
    if detected:
        method = registry.methods.get(config.method) if config is not None else None
        source.format = detect_format(source, method[0].shapes if method else None)
    try:
        spec = registry.format(source.format)
    except PluginError as exc:
        raise PluginError(f"data.format: {exc}") from None
    from ftcore.data.sources import check_columns

    check_columns(source, spec)
    examples = registry.call("load_dataset", "format", source.format, source=source, data=data, config=config)
    if examples is None:
        info = registry.owner("format", source.format)
        raise PluginError(f"format {source.format!r} is registered by {info.label} but its load_dataset returned None")
    if len(examples) == 0:
        raise DataError(f"{source.path}: format {source.format!r} produced no examples (empty dataset)")
    found = shape_of(examples.column_names, source.path)
    shape = spec.shape or found
    if found != shape and not (found == "tokens" and shape in ("completion", "messages", "text")):
        if detected and config is not None:  # ft guessed the format from the method: the data is what is wrong
            check_method_shape(config.method, found, f"{source.path} (format {source.format})")
        raise PluginError(f"{source.path}: format {source.format!r} declares shape {shape!r} but its load_dataset "
                          f"returned {found!r} examples (columns: {', '.join(examples.column_names)})")
    return examples, found if found == "tokens" else shape


def check_method_shape(method: str, shape: str, where: str) -> None:
    """Raise a DataError unless ``method`` trains on data of ``shape``, naming the methods that do."""
    from ftcore.contract.plugins import get_registry

    registry = get_registry()
    spec = registry.method(method)
    if spec.trains_on(shape):
        return
    others = sorted(name for name, (other, _) in registry.methods.items() if other.trains_on(shape))
    instead = f"use a method that does: {', '.join(others)}" if others else f"no installed method trains on {shape} data"
    raise DataError(f"{where}: the examples are {shape!r} data, which method {method!r} does not train on "
                    f"(it trains on {', '.join(spec.shapes)}); {instead}")
