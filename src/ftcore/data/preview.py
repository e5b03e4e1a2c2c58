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
