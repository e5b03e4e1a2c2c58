"""``ft config import``, the host's side: read another tool's config safely, convert it with the importer a plugin
registered (``register_config_importers``; the ftimport distribution ships Axolotl, LLaMA-Factory and TRL), show
one row per source key, and check and write the ft config.

The host knows no tool: which keys mean what is the importer's business. It owns reading (a binary file, a
huge file or deeply nested YAML is one line), choosing the importer, the table (repeated notes summarised, rows
capped, so a huge input stays readable), refusing to write when a row is ``blocking``, and the output file
(never replaced without ``--overwrite``).
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

from ftcore.contract.plugins import describe_error
from ftcore.contract.specs import IMPORT_STATUSES, ImportedConfig, ImporterSpec, ImportRow
from ftcore.errors import ConfigError, PluginError, UsageError

#: A training config is a few KB; anything this large is the wrong file.
MAX_BYTES = 5_000_000
MAX_DEPTH = 64
#: Rows the table shows at most, and rows shown of one repeated note before the rest are summarised.
MAX_ROWS = 200
REPEATS_SHOWN = 10

ORDER = ("model", "tokenizer", "revision", "method", "method_options", "output_dir", "seed", "dtype",
         "attn_implementation", "trust_remote_code", "data", "training")


def read_text(path: str | Path) -> str:
    """The text of ``path``; a missing, huge, binary or non-UTF-8 file is a ConfigError naming it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise ConfigError(f"{path}: {size / 1e6:.0f} MB is far larger than a training config (a few KB); "
                          "pass the tool's config file")
    data = path.read_bytes()
    if b"\0" in data:
        raise ConfigError(f"{path}: a binary file, not a config (YAML, or a command line)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte offset {exc.start})") from None


def load_yaml(path: str | Path, text: str) -> Any:
    """``text`` as YAML (the C loader when present: big files parse in seconds); errors name the line."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        loaded = yaml.load(text, Loader=loader)  # noqa: S506 (a safe loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = str(getattr(exc, "problem", None) or exc).strip().splitlines()[0]
        raise ConfigError(f"{path}{where}: not valid YAML: {problem}") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested more than {MAX_DEPTH} levels deep; not a training config") from None
    if _depth(loaded) > MAX_DEPTH:
        raise ConfigError(f"{path}: nested more than {MAX_DEPTH} levels deep; not a training config")
    return loaded


def _depth(value: Any) -> int:
    """How deeply lists and mappings nest in ``value`` (counted without recursion)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:
            break
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        stack.extend((child, level + 1) for child in children)
    return deepest


def installed_importers() -> dict[str, tuple[ImporterSpec, Any]]:
    """``{name: (spec, plugin)}`` of every importer; a UsageError saying what to install when there is none."""
    from ftcore.contract.plugins import get_registry

    registry = get_registry()
    if not registry.importers:
        clashed = sorted(name for kind, name in registry.clashes if kind == "importer")
        if clashed:
            registry.importer(clashed[0])
        raise UsageError("ft config import needs an importer plugin, and none is installed: pip install ftimport "
                         "(or ./plugins/ftimport from ft's repository)")
    return registry.importers


def read_source(path: str | Path, tool: str | None) -> tuple[ImporterSpec, Any, dict[str, Any]]:
    """The importer for ``path`` (``tool``, or detected), its plugin, and the source config as a mapping."""
    from ftcore.contract.plugins import get_registry

    importers = installed_importers()
    if tool is not None:
        try:
            get_registry().importer(tool)
        except PluginError as exc:  # an unknown name: one line listing the installed ones
            raise PluginError(f"--from: {exc}") from None
    text = read_text(path)
    loaded = load_yaml(path, text)
    if not isinstance(loaded, dict):
        candidates = [importers[tool]] if tool else list(importers.values())
        for spec, plugin in candidates:
            parsed = _parsed(spec, plugin, text) if spec.parse else None
            if parsed is not None:
                return spec, plugin, parsed
        got = "an empty file" if loaded is None else f"a YAML {type(loaded).__name__}"
        raise ConfigError(f"{path}: expected a config (a mapping of keys, or a command line), got {got}")
    if tool is not None:
        return *importers[tool], loaded
    return *_detected(path, loaded, importers), loaded


def _parsed(spec: ImporterSpec, plugin: Any, text: str) -> dict[str, Any] | None:
    try:
        return spec.parse(text)  # type: ignore[misc]
    except ConfigError:
        raise
    except (Exception, SystemExit) as exc:
        raise PluginError(f"{plugin.label} failed in importer {spec.name!r} (parse): {describe_error(exc)}") from exc


def _detected(path: str | Path, source: dict[str, Any], importers: dict[str, tuple[ImporterSpec, Any]]) -> tuple[ImporterSpec, Any]:
    """The importer whose signature keys the source uses most; a ConfigError asking for ``--from`` on a tie."""
    scores = {name: len(spec.signature & set(source)) for name, (spec, _) in importers.items()}
    best = max(scores.values())
    winners = [name for name, score in scores.items() if score == best]
    if best == 0 or len(winners) > 1:
        raise ConfigError(f"{path}: cannot tell which tool wrote this config; pass --from "
                          f"{'|'.join(sorted(importers))}")
    return importers[winners[0]]


