"""The benchmark runner still runs: its quickest mode on a tiny fixture writes a well-formed results file.

No timing is asserted (the numbers depend on the machine); only that every section is there and that each
measurement is a positive number, so the bench code cannot rot unnoticed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.model  # trains the benchmark's tiny fixture
def test_quick_benchmark_writes_results(tmp_path):
    output = tmp_path / "RESULTS.md"
    # An earlier results file: its history (what follows the generated section) must survive the run.
    output.write_text("# ft benchmark results\n\n## Round 2 notes\n\nkept as they are\n", encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--work", str(tmp_path / "work"), "--output", str(output)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    text = output.read_text(encoding="utf-8")
    generated, history = text.split("<!-- end of what benchmarks/run.py writes -->")
    assert history.strip() == "## Round 2 notes\n\nkept as they are" and text.count("# ft benchmark results") == 1
    for heading in ("### Issue 20's targets", "### Training throughput and memory", "### Same loss curve on identical batches",
                    "### Start-up", "### Data preparation"):
        assert heading in generated
    assert "- Machine: " in generated and "fp32 matmul peak measured in this run: **" in generated
    assert "Load average at start **" in generated
    rows = {line.split("|")[2].strip(): line for line in generated.splitlines() if re.match(r"\| [^|]+ \| (hf|ft)_\w+ \|", line)}
    assert set(rows) == {"hf_mb1", "ft_mb1"}
    targets = {line.split("|")[1].strip(): line.split("|")[3].strip() for line in generated.splitlines()
               if line.startswith("| ") and line.count("|") == 4}
    assert targets["identical settings: same per-step losses (≤ 1e-4, fp32)"] == "yes"
    assert targets["`ft --help` does not import torch"] == "yes"

    found = json.loads(output.with_suffix(".json").read_text(encoding="utf-8"))
    assert found["settings"]["quick"] is True
    runs = {run["case"]: run for run in found["runs"]}
    for run in runs.values():
        assert run["useful_tokens_per_s"] > 0 and run["tokens_per_s"] >= run["useful_tokens_per_s"]
        assert run["flops_per_s"] > 0 and run["peak_rss_mb"] > 0
        assert len(run["losses"]) == found["settings"]["steps"]
    # Same seed, same batches, same LoRA: ft and the hand-written Trainer give the same loss curve.
    pairs = zip(runs["ft_mb1"]["losses"], runs["hf_mb1"]["losses"], strict=True)
    assert max(abs(a - b) for a, b in pairs) < 1e-4
    first, again = found["prep"]
    assert first["cache_hit"] is False and again["cache_hit"] is True and first["rows"] == again["rows"]
    assert all(t > 0 for times in found["startup"].values() for t in times)
    assert min(found["peak_gflops"]) > 0
