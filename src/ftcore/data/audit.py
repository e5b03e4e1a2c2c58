"""The data audit: what each source is, how much of it trains, and what would silently ruin a run.

Per example, while tokenizing (:func:`audit_batch`): a digest (for duplicates), an unresolved template
placeholder such as ``{{name}}``, an empty answer. Per source (:class:`Auditor`): format, shape, examples
kept, tokens and the share trained, token lengths. Warnings: examples with nothing trained, placeholders,
duplicates, empty answers, truncation that cuts answers, preference or KTO data trained as supervised
examples, files skipped in a data directory. The audit goes into the data statistics (so the run manifest and
the cache keep it), is logged when ``ft train`` starts and shown by ``ft data preview``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftcore.contract.specs import CORE_SHAPES
from ftcore.data.encode import EMPTY, IGNORE, TOO_LONG, TRAINED_STATUSES, TRUNCATED, TRUNCATED_AWAY

if TYPE_CHECKING:
    import pyarrow as pa

    from ftcore.data.sources import DataSource

log = logging.getLogger("ftcore.data")

#: An unfilled placeholder: ``{{name}}`` (identity datasets ship with them). Not one with a dotted name or a
#: ``$`` before it (``{{ secrets.GITHUB_TOKEN }}``, ``${{ matrix.os }}``: GitHub Actions, Ansible, Helm), nor one
#: inside Markdown code (:data:`CODE`), which is real content that writes template syntax.
PLACEHOLDER = re.compile(r"(?<!\$)\{\{\s*([A-Za-z_]\w*)\s*\}\}")
CODE = re.compile(r"```.*?(?:```|$)|`[^`]*`", re.DOTALL)
#: Columns of preference pairs and of unpaired (KTO) preference data.
PREFERENCE_COLUMNS = ("chosen", "rejected")
KTO_COLUMNS = ("label", "kto_tag")
AUDIT_COLUMNS = ("digest", "placeholder", "empty_answer")
#: Shown examples per warning.
SHOWN = 3


def audit_batch(batch: dict[str, list[Any]], shape: str) -> dict[str, list[Any]]:
    """For each canonical example of a batch: a 63-bit digest, its first ``{{placeholder}}`` (or ``""``), and
    whether an answer (an assistant turn, a completion) is empty."""
    size = len(next(iter(batch.values()), []))
    rows = [{name: values[i] for name, values in batch.items()} for i in range(size)]
    out: dict[str, list[Any]] = {"digest": [], "placeholder": [], "empty_answer": []}
    for row in rows:
        text = json.dumps(row, sort_keys=True, ensure_ascii=False, default=str)
        out["digest"].append(int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") >> 1)
        found = PLACEHOLDER.search(CODE.sub("", text)) if shape != "tokens" and "{{" in text else None
        out["placeholder"].append(found.group(0) if found else "")
        out["empty_answer"].append(_empty_answer(row, shape))
    return out


def _empty_answer(row: dict[str, Any], shape: str) -> bool:
    if shape == "messages":
        return any(isinstance(m, dict) and m.get("role") == "assistant" and isinstance(m.get("content"), str)
                   and not m["content"].strip() and not m.get("tool_calls") for m in row.get("messages") or [])
    if shape == "completion":
        return isinstance(row.get("completion"), str) and not row["completion"].strip()
    return False


def lengths_brief(lengths: list[int]) -> dict[str, int]:
    """min / median / p95 / max of token lengths (sorted here)."""
    if not lengths:
        return {}
    ordered = sorted(lengths)

    def pct(p: float) -> int:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))]

    return {"min": ordered[0], "p50": pct(0.5), "p95": pct(0.95), "max": ordered[-1]}


class Auditor:
    """Collects per-source facts while the data is read and tokenized; :meth:`finish` gives the audit."""

    def __init__(self) -> None:
        self.sources: list[dict[str, Any]] = []
        self.warnings: list[dict[str, str]] = []
        self.digests: dict[int, str] = {}
        self.duplicates: list[tuple[str, str]] = []
        self.duplicate_count = 0
        self.nothing_trained: dict[str, list[str]] = {}
        self.placeholders: list[str] = []
        self.placeholder_count = 0
        self.empty: list[str] = []
        self.empty_count = 0
        self.truncated: list[str] = []
        self.truncated_count = 0
        self.reasoning_dropped: list[str] = []
        self.reasoning_dropped_count = 0
        self.measured: list[tuple[dict[str, Any], list[int], list[str]]] = []

    def add_source(self, source: DataSource, shape: str, split: str, table: pa.Table | None, examples: int) -> None:
        """Record one source: a table of its examples' audit columns (:func:`audit_batch`), with the token
        columns when tokenized (``status``, ``full_length``, ``input_ids``, ``labels``); ``None`` for a
        plugin's shape, which ftcore does not tokenize."""
        info: dict[str, Any] = {"split": split, "path": source.path, "format": source.format, "shape": shape,
                                "examples": examples}
        self.sources.append(info)
        self._preference_check(source, shape)
        if table is None:
            return
        if "status" in table.column_names:
            status = table.column("status").to_pylist()
            full = table.column("full_length").to_pylist()
            kept = [i for i, s in enumerate(status) if s in TRAINED_STATUSES]
            info.update(kept=len(kept), lengths=lengths_brief([n for n, s in zip(full, status, strict=True) if s != EMPTY]))
            parts = {c.removeprefix("length_"): lengths_brief(table.column(c).to_pylist())
                     for c in table.column_names if c.startswith("length_")}
            if parts:  # a plugin's shape, measured by its plugin: each part's lengths
                info["part_lengths"] = parts
            if "input_ids" not in table.column_names:  # token counts once max_seq_len is known (finish)
                self.measured.append((info, full, status))
            self._statuses(source, shape, status)
        if "input_ids" in table.column_names:
            tokens, trained = _token_counts(table, kept)
            tokens_in = sum(full)
            info.update(tokens_in=tokens_in, tokens=tokens, trained_tokens=trained, dropped_tokens=tokens_in - tokens,
                        trained_share=round(trained / tokens, 4) if tokens else 0.0)
            self._reasoning(source, table)
            if shape == "text" and TRUNCATED in status:
                cut = tokens_in - tokens - sum(n for n, s in zip(full, status, strict=True) if s not in TRAINED_STATUSES)
                self.warn("truncated_text", f"{source.path}: {status.count(TRUNCATED)} of {len(status)} texts are "
                          f"longer than max_seq_len and lose their end ({cut} tokens); leave data.overflow out (or "
                          "set it to split) to train on every token in max_seq_len chunks")
        self._examples(source, table)

    def _statuses(self, source: DataSource, shape: str, status: list[str]) -> None:
        for i, s in enumerate(status):
            # Every reason to drop an example is warned about but the one asked for (overflow: drop).
            if s not in (*TRAINED_STATUSES, TOO_LONG):
                self.nothing_trained.setdefault(s, []).append(source.where(i))
            elif s == TRUNCATED and shape != "text":
                self.truncated_count += 1
                if len(self.truncated) < SHOWN:
                    self.truncated.append(source.where(i))

    def _reasoning(self, source: DataSource, table: pa.Table) -> None:
        if "reasoning_dropped" not in table.column_names:
            return
        for i, n in enumerate(table.column("reasoning_dropped").to_pylist()):
            if n:
                self.reasoning_dropped_count += n
                if len(self.reasoning_dropped) < SHOWN:
                    self.reasoning_dropped.append(source.where(i))

    def _examples(self, source: DataSource, table: pa.Table) -> None:
        for i, name in enumerate(table.column("placeholder").to_pylist()):
            if name:
                self.placeholder_count += 1
                if len(self.placeholders) < SHOWN:
                    self.placeholders.append(f"{source.where(i)} {name}")
        for i, empty in enumerate(table.column("empty_answer").to_pylist()):
            if empty:
                self.empty_count += 1
                if len(self.empty) < SHOWN:
                    self.empty.append(source.where(i))
        for i, digest in enumerate(table.column("digest").to_pylist()):
            first = self.digests.setdefault(digest, source.where(i))
            if first != source.where(i):
                self.duplicate_count += 1
                if len(self.duplicates) < SHOWN:
                    self.duplicates.append((source.where(i), first))

    def _preference_check(self, source: DataSource, shape: str) -> None:
        if shape not in CORE_SHAPES or source.records is None:
            return
        # Mapping one of these columns (``completion: chosen``: SFT on the chosen answers) is a choice, not a slip.
        if set(source.columns.values()) & {*PREFERENCE_COLUMNS, *KTO_COLUMNS}:
            return
        present = set(source.records.column_names)
        pairs = [c for c in PREFERENCE_COLUMNS if c in present]
        labels = [c for c in KTO_COLUMNS if c in present and _is_bool(source.records, c)]
        if pairs or labels:
            kind = "preference pairs" if pairs else "unpaired preference (KTO) data"
            self.warn("preference_data",
                      f"{source.path}: records have {', '.join(map(repr, pairs or labels))} columns, as {kind} do, "
                      f"but format {source.format!r} trains them as supervised {shape!r} examples (every answer "
                      "taught as a good one); use a method that trains on preference data (see `ft plugins`) or drop those columns")

    def warn(self, code: str, message: str) -> None:
        """Add one warning (``code`` names its kind, for ``--json`` and tests)."""
        self.warnings.append({"code": code, "message": message})

    def finish(self, stats: dict[str, Any], full_lengths: list[int], skipped: Iterable[tuple[Path, list[str]]]) -> dict[str, Any]:
        """The audit of a prepared dataset: per source, overall, and the warnings."""
        from ftcore.data.sources import skipped_message

        total = sum(stats["dropped"].values()) + stats["kept"] if "kept" in stats else stats["examples"]
        self._finish_warnings(stats["max_seq_len"], max(total, 1))
        for info, full, status in self.measured:
            # A plugin's measured rows: the tokens of its longest sequence, cut at max_seq_len when truncated.
            kept = sum(min(n, stats["max_seq_len"]) for n, s in zip(full, status, strict=True) if s in TRAINED_STATUSES)
            info.update(tokens_in=sum(full), tokens_kept=kept, dropped_tokens=sum(full) - kept)
        for directory, files in skipped:
            self.warn("skipped_files", skipped_message(directory, files))
        train = stats.get("train") or {}
        tokens, trained = train.get("tokens"), train.get("trained_tokens")
        return {
            "sources": self.sources,
            "trained_share": round(trained / tokens, 4) if tokens else None,
            "lengths": lengths_brief(full_lengths),
            "warnings": self.warnings,
        }

    def _finish_warnings(self, max_seq_len: int, total: int) -> None:
        for reason, where in self.nothing_trained.items():
            self.warn("nothing_trained", f"{_n(len(where))} ({_share(len(where), total)}) dropped: "
                      f"{reason}" + (f" ({max_seq_len})" if reason == TRUNCATED_AWAY else "") + f", e.g. {_eg(where)}")
        if self.placeholder_count:
            self.warn("placeholders", f"{_n(self.placeholder_count)} {_v(self.placeholder_count, 'contains', 'contain')} "
                      f"unresolved template placeholders, e.g. {_eg(self.placeholders)}; fill them in before training")
        if self.duplicate_count:
            shown = "; ".join(f"{a} repeats {b}" for a, b in self.duplicates)
            self.warn("duplicates", f"{_n(self.duplicate_count)} "
                      f"({_share(self.duplicate_count, total)}) {_v(self.duplicate_count, 'repeats', 'repeat')} earlier ones, e.g. {shown}")
        if self.empty_count:
            self.warn("empty_answers", f"{_n(self.empty_count)} {_v(self.empty_count, 'has', 'have')} an empty answer (the "
                      f"model learns to say nothing), e.g. {_eg(self.empty)}")
        if self.reasoning_dropped_count:
            n = self.reasoning_dropped_count
            self.warn("reasoning_dropped", f"{n} reasoning block{'' if n == 1 else 's'} of earlier answers "
                      f"{_v(n, 'is', 'are')} left out by the chat template (it keeps only the reasoning of answers "
                      f"after the last user message), so {_v(n, 'it does', 'they do')} not train, e.g. "
                      f"{_eg(self.reasoning_dropped)}; to train {_v(n, 'it', 'them')}, give each turn as its own "
                      "example (the conversation up to it)")
        if self.truncated_count:
            self.warn("truncated_answers", f"{_n(self.truncated_count)} "
                      f"({_share(self.truncated_count, total)}) {_v(self.truncated_count, 'is', 'are')} longer than max_seq_len ({max_seq_len}) and "
                      f"{_v(self.truncated_count, 'loses the end of its', 'lose the end of their')} answer, e.g. {_eg(self.truncated)}; raise data.max_seq_len or set "
                      "data.overflow: drop")


