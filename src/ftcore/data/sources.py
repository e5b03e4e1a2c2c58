"""Read data sources into raw records, with errors that name the file, line and field.

Local ``.jsonl``, ``.json`` (a list, or ``{"data": [...]}``), ``.csv``, ``.parquet`` and ``.txt`` files, each
optionally compressed (``.gz``, ``.bz2``, ``.xz``; not Parquet, which compresses itself), are read by ft itself
(not by ``datasets``' builders) so that every problem can be reported as ``file:line: ...`` and nothing is
written to a cache on the way. A ``.txt`` file gives ``text`` records: one per line, one per block of lines
separated by blank lines, or the whole file (``text_split``). A directory stands for the data files inside it
(any other file in it is reported as skipped); anything that is not a local path is a Hub dataset, read through
``datasets.load_dataset``.

A source's ``columns`` map a format's field names to the record's columns; a column may be a nested path
(``instances[0].input``, ``meta.answer.text``), read into a column of that name before the format sees it.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import logging
import lzma
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftcore.errors import DataError
from ftcore.util.paths import looks_local
from ftcore.util.suggest import did_you_mean

if TYPE_CHECKING:
    from datasets import Dataset

    from ftcore.config.schema import DataFile

log = logging.getLogger(__name__)

SUFFIXES = (".jsonl", ".json", ".csv", ".parquet", ".txt")
#: Compressed files: ``train.jsonl.gz`` is read as ``train.jsonl``.
COMPRESSIONS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
TEXT_SPLITS = ("line", "blank_line", "file")

_PATH = re.compile(r"[^.\[\]]+(?:\.[^.\[\]]+|\[-?\d+\])*")
_PATH_PART = re.compile(r"\[(-?\d+)\]|([^.\[\]]+)")


@dataclass
class DataSource:
    """One source of raw records, as handed to the ``load_dataset`` hook.

    :param path: the file, or the Hub dataset id.
    :param format: the resolved format name (given, or detected from the columns).
    :param records: raw records read by ftcore (a ``datasets.Dataset``), or ``None`` for a source only a
        plugin understands.
    :param columns: the user's mapping of format field names to their column names (a nested path such as
        ``instances[0].input`` names a column ftcore added to ``records``).
    :param weight: mixing weight of the source (examples are used ``weight`` times, fractions subsample).
    :param locations: for each record, where it starts (``"3"`` for line 3, or ``"record 3"``).
    :param columns_key: the config key the ``columns`` came from (``data.columns``, ``data.train[1].columns``),
        for error messages.
    """

    path: str
    format: str | None = None
    records: Dataset | None = None
    columns: dict[str, str] = field(default_factory=dict)
    weight: float = 1.0
    locations: list[str] | None = None
    columns_key: str = "data.columns"

    def where(self, i: int) -> str:
        """``"file:line"`` (or ``"file:record N"``) of record ``i``, for error messages."""
        if self.locations is not None and 0 <= i < len(self.locations):
            return f"{self.path}:{self.locations[i]}"
        return f"{self.path}:record {i + 1}"

    def field_name(self, name: str) -> str:
        """The user's column holding the format's field ``name``."""
        return self.columns.get(name, name)

    @property
    def own_columns(self) -> bool:
        """Whether ``columns`` were given for this source alone (not the run-wide ``data.columns``)."""
        return self.columns_key != "data.columns"


@dataclass(frozen=True)
class ReadSettings:
    """How one configured entry is read: its columns, format and ``.txt`` splitting, resolved against ``data``."""

    columns: dict[str, str]
    format: str | None
    text_split: str = "line"
    columns_key: str = "data.columns"


def settings_for(entry: str | DataFile, columns: dict[str, str], default_format: str | None,
                 text_split: str = "line", key: str = "data.train") -> ReadSettings:
    """An entry's own ``columns``/``format``/``text_split`` where it has them, else the run-wide ones."""
    if isinstance(entry, str):
        return ReadSettings(dict(columns), default_format, text_split)
    own = entry.columns is not None
    return ReadSettings(
        dict(entry.columns if own else columns), entry.format or default_format, entry.text_split or text_split,
        f"{key}.columns" if own else "data.columns",
    )


def expand(entry: str | DataFile, columns: dict[str, str], default_format: str | None, text_split: str = "line",
           key: str = "data.train") -> list[DataSource]:
    """Read one configured entry (file, directory, Hub id) into sources, one per file.

    ``key`` is where the entry sits in the config (``data.train[1]``), for error messages.
    """
    path, weight, _fmt, split, name = _entry_fields(entry)
    settings = settings_for(entry, columns, default_format, text_split, key)
    local = Path(path).expanduser()
    if local.is_dir():
        files = list_data_files(local)
        if not files:
            raise DataError(f"{path}: directory has no data files ({', '.join(SUFFIXES)}, optionally "
                            f"{'/'.join(COMPRESSIONS)}){_skipped_note(local)}")
        return [read_file(p, settings.columns, settings.format, weight, settings) for p in files]
    if local.is_file():
        return [read_file(local, settings.columns, settings.format, weight, settings)]
    if looks_local(path, SUFFIXES + tuple(s + c for s in SUFFIXES for c in COMPRESSIONS)):
        raise DataError(f"{path}: file not found")
    return [read_hub(path, name, split, settings.columns, settings.format, weight, settings)]


