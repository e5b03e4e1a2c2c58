"""ftpref's ``rm`` held to the method contract. Its learned check is chosen by kind: the suite's default would
generate from the run, which ft refuses for a sequence classifier, so passing shows ``check_learned_scorer`` ran."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

from ftcore.testing.suites import MethodContract


class TestRm(MethodContract):
    method = "rm"
    options: ClassVar[dict[str, Any]] = {"center_rewards_coefficient": 0.01}
    bad_options: ClassVar[list[dict[str, Any]]] = [{"center_rewards_coefficient": -1}, {"r": 8}]
    steps = 6
    learning_rate = 1e-3

    def write_data(self, directory: Path) -> Path:
        rows = [{"prompt": f"Opposite of {a}:", "chosen": f" {b}", "rejected": f" {a}"}
                for a, b in (("red", "green"), ("cat", "dog"), ("up", "down"), ("hot", "cold"))]
        path = directory / "pairs.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows * 4), encoding="utf-8")
        return path