def import_config(path: str | Path, tool: str | None = None) -> tuple[str, ImportedConfig]:
    """Convert the config at ``path`` (written by ``tool``, or detected): the importer's name and its result."""
    spec, plugin, source = read_source(path, tool)
    try:
        result = spec.convert(source, Path(path).parent)
    except ConfigError:
        raise
    except (Exception, SystemExit) as exc:
        raise PluginError(f"{plugin.label} failed in importer {spec.name!r}: {describe_error(exc)}") from exc
    if not isinstance(result, ImportedConfig):
        raise PluginError(f"{plugin.label}: importer {spec.name!r} returned {type(result).__name__}, "
                          "expected ImportedConfig")
    return spec.name, result


def check_target(output: str | Path, overwrite: bool) -> None:
    """Refuse, before any work, an output that exists (without ``overwrite``) or cannot be written."""
    target = Path(output)
    if target.is_dir():
        raise UsageError(f"-o {output}: is a directory; name a file such as {target / 'ft.yaml'}")
    if target.exists() and not overwrite:
        raise UsageError(f"-o {output}: the file exists; pass --overwrite to replace it")
    parent = target.parent
    if not parent.is_dir():
        raise UsageError(f"-o {output}: folder {parent} does not exist" +
                         (" (it is a file)" if parent.exists() else ""))
    if target.exists() and not os.access(target, os.W_OK):
        raise UsageError(f"-o {output}: cannot write there (permission denied)")
    probe = _partial(target)
    try:
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"-o {output}: cannot write there ({exc.strerror or exc})") from None


def _partial(target: Path) -> Path:
    return target.with_name(f".{target.name}.tmp-import")


def write_output(output: str | Path, text: str) -> None:
    """Write ``text`` to ``output`` whole or not at all; a write error is one line."""
    target = Path(output)
    partial = _partial(target)
    try:
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, target)
    except OSError as exc:
        if partial.parent.is_dir():
            partial.unlink(missing_ok=True)
        raise UsageError(f"-o {output}: cannot write: {exc.strerror or exc}") from None


def as_yaml(config: dict[str, Any], tool: str, origin: str, target: str = "ft.yaml") -> str:
    """The imported ft config as YAML, in ft's key order, with a header naming where it came from."""
    import yaml

    ordered = {k: config[k] for k in ORDER if k in config}
    ordered.update({k: v for k, v in config.items() if k not in ordered})
    header = f"# ft train --config {target}\n# Imported from {origin} ({tool}) by ft config import.\n"
    return header + yaml.safe_dump(ordered, sort_keys=False, allow_unicode=True)


def summary(rows: list[ImportRow]) -> str:
    """``N keys: a mapped, b ignored, c unsupported, d blocking, e warnings``."""
    counts = Counter(row.status for row in rows)
    parts = [f"{counts[status]} {status if status != 'warning' else 'warnings'}" for status in IMPORT_STATUSES]
    return f"{len(rows)} keys: {', '.join(parts)}"


def table(rows: list[ImportRow]) -> str:
    """One row per source key (key, outcome, ft key, note) in aligned columns, then the summary line.

    A note repeated on many rows (unknown keys, say) shows its first rows and one row counting the rest, and at
    most :data:`MAX_ROWS` rows are shown, so a huge input stays readable.
    """
    shown: list[tuple[str, str, str, str]] = [("source key", "outcome", "ft key", "note")]
    seen: Counter[tuple[str, str]] = Counter()
    for row in rows:
        seen[(row.status, row.note)] += 1
        if seen[(row.status, row.note)] <= REPEATS_SHOWN or not row.note:
            shown.append((_cut(row.key, 60), row.status, _cut(row.target, 60), _cut(row.note, 240)))
    for (status, note), count in seen.items():
        if count > REPEATS_SHOWN and note:
            shown.append((f"... {count - REPEATS_SHOWN} more", status, "", f"{_cut(note, 200)} (same note)"))
    hidden = len(shown) - 1 - MAX_ROWS
    if hidden > 0:
        shown = shown[:MAX_ROWS + 1] + [(f"... {hidden} more rows", "", "", "not shown")]
    widths = [max(len(r[i]) for r in shown) for i in range(3)]
    lines = ["  ".join(cell.ljust(widths[i]) if i < 3 else cell for i, cell in enumerate(r)).rstrip() for r in shown]
    return "\n".join([*lines, summary(rows)])


def _cut(text: str, width: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[:width - 3] + "..."


def problems(config: dict[str, Any]) -> list[str]:
    """What ft's validation says about the imported config (empty when it is valid as it is)."""
    from ftcore.config.schema import build_config

    try:
        build_config(config)
    except ConfigError as exc:
        return exc.problems
    return []
