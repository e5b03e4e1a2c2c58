"""Shared data helpers of the tests: write records in each file type, build configs, and compute
expected token ids/labels independently of the pipeline (tokenizing literal text pieces)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

IGNORE = -100


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Write ``rows`` to ``path``, one JSON object per line."""
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def write_records(directory: Path, name: str, rows: list[dict[str, Any]], kind: str) -> Path:
    """Write ``rows`` as ``name.<kind>``; nested values become JSON strings in CSV cells."""
    path = directory / f"{name}.{kind}"
    if kind == "jsonl":
        write_jsonl(path, rows)
    elif kind == "json":
        path.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    elif kind == "csv":
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            for row in rows:
                writer.writerow({k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in row.items()})
    elif kind == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    else:
        raise ValueError(kind)
    return path


def make_config(train: Any, tmp_path: Path, method: str = "lora", **data: Any) -> Any:
    """A validated run config over ``train`` with a per-test cache directory and no shuffling."""
    from ftcore.config.schema import build_config

    settings = {"train": train, "cache_dir": str(tmp_path / "cache"), "shuffle": False, **data}
    return build_config({"model": "unused", "method": method, "data": settings})


def expected(tokenizer: Any, pieces: list[tuple[str, bool]]) -> tuple[list[int], list[int]]:
    """Token ids and labels of text pieces, each tokenized on its own; trained pieces keep their ids."""
    ids: list[int] = []
    labels: list[int] = []
    for text, trained in pieces:
        piece = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids += piece
        labels += piece if trained else [IGNORE] * len(piece)
    return ids, labels


def chatml(role: str, content: str) -> str:
    """One ChatML turn as the tiny tokenizer's chat template renders it."""
    return f"<|im_start|>{role}\n{content}<|im_end|>\n"
