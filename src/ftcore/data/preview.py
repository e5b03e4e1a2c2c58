"""Text views of tokenized data for ``ft data preview``: trained vs masked spans, the length distribution."""

from __future__ import annotations

from itertools import groupby
from typing import Any

from ftcore.data.encode import IGNORE

GREEN, DIM, RESET = "\x1b[32m", "\x1b[2m", "\x1b[0m"
OPEN, CLOSE = "[[", "]]"


def spans_of(input_ids: list[int], labels: list[int]) -> list[tuple[bool, list[int]]]:
    """Consecutive runs of tokens as ``(trained, ids)``."""
    pairs = zip(input_ids, labels, strict=True)
    return [(trained, [i for i, _ in run]) for trained, run in groupby(pairs, key=lambda p: p[1] != IGNORE)]


def render_example(input_ids: list[int], labels: list[int], tokenizer: Any, color: bool) -> str:
    """The decoded example; trained tokens green (colour) or inside ``[[ ]]`` (plain), masked ones dim/plain."""
    parts = []
    for trained, ids in spans_of(input_ids, labels):
        text = tokenizer.decode(ids, skip_special_tokens=False)
        if color:
            parts.append(f"{GREEN if trained else DIM}{text}{RESET}")
        else:
            parts.append(f"{OPEN}{text}{CLOSE}" if trained else text)
    return "".join(parts)