def _is_bool(records: Any, column: str) -> bool:
    """Whether a records column holds booleans (a KTO label), not class names or numbers."""
    return str(getattr(records.features.get(column), "dtype", "")) == "bool"


def _token_counts(table: pa.Table, kept: list[int]) -> tuple[int, int]:
    import pyarrow as pa
    import pyarrow.compute as pc

    rows = table.take(pa.array(kept, type=pa.int64())) if len(kept) != table.num_rows else table
    tokens = int(pc.sum(pc.list_value_length(rows.column("input_ids"))).as_py() or 0)
    labels = pc.list_flatten(rows.column("labels"))
    return tokens, int(pc.sum(pc.not_equal(labels, IGNORE)).as_py() or 0)


def _n(n: int) -> str:
    return f"{n} example" + ("" if n == 1 else "s")


def _v(n: int, one: str, several: str) -> str:
    return one if n == 1 else several


def _share(n: int, total: int) -> str:
    return f"{100 * n / total:.1f}%" if 100 * n / total >= 0.1 else "<0.1%"


def _eg(where: list[str]) -> str:
    return ", ".join(where[:SHOWN]) + (" ..." if len(where) > SHOWN else "")


# ----------------------------------------------------------------------------- showing it


def source_line(info: dict[str, Any]) -> str:
    """One line per source: path, format, shape, examples kept, trained share, token lengths."""
    line = f"{info['path']}: format {info['format']}, shape {info['shape']}; {_n(info['examples'])}"
    if info.get("kept") is not None and info["kept"] != info["examples"]:
        line += f", {info['kept']} kept"
    if info.get("tokens") is not None:
        line += f"; {info['trained_tokens']} of {info['tokens']} tokens trained ({100 * info['trained_share']:.0f}%)"
        if info.get("dropped_tokens"):
            line += f", {info['dropped_tokens']} of {info['tokens_in']} tokens dropped (truncated or dropped examples)"
    elif info.get("tokens_kept") is not None:  # a plugin's shape: the tokens of each example's longest sequence
        line += f"; {info['tokens_kept']} of {info['tokens_in']} tokens kept"
        if info["dropped_tokens"]:
            line += f", {info['dropped_tokens']} dropped (truncated or dropped examples)"
    lengths = info.get("lengths")
    if lengths:
        line += f"; length min/median/p95/max {lengths['min']}/{lengths['p50']}/{lengths['p95']}/{lengths['max']} tokens"
    for part, brief in (info.get("part_lengths") or {}).items():
        if brief:
            line += f"; {part} {brief['min']}/{brief['p50']}/{brief['p95']}/{brief['max']}"
    return line


def report_lines(audit: dict[str, Any] | None) -> list[str]:
    """The audit as text lines: one per source, the overall numbers, then ``warning:`` lines."""
    if not audit:
        return []
    lines = [source_line(info) for info in audit["sources"]]
    if audit.get("trained_share") is not None:
        lengths = audit.get("lengths") or {}
        overall = f"overall: {100 * audit['trained_share']:.0f}% of train tokens trained"
        if lengths:
            overall += (f"; length min/median/p95/max {lengths['min']}/{lengths['p50']}/{lengths['p95']}/"
                        f"{lengths['max']} tokens (before truncation)")
        lines.append(overall)
    lines += [f"warning: {w['message']}" for w in audit["warnings"]]
    if not audit["warnings"]:
        lines.append("no warnings")
    return lines


def log_audit(audit: dict[str, Any] | None) -> None:
    """Log the audit: sources and overall numbers at INFO, each warning at WARNING."""
    for line in report_lines(audit):
        if line.startswith("warning: "):
            log.warning("data: %s", line)
        else:
            log.info("data: %s", line)
