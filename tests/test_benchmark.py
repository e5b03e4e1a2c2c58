"""ft benchmark: base vs tuned on the run's held-out split, report.json / report.md / report.png."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from adapter_runs import WORDS, repeat_task, trained_run
from data_helpers import write_jsonl

from ftcore.errors import RunDirError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_model_dir) -> Path:
    return trained_run(tmp_path_factory, tiny_model_dir)


def test_ft_benchmark_writes_report_on_the_runs_eval_split(run_dir, tiny_model_dir, tmp_path):
    from PIL import Image

    from ftcore.testing.process import run_ft

    out = tmp_path / "report"
    result = run_ft("benchmark", "--tuned", str(run_dir), "--metrics", "rouge,chrf,perplexity",
                    "--max-new-tokens", "4", "--samples", "3", "--output", str(out))
    assert result.returncode == 0, result.stderr
    assert "perplexity ↓" in result.stdout and "the run's eval split" in result.stdout

    for name in ("report.json", "report.md", "report.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0
    assert (out / "report.png").read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(out / "report.png") as image:
        image.verify()
    with Image.open(out / "report.png") as image:
        assert image.format == "PNG" and image.size[0] >= 600 and image.size[1] >= 400

    report = json.loads((out / "report.json").read_text())
    manifest = json.loads((run_dir / "ft_run.json").read_text())
    assert report["base"]["model"] == manifest["base_model"] == str(tiny_model_dir)
    assert report["tuned"]["model"] == str(run_dir)
    # Both models saw the same examples with the same settings.
    assert report["base"]["data_fingerprint"] == report["tuned"]["data_fingerprint"]
    assert report["base"]["generation"] == report["tuned"]["generation"]
    assert report["base"]["n_examples"] == report["tuned"]["n_examples"] == round(48 * 0.1)

    rows = {row["score"]: row for row in report["comparison"]}
    assert list(rows) == ["rouge1", "rouge2", "rougeL", "rougeLsum", "chrf", "perplexity"]
    for row in rows.values():
        assert row["delta"] == pytest.approx(row["tuned"] - row["base"])
        if row["base"]:
            assert row["relative_delta"] == pytest.approx(row["delta"] / abs(row["base"]))
    ppl = rows["perplexity"]
    assert ppl["higher_is_better"] is False
    # The redrawn split is the one the Trainer evaluated on, masked the same way: same loss.
    assert math.log(ppl["tuned"]) == pytest.approx(manifest["eval_loss"], rel=1e-4)
    # Two models on the same rows, no curve: 516 -> 269 measured on an AMD EPYC (0.65 nats), far from a tie.
    assert ppl["tuned"] < ppl["base"] and ppl["improved"] is True
    assert report["final_train_loss"] is not None

    markdown = (out / "report.md").read_text()
    assert "| metric | base | tuned | Δ | Δ % | better |" in markdown
    assert f"| perplexity (↓) | {ppl['base']:.4f} | {ppl['tuned']:.4f} |" in markdown
    assert "| # | prompt | reference | base | tuned |" in markdown
    samples = report["samples"]
    assert len(samples) == 3
    assert f"| 1 | {samples[0]['prompt'].replace(chr(10), '<br>')} |" in markdown
    for side in ("base", "tuned"):
        assert json.loads((out / side / "eval.json").read_text())["n_examples"] == 5
        assert len((out / side / "predictions.jsonl").read_text().splitlines()) == 5


def test_benchmark_with_a_data_file(run_dir, tiny_model_dir, tmp_path):
    from ftcore.jobs.benchmark import run_benchmark
    from ftcore.models.generation import GenerationSettings

    data = write_jsonl(tmp_path / "held.jsonl", repeat_task(WORDS[:3], WORDS[5:7]))
    report = run_benchmark(run_dir, data=data, metrics=["exact_match", "bleu"], settings=GenerationSettings(max_new_tokens=3),
                           output_dir=tmp_path / "r", samples=2)
    assert report.data == str(data) and report.data_source == "--data"
    assert report.tuned.n_examples == 6
    assert [c.score for c in report.comparisons] == ["exact_match", "bleu"]
    payload = json.loads((tmp_path / "r" / "report.json").read_text())
    assert payload["tuned"]["metrics"]["bleu"]["signature"].startswith("nrefs:1")
    assert len(payload["samples"]) == 2
    assert (tmp_path / "r" / "report.png").read_bytes()[:8] == PNG_SIGNATURE


def test_benchmark_needs_a_run_directory(tiny_model_dir, tmp_path):
    from ftcore.jobs.benchmark import run_benchmark

    with pytest.raises(RunDirError, match="not an ft run directory"):
        run_benchmark(tiny_model_dir, data=tmp_path / "x.jsonl")


def test_report_chart_without_loss_history(tmp_path):
    """A run without metrics.jsonl still gets a chart (saying so) and relative deltas handle a zero base."""
    from PIL import Image

    from ftcore.jobs.benchmark import BenchmarkReport, Comparison, write_chart
    from ftcore.jobs.evaluation import EvalResult

    def result(model, value):
        return EvalResult(model, "d.jsonl", "sha256:x", 1, {}, {"bleu": value}, {})

    zero = Comparison("bleu", "bleu", True, 0.0, 2.5)
    assert zero.relative is None and zero.improved
    report = BenchmarkReport(result("base", 0.0), result("tuned", 2.5), "d.jsonl", "--data", [zero], tmp_path)
    write_chart(report, tmp_path / "chart.png")
    with Image.open(tmp_path / "chart.png") as image:
        assert image.format == "PNG"