def length_report(split: dict[str, Any], width: int = 40, totals: bool = True) -> str:
    """The token-length distribution of a split: summary numbers and a text histogram."""
    lengths = split.get("lengths") or {}
    if not lengths:
        return "no examples"
    counts = f"{split['tokens']} tokens ({split['trained_tokens']} trained); " if totals else ""
    lines = [
        f"{split['examples']} examples, {counts}"
        f"length min {lengths['min']}, mean {lengths['mean']}, p50 {lengths['p50']}, p90 {lengths['p90']}, "
        f"p99 {lengths['p99']}, max {lengths['max']}"
    ]
    top = max(count for _, _, count in lengths["histogram"]) or 1
    for low, high, count in lengths["histogram"]:
        bar = "#" * round(width * count / top)
        lines.append(f"  {low:>6}-{high:<6} {count:>7} {bar}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- ft data preview

def preview_config(config_path: str | None, files: tuple[str, ...], model: str | None, method: str | None,
                   data_format: str | None, columns: tuple[str, ...], overrides: tuple[str, ...]) -> tuple[Any, bool]:
    """The config ``ft data preview`` works on, and whether there is a tokenizer to tokenize with.

    With ``--config`` that file (FILEs replace its ``data.train``); without, a config over FILEs whose method
    is ``--method`` or one that trains on the data's shape. Without a config or ``--model`` there is no
    tokenizer: the records are checked, not tokenized.
    """
    from ftcore.config.schema import apply_overrides, build_config, read_yaml
    from ftcore.errors import UsageError

    if not config_path and not files:
        raise UsageError("ft data preview: give a data FILE (or several), or --config", hint="ft data preview train.jsonl --model MODEL")
    raw = read_yaml(config_path) if config_path else {"model": model or "(none)", "data": {}}
    raw = apply_overrides(raw, list(overrides))
    data = raw.setdefault("data", {})
    if not isinstance(data, dict):
        raise UsageError("data: expected a mapping")
    if files:
        data["train"] = list(files) if len(files) > 1 else files[0]
    if data_format:
        data["format"] = data_format
    if columns:
        data["columns"] = {**data.get("columns", {}), **_columns(columns)}
    if model:
        raw["model"] = model
    if method:
        raw["method"] = method
    config = build_config(raw, source=config_path)
    if not config_path and not method:
        config = config.model_copy(update={"method": pick_method(config)})
    return config, bool(config_path or model)


def _columns(pairs: tuple[str, ...]) -> dict[str, str]:
    from ftcore.errors import UsageError

    mapping = {}
    for pair in pairs:
        name, sep, column = pair.partition("=")
        if not sep or not name or not column:
            raise UsageError(f"--column {pair!r}: expected FIELD=COLUMN, e.g. prompt=question")
        mapping[name.strip()] = column.strip()
    return mapping


def pick_method(config: Any) -> str:
    """A method that trains on the shape of the first source's format (detected without method preferences)."""
    from ftcore.contract.plugins import get_registry, ranked_methods
    from ftcore.data.formats import detect_format
    from ftcore.data.pipeline import entries
    from ftcore.data.sources import expand

    registry = get_registry()
    data = config.data
    first = entries(data.train)[0]
    fmt = (getattr(first, "format", None) if not isinstance(first, str) else None) or data.format
    if fmt is None:
        fmt = detect_format(expand(first, data.columns, data.format, data.text_split)[0])
    spec = registry.formats.get(fmt)
    shape = spec[0].shape if spec else None
    ranked = [name for name in ranked_methods() if shape is None or registry.methods[name][0].trains_on(shape)]
    return ranked[0] if ranked else config.method


def show_preview(config: Any, tokenizer: Any, count: int, color: bool, as_json: bool, echo: Any) -> None:
    """Print what ``ft data preview`` shows: examples, then the audit, then the length distribution.

    ``tokenizer`` is the run's (:func:`ftcore.models.loading.load_tokenizer`), or None to check the records untokenized.
    """
    from ftcore.data.audit import report_lines

    if tokenizer is None:
        from ftcore.data.pipeline import inspect_records

        examples, audit = inspect_records(config, count)
        if as_json:
            echo(_json({"method": config.method, "tokenized": False, "audit": audit, "examples": examples}))
            return
        echo(f"(no --model: records are checked, not tokenized; method {config.method})")
        for i, example in enumerate(examples):
            echo(f"--- example {i + 1}")
            echo(_json(example, indent=None)[:2000])
        echo("--- sources")
        for line in report_lines(audit):
            echo(line)
        return
    from ftcore.data.pipeline import preview_data

    prepared = preview_data(config, tokenizer)
    stats = prepared.stats
    if as_json:
        echo(_json({"method": config.method, "tokenized": prepared.collator is not None, "audit": stats.get("audit"),
                    "stats": {k: v for k, v in stats.items() if k != "audit"},
                    "examples": [_json_row(prepared, i, tokenizer) for i in range(min(count, len(prepared.train)))]}))
        return
    if prepared.collator is None:
        _show_plugin_rows(prepared, count, echo)
    else:
        for i in range(min(count, len(prepared.train))):
            row = prepared.train[i]
            echo(f"--- example {i + 1} ({len(row['input_ids'])} tokens, "
                 f"{sum(label != IGNORE for label in row['labels'])} trained)")
            echo(render_example(row["input_ids"], row["labels"], tokenizer, color), color=color)
    echo("--- sources")
    for line in report_lines(stats.get("audit")):
        echo(line)
    if prepared.collator is None:
        return
    dropped = ", ".join(f"{n} {reason}" for reason, n in stats["dropped"].items()) or "none"
    split = f", {stats['split']} split into {stats['max_seq_len']}-token chunks" if stats.get("split") else ""
    echo(f"--- {stats['examples']} examples read: {stats['kept']} kept ({stats['truncated']} of them truncated "
         f"to {stats['max_seq_len']} tokens{split}), dropped: {dropped}")
    full = {**stats["train"], "examples": stats["examples"], "lengths": stats["full_lengths"]}
    echo("before truncation: " + length_report(full, totals=False))
    echo("train: " + length_report(stats["train"]))
    if stats.get("eval"):
        echo("eval: " + length_report(stats["eval"]))


def _show_plugin_rows(prepared: Any, count: int, echo: Any) -> None:
    """Rows of a plugin's shape as its encode_examples left them (ftcore cannot tell trained tokens there)."""
    for i in range(min(count, len(prepared.train))):
        echo(f"--- example {i + 1} (shape {prepared.shape})")
        echo(_json(prepared.train[i], indent=None)[:2000])
    stats = prepared.stats
    dropped = ", ".join(f"{n} {reason}" for reason, n in stats["dropped"].items()) or "none"
    echo(f"--- {stats['examples']} examples of shape {prepared.shape!r}: {stats['kept']} kept ({stats['truncated']} "
         f"of them truncated to {stats['max_seq_len']} tokens), dropped: {dropped}; train {stats['train']['examples']}"
         + (f", eval {stats['eval']['examples']}" if stats.get("eval") else ""))


def _json_row(prepared: Any, i: int, tokenizer: Any) -> dict[str, Any]:
    row = prepared.train[i]
    if prepared.collator is None:
        return row
    return {"input_ids": row["input_ids"], "labels": row["labels"],
            "text": render_example(row["input_ids"], row["labels"], tokenizer, color=False)}


def _json(value: Any, indent: int | None = 2) -> str:
    import json

    return json.dumps(value, ensure_ascii=False, indent=indent, default=str)