def _entry_fields(entry: str | DataFile) -> tuple[str, float, str | None, str, str | None]:
    if isinstance(entry, str):
        return entry, 1.0, None, "train", None
    return entry.path, entry.weight, entry.format, entry.split, entry.name


def data_files(entry: str | DataFile) -> list[Path] | None:
    """The local files behind an entry (for fingerprints), or ``None`` for a Hub dataset."""
    path = Path(_entry_fields(entry)[0]).expanduser()
    if path.is_dir():
        return list_data_files(path)
    return [path] if path.is_file() else None


def data_suffix(path: Path) -> tuple[str, str | None]:
    """``(".jsonl", ".gz")`` for ``train.jsonl.gz``; ``(".csv", None)`` for ``a.csv``."""
    name = path.name.lower()
    compression = next((c for c in COMPRESSIONS if name.endswith(c)), None)
    if compression:
        name = name[: -len(compression)]
    return Path(name).suffix, compression


def is_data_file(path: Path) -> bool:
    """Whether ft reads ``path`` as data (by its name)."""
    suffix, compression = data_suffix(path)
    return suffix in SUFFIXES and not (suffix == ".parquet" and compression)


_reported: set[tuple[str, tuple[str, ...]]] = set()


def list_data_files(directory: Path) -> list[Path]:
    """The data files under ``directory`` (sorted); the other files are reported once, in one warning."""
    files, skipped = _scan(directory)
    if skipped and (str(directory), tuple(skipped)) not in _reported:
        _reported.add((str(directory), tuple(skipped)))
        log.warning("data: %s", skipped_message(directory, skipped))
    return files


def skipped_files(entry: str | DataFile) -> list[str]:
    """The files of a directory entry that are not data files (relative paths), for the data audit."""
    path = Path(_entry_fields(entry)[0]).expanduser()
    return _scan(path)[1] if path.is_dir() else []


def skipped_message(directory: Path, skipped: list[str]) -> str:
    """One line naming the files of ``directory`` that ft does not read."""
    shown = ", ".join(skipped[:5]) + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
    return (f"{directory}: skipped {len(skipped)} file{'s' * (len(skipped) != 1)} that ft does not read as data "
            f"(it reads {', '.join(SUFFIXES)}, optionally {'/'.join(COMPRESSIONS)}): {shown}")


def _scan(directory: Path) -> tuple[list[Path], list[str]]:
    files, skipped = [], []
    for p in sorted(directory.rglob("*")):
        if p.is_file():
            (files if is_data_file(p) else skipped).append(p)
    return files, [str(p.relative_to(directory)) for p in skipped]


def _skipped_note(directory: Path) -> str:
    skipped = _scan(directory)[1]
    return f"; it has {', '.join(skipped[:5])}" + (" ..." if len(skipped) > 5 else "") if skipped else ""


def _known_fields() -> set[str]:
    """Every field an installed format reads or identifies itself by."""
    from ftcore.contract.plugins import get_registry

    return {name for spec, _ in get_registry().formats.values() for name in (*spec.columns, *spec.fields)}


# ----------------------------------------------------------------------------- local files


def read_file(path: Path, columns: dict[str, str], fmt: str | None, weight: float = 1.0,
              settings: ReadSettings | None = None) -> DataSource:
    """Read a local data file into a :class:`DataSource` with per-record locations."""
    settings = settings or ReadSettings(dict(columns), fmt)
    suffix, _compression = data_suffix(path)
    if not is_data_file(path):
        shown = "".join(path.suffixes[-2:]) or path.name
        raise DataError(f"{path}: unsupported file type {shown!r}; use one of {', '.join(SUFFIXES)} "
                        f"(optionally compressed: {', '.join(COMPRESSIONS)}; not Parquet)")
    if suffix == ".txt":
        rows, locations = _read_txt(path, settings.text_split)
    else:
        readers = {".jsonl": _read_jsonl, ".json": _read_json, ".csv": _read_csv, ".parquet": _read_parquet}
        rows, locations = readers[suffix](path)
    source = DataSource(str(path), fmt, None, dict(columns), weight, locations, settings.columns_key)
    if not rows:
        raise DataError(f"{path}: no records (empty dataset)")
    _add_path_columns(rows, source)
    source.records = records_dataset(rows, source)
    return source


def _raw(path: Path) -> bytes:
    """The file's bytes, decompressed when its name ends in .gz/.bz2/.xz."""
    compression = data_suffix(path)[1]
    if compression is None:
        return path.read_bytes()
    try:
        with COMPRESSIONS[compression](path, "rb") as handle:
            return handle.read()
    except (OSError, EOFError, lzma.LZMAError) as exc:
        raise DataError(f"{path}: not a readable {compression[1:]} file: {exc}",
                        hint=f"compress it with {compression[1:]}, or drop the {compression} suffix") from None


