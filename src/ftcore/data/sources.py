"""Read data sources into raw records, with errors that name the file, line and field.

Local ``.jsonl``, ``.json`` (a list, or ``{"data": [...]}``), ``.csv`` and ``.parquet`` files are read by ft
itself (not by ``datasets``' builders) so that every problem can be reported as ``file:line: ...`` and nothing is
written to a cache on the way. A directory stands for the data files inside it; anything that is not a local
path is a Hub dataset, read through ``datasets.load_dataset``.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftcore.errors import DataError
from ftcore.paths import looks_local

if TYPE_CHECKING:
    from datasets import Dataset

    from ftcore.config import DataFile

SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")


@dataclass
class DataSource:
    """One source of raw records, as handed to the ``load_dataset`` hook.

    :param path: the file, or the Hub dataset id.
    :param format: the resolved format name (given, or detected from the columns).
    :param records: raw records read by ftcore (a ``datasets.Dataset``), or ``None`` for a source only a
        plugin understands.
    :param columns: the user's mapping of format field names to their column names.
    :param weight: mixing weight of the source (examples are used ``weight`` times, fractions subsample).
    :param locations: for each record, where it starts (``"3"`` for line 3, or ``"record 3"``).
    """

    path: str
    format: str | None = None
    records: Dataset | None = None
    columns: dict[str, str] = field(default_factory=dict)
    weight: float = 1.0
    locations: list[str] | None = None

    def where(self, i: int) -> str:
        """``"file:line"`` (or ``"file:record N"``) of record ``i``, for error messages."""
        if self.locations is not None and 0 <= i < len(self.locations):
            return f"{self.path}:{self.locations[i]}"
        return f"{self.path}:record {i + 1}"

    def field_name(self, name: str) -> str:
        """The user's column holding the format's field ``name``."""
        return self.columns.get(name, name)


def expand(entry: str | DataFile, columns: dict[str, str], default_format: str | None) -> list[DataSource]:
    """Read one configured entry (file, directory, Hub id) into sources, one per file."""
    path, weight, fmt, split, name = _entry_fields(entry)
    fmt = fmt or default_format
    local = Path(path).expanduser()
    if local.is_dir():
        files = sorted(p for p in local.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
        if not files:
            raise DataError(f"{path}: directory has no data files ({', '.join(SUFFIXES)})")
        return [read_file(p, columns, fmt, weight) for p in files]
    if local.is_file():
        return [read_file(local, columns, fmt, weight)]
    if looks_local(path, SUFFIXES):
        raise DataError(f"{path}: file not found")
    return [read_hub(path, name, split, columns, fmt, weight)]


def _entry_fields(entry: str | DataFile) -> tuple[str, float, str | None, str, str | None]:
    if isinstance(entry, str):
        return entry, 1.0, None, "train", None
    return entry.path, entry.weight, entry.format, entry.split, entry.name


def data_files(entry: str | DataFile) -> list[Path] | None:
    """The local files behind an entry (for fingerprints), or ``None`` for a Hub dataset."""
    path = Path(_entry_fields(entry)[0]).expanduser()
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
    return [path] if path.is_file() else None


# ----------------------------------------------------------------------------- local files


def read_file(path: Path, columns: dict[str, str], fmt: str | None, weight: float = 1.0) -> DataSource:
    """Read a local data file into a :class:`DataSource` with per-record locations."""
    readers = {".jsonl": _read_jsonl, ".json": _read_json, ".csv": _read_csv, ".parquet": _read_parquet}
    reader = readers.get(path.suffix.lower())
    if reader is None:
        raise DataError(f"{path}: unsupported file type {path.suffix!r}; use one of {', '.join(SUFFIXES)}")
    rows, locations = reader(path)
    source = DataSource(str(path), fmt, None, dict(columns), weight, locations)
    if not rows:
        raise DataError(f"{path}: no records (empty dataset)")
    source.records = records_dataset(rows, source)
    return source


def _text(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataError(
            f"{path}:{line}: not UTF-8 text (invalid byte 0x{data[exc.start]:02x} at byte offset {exc.start})",
            hint="re-save the file as UTF-8",
        ) from None


def _read_jsonl(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    rows, locations = [], []
    for number, line in enumerate(_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{number}: malformed JSON line: {exc.msg} (column {exc.colno})") from None
        except RecursionError:
            raise DataError(f"{path}:{number}: JSON nested too deeply to read; flatten the record") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{number}: expected a JSON object, got {_kind(row)}")
        rows.append(row)
        locations.append(str(number))
    return rows, locations


def _read_json(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    text = _text(path)
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: malformed JSON: {exc.msg} (column {exc.colno})") from None
    except RecursionError:
        raise DataError(f"{path}: JSON nested too deeply to read; flatten the records") from None
    if isinstance(loaded, dict) and isinstance(loaded.get("data"), list):
        rows, locations = loaded["data"], [f"data[{i}]" for i in range(len(loaded["data"]))]
    elif isinstance(loaded, list):
        rows, locations = loaded, _json_list_lines(text)
    else:
        raise DataError(f"{path}: expected a JSON list of records or {{\"data\": [...]}}, got {_kind(loaded)}")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise DataError(f"{path}:{locations[i]}: expected a JSON object, got {_kind(row)}")
    return rows, locations


def _json_list_lines(text: str) -> list[str]:
    """Line number where each element of a top-level JSON list starts (the list is known to be valid)."""
    decoder = json.JSONDecoder()
    pos, line, lines = text.index("[") + 1, 1, []
    line += text.count("\n", 0, pos)
    while True:
        start = _skip(text, pos, " \t\r\n,")
        if start >= len(text) or text[start] == "]":
            return lines
        line += text.count("\n", pos, start)
        lines.append(str(line))
        _, end = decoder.raw_decode(text, start)
        line += text.count("\n", start, end)
        pos = end


def _skip(text: str, pos: int, chars: str) -> int:
    while pos < len(text) and text[pos] in chars:
        pos += 1
    return pos


def _read_csv(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    reader = csv.reader(io.StringIO(_text(path), newline=""))
    header = next(reader, None)
    if header is None:
        return [], []
    rows, locations = [], []
    start = reader.line_num + 1
    for values in reader:
        if not values:
            start = reader.line_num + 1
            continue
        if len(values) != len(header):
            raise DataError(f"{path}:{start}: CSV row has {len(values)} fields but the header has {len(header)}")
        rows.append(dict(zip(header, values, strict=True)))
        locations.append(str(start))
        start = reader.line_num + 1
    return rows, locations


def _read_parquet(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as exc:  # pyarrow raises several types for a broken file
        raise DataError(f"{path}: not a readable Parquet file: {exc}") from None
    return rows, [f"row {i + 1}" for i in range(len(rows))]


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def records_dataset(rows: list[dict[str, Any]], source: DataSource) -> Dataset:
    """Raw rows as a ``datasets.Dataset``; a field whose type changes between records is reported by line."""
    from datasets import Dataset

    _check_types(rows, source)
    # from_list takes its columns from the first row; a field that only later records have must survive.
    keys = list(dict.fromkeys(key for row in rows for key in row))
    if any(len(row) != len(keys) for row in rows):
        rows = [{key: row.get(key) for key in keys} for row in rows]
    try:
        return Dataset.from_list(rows)
    except Exception:  # arrow's schema inference: nested values of mixed types (content a string or parts)
        pass
    try:  # such values are kept as JSON and read back as they were written
        return Dataset.from_list(rows, on_mixed_types="use_json")
    except Exception as exc:
        raise DataError(f"{source.path}: records do not share one structure: {exc}") from None


def _check_types(rows: list[dict[str, Any]], source: DataSource) -> None:
    first: dict[str, tuple[str, int]] = {}
    for i, row in enumerate(rows):
        for key, value in row.items():
            if value is None:
                continue
            kind = _kind(value)
            seen = first.setdefault(key, (kind, i))
            if seen[0] != kind:
                raise DataError(
                    f"{source.where(i)}: field {key!r} is {kind} but {seen[0]} in {source.where(seen[1])}"
                )


# ----------------------------------------------------------------------------- Hub


def read_hub(
    name: str, config_name: str | None, split: str, columns: dict[str, str], fmt: str | None, weight: float = 1.0
) -> DataSource:
    """Read a Hub dataset split through ``datasets.load_dataset`` (the Hub's cache applies)."""
    import datasets

    try:
        records = datasets.load_dataset(name, config_name, split=split)
    except Exception as exc:  # offline, unknown id, gated repo, bad split: all user-fixable
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"{name}: not a local path, and loading it as a Hub dataset failed: {first}",
            hint="check the path, or the dataset id, config name and split",
        ) from None
    label = f"{name}[{split}]" if config_name is None else f"{name}/{config_name}[{split}]"
    source = DataSource(label, fmt, records, dict(columns), weight)
    source.locations = None
    if len(records) == 0:
        raise DataError(f"{label}: no records (empty dataset)")
    return source
