"""The peers benchmark's and the batching ceiling's reports: ratios per round, separate sections per model, the
ceiling's arithmetic (benchmarks/peers.py, benchmarks/ceiling.py; the runs themselves are `nox -s bench_peers`)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name: str):
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_run(case: str, round_: int, speed: float, rss: float) -> dict:
    return {"case": case, "round": round_, "label_tokens_per_s": speed, "input_tokens_per_s": speed * 1.5,
            "label_tokens": 13327, "peak_rss_mb": rss, "final_loss": 6.9, "versions": {"torch": "2.13.0"}}


def test_peers_table_gives_fts_speed_over_each_tool_per_round():
    peers = load("peers")
    report = {"machine": {"cpu": "CPU", "cores": 2, "memory_gb": 24.0, "python": "3.11"}, "uptime_start": "a",
              "uptime_end": "b", "steps": 16, "warmup": 2, "examples": 128, "skipped": ["lf_padded"],
              "fixture": {"params": 27_662_848, "spec": {"vocab_size": 8192}},
              "runs": [fake_run("ft_default", 0, 900, 1600), fake_run("hf_mb1", 0, 600, 1200),
                       fake_run("ft_default", 1, 800, 1600), fake_run("hf_mb1", 1, 800, 800)]}
    text = peers.markdown(report)
    row = next(line for line in text.splitlines() if line.startswith("| hf_mb1 |"))
    assert "1.50×, 1.00×" in row            # 900/600 in round 0, 800/800 in round 1
    assert "| 1000 | 0.62× |" in row        # median RSS, against ft's 1600
    assert "27.7M-parameter Llama (vocab 8,192)" in text and "Not run (no environment given): lf_padded" in text


def test_each_models_peers_section_is_kept_apart(tmp_path):
    peers = load("peers")
    page = tmp_path / "performance.md"
    page.write_text("# Performance\n\nhand-written text\n", encoding="utf-8")
    for model, body in (("llama28m", "first llama"), ("smollm2", "smol"), ("llama28m", "second llama")):
        target, start, end = peers.outputs(model)
        peers.merge(page, body, start, end)
    text = page.read_text(encoding="utf-8")
    assert "hand-written text" in text and "smol" in text and "second llama" in text and "first llama" not in text
    assert peers.outputs("smollm2")[0].name == "RESULTS-peers-smollm2.json"


def test_ceiling_bound_keeps_the_rest_of_the_step_and_speeds_up_the_linear_layers():
    ceiling = load("ceiling")
    model = ceiling.MODELS["llama28m"]
    per_token = ceiling.linear_flops_per_token(model)
    # 4 FLOPs per weight: 6 layers of q/k/v/o (512×512) and the MLP (3 × 512×1408), and the 8,192-word head.
    assert per_token == 4 * (6 * (4 * 512 * 512 + 3 * 512 * 1408) + 512 * 8192)
    # A step of 1/300 s per token; the linear layers run at 45 GFLOP/s at one example's 160 tokens, 100 at best.
    entry = {"flops_per_token": per_token, "sweep": {"fp32": {"128": 40.0, "256": 60.0, "4096": 100.0}}}
    found = ceiling.bound(entry, {"hf_mb1": 300.0, "ft_default": 360.0, "example_tokens": 160.0}, 164)
    linear = per_token / 45e9                # interpolated: 40 + 20 × 32/128 = 45 GFLOP/s at 160 tokens
    assert found["linear_share"] == pytest.approx(linear * 300) and 0.5 < found["linear_share"] < 0.7
    assert found["fp32_bound"] == pytest.approx((1 / 300) / (1 / 300 - linear + per_token / 100e9))
    assert found["ft_default"] == pytest.approx(1.2)
    rest = 1 / 300 - linear
    assert found["rest_allowed"] == pytest.approx((1 / 300 / 1.5 - per_token / 100e9) / rest)


def test_longest_examples_fixture_keeps_only_the_longest_in_their_order(tmp_path, tiny_model_dir, monkeypatch):
    # `benchmarks/run.py --data longest`: the same model and tokenizer, only the longest examples, so every tool
    # meets its longest examples (and so a whole run's peak memory) within the measured steps.
    import json

    run = load("run")
    monkeypatch.setattr(run, "LONGEST", 2)
    source = tmp_path / "fixture"
    source.mkdir()
    (source / "model").symlink_to(tiny_model_dir, target_is_directory=True)
    (source / "fixture.json").write_text("{}", encoding="utf-8")
    records = [{"instruction": "a " * n, "input": "", "output": "b"} for n in (3, 40, 1, 25, 7)]
    (source / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    found = run.longest_examples(source, tmp_path / "longest")
    kept = [json.loads(line) for line in (tmp_path / "longest" / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    assert kept == [records[1], records[3]]  # the two longest, in the file's order
    assert (tmp_path / "longest" / "model").resolve() == tiny_model_dir.resolve()
    assert (tmp_path / "longest" / "fixture.json").exists()
    assert found["dir"] == str(tmp_path / "longest") and found["longest"]["examples"] == 2
    assert found["longest"]["min_tokens"] < found["longest"]["max_tokens"]