def _text(path: Path) -> str:
    data = _raw(path)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataError(
            f"{path}:{line}: not UTF-8 text (invalid byte 0x{data[exc.start]:02x} at byte offset {exc.start})",
            hint="re-save the file as UTF-8",
        ) from None


def _read_txt(path: Path, text_split: str) -> tuple[list[dict[str, Any]], list[str]]:
    """``text`` records of a plain-text file: one per non-blank line, per blank-line-separated block, or one."""
    lines = _text(path).splitlines()
    if text_split == "file":
        text = "\n".join(lines).strip("\n")
        return ([{"text": text}], ["1"]) if text.strip() else ([], [])
    if text_split == "line":
        found = [(n, line) for n, line in enumerate(lines, start=1) if line.strip()]
        return [{"text": line} for _, line in found], [str(n) for n, _ in found]
    rows, locations, block, start = [], [], [], 0
    for number, line in enumerate([*lines, ""], start=1):
        if line.strip():
            start = start or number
            block.append(line)
        elif block:
            rows.append({"text": "\n".join(block)})
            locations.append(str(start))
            block, start = [], 0
    return rows, locations


# ----------------------------------------------------------------------------- nested column paths


def is_path(column: str) -> bool:
    """Whether a ``columns`` value names a nested field (``a.b``, ``a[0].b``) rather than a column."""
    return "." in column or "[" in column


def parse_path(column: str, key: str) -> list[str | int]:
    """``"instances[0].input"`` -> ``["instances", 0, "input"]``; a malformed path is a DataError at ``key``."""
    if not _PATH.fullmatch(column):
        raise DataError(f"{key}: {column!r} is not a field path (write a.b.c, or list[0].field)")
    return [int(index) if index else name for index, name in _PATH_PART.findall(column)]


def lookup(record: Any, parts: list[str | int]) -> Any:
    """The value at ``parts`` in ``record``, or ``None`` where the path does not exist."""
    value = record
    for part in parts:
        if isinstance(part, int):
            if not isinstance(value, list) or not -len(value) <= part < len(value):
                return None
        elif not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _path_columns(source: DataSource, present: set[str]) -> dict[str, list[str | int]]:
    """The ``columns`` values that are nested paths (and not themselves columns), parsed."""
    return {column: parse_path(column, f"{source.columns_key}.{name}") for name, column in source.columns.items()
            if is_path(column) and column not in present}


def _add_path_columns(rows: list[dict[str, Any]], source: DataSource) -> None:
    """Add a column named by each nested path of ``columns`` to every row (``None`` where a row lacks it)."""
    paths = _path_columns(source, {key for row in rows[:1] for key in row})
    for column, parts in paths.items():
        for row in rows:
            row[column] = lookup(row, parts)


def _add_hub_path_columns(source: DataSource) -> None:
    paths = _path_columns(source, set(source.records.column_names))
    if paths:
        source.records = source.records.map(
            lambda row: {column: lookup(row, parts) for column, parts in paths.items()}, desc="reading nested fields")


# ----------------------------------------------------------------------------- columns keys


def check_columns(source: DataSource, spec: Any) -> None:
    """Refuse ``columns`` keys that are no field of the source's format (with a did-you-mean).

    ``spec`` is the source's :class:`~ftcore.FormatSpec`; a format that does not declare its ``fields`` is not
    checked. Run-wide ``data.columns`` may also name fields of other installed formats (a mix of formats
    shares them); a source's own ``columns`` may name only its format's fields, and each mapped column must
    exist in its records.
    """
    fields = tuple(getattr(spec, "fields", ()) or ())
    if not fields:
        return
    allowed = set(fields) if source.own_columns else set(fields) | _known_fields()
    for name in source.columns:
        if name not in allowed:
            hint = did_you_mean(name, fields) or did_you_mean(name, allowed)
            raise DataError(f"{source.columns_key}: unknown field {name!r}{hint}; format {spec.name!r} reads "
                            f"{', '.join(fields)}")
    if source.own_columns and source.records is not None:
        present = source.records.column_names
        for name, column in source.columns.items():
            if column not in present:
                raise DataError(f"{source.columns_key}.{name}: {source.path} has no column {column!r}"
                                f"{did_you_mean(column, present)} (its columns: {', '.join(present)})")


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
    elif isinstance(loaded, dict) and loaded:  # one record on its own (a single conversation, say)
        rows, locations = [loaded], ["1"]
    else:
        raise DataError(f"{path}: expected a JSON list of records, {{\"data\": [...]}} or one record object, "
                        f"got {_kind(loaded)}")
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
    name: str, config_name: str | None, split: str, columns: dict[str, str], fmt: str | None, weight: float = 1.0,
    settings: ReadSettings | None = None,
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
    source = DataSource(label, fmt, records, dict(columns), weight, None,
                        settings.columns_key if settings else "data.columns")
    if len(records) == 0:
        raise DataError(f"{label}: no records (empty dataset)")
    _add_hub_path_columns(source)
    return source
