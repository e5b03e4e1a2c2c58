"""ftlmeval through ft's CLI, offline: a tiny LoRA run learns the local lm-eval task ``ft_colors`` (tasks/), and
``ft benchmark`` scores it against its base with lm-eval; the scores match a log-likelihood loop of our own."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

TASKS = Path(__file__).parent / "tasks"
TASK = "ft_colors"


def task_docs() -> list[dict]:
    return [json.loads(line) for line in (TASKS / f"{TASK}.jsonl").read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def run_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """A LoRA run trained on the task's own questions and right answers (lm-eval joins them with a space)."""
    from ftcore.config.schema import build_config
    from ftcore.contract.plugins import reset_plugin_manager
    from ftcore.jobs.train import run_training

    reset_plugin_manager()
    tmp = tmp_path_factory.mktemp("lmeval")
    train = tmp / "train.jsonl"
    rows = [{"prompt": d["question"], "completion": " " + d["choices"][d["answer"]]} for d in task_docs()]
    train.write_text("".join(json.dumps(r) + "\n" for r in rows * 8), encoding="utf-8")
    config = build_config({
        "model": str(tiny_model_dir), "method": "lora", "output_dir": str(tmp / "run"), "seed": 0,
        # The random tiny model's output head has to learn the six answers too: it trains in full beside the adapter.
        "method_options": {"r": 16, "alpha": 64, "dropout": 0.0, "modules_to_save": ["lm_head"]},
        "data": {"train": str(train), "max_seq_len": 32, "cache_dir": str(tmp / "cache")},
        "training": {"max_steps": 60, "batch_size": 8, "learning_rate": 3e-3, "lr_scheduler": "constant",
                     "logging_steps": 10},
    })
    return run_training(config).run_dir


def hand_accuracy(model_or_run: Path, limit: int | None = None) -> float:
    """Share of questions whose right answer has the highest summed log-likelihood, computed here as lm-eval
    defines it: the answer's tokens are those the text ``question + " " + answer`` has beyond the question's."""
    import torch

    from ftcore import load_for_inference

    model, tokenizer = load_for_inference(model_or_run, device="cpu")
    right = 0
    docs = task_docs()[:limit]
    for doc in docs:
        context = tokenizer(doc["question"], add_special_tokens=False).input_ids
        scores = []
        for choice in doc["choices"]:
            whole = tokenizer(doc["question"] + " " + choice, add_special_tokens=False).input_ids
            with torch.no_grad():
                logits = model(torch.tensor([whole])).logits[0].float().log_softmax(-1)
            scores.append(sum(float(logits[i - 1, whole[i]]) for i in range(len(context), len(whole))))
        right += max(range(len(scores)), key=scores.__getitem__) == doc["answer"]
    return right / len(docs)


def test_benchmark_scores_base_and_tuned_with_lm_eval(run_dir, tmp_path):
    from ftcore.testing.process import run_ft

    report = tmp_path / "report"
    # A task file by path; lm-eval reads its data_files relative to the working directory, the task's folder here.
    result = run_ft("benchmark", "--tuned", str(run_dir), "--metrics", f"lm_eval:{TASK}.yaml", "--output", str(report),
                    cwd=TASKS)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "data: the metrics' own tasks" in result.stdout
    payload = json.loads((report / "report.json").read_text(encoding="utf-8"))
    [row] = [c for c in payload["comparison"] if c["score"] == f"{TASK}/acc"]
    assert 0.0 <= row["base"] <= 1.0 and 0.0 <= row["tuned"] <= 1.0
    assert row["tuned"] > row["base"], row  # the run learned the task lm-eval scores
    assert row["tuned"] == pytest.approx(hand_accuracy(run_dir))
    assert row["base"] == pytest.approx(hand_accuracy(Path(payload["base"]["model"])))
    markdown = (report / "report.md").read_text(encoding="utf-8")
    assert "| ft_colors/acc (↑) |" in markdown and "- data: the metrics' own tasks" in markdown
    assert "- generation:" not in markdown  # ft's decoding settings do not reach lm-eval
    tuned = json.loads((report / "tuned" / "eval.json").read_text(encoding="utf-8"))
    assert tuned["data"] is None and tuned["n_examples"] == 0  # lm-eval brought its own examples
    described = tuned["metrics"][f"lm_eval:{TASK}.yaml"]
    assert described["plugin"] == "ftlmeval" and described["lm_eval_version"].startswith("0.4")
    assert described["tasks"][TASK]["samples"]["effective"] == len(task_docs())


def test_evaluate_scores_the_merged_run_with_a_task_named_in_include_path_and_no_data(run_dir, tmp_path):
    from ftcore import merge_run
    from ftcore.testing.process import run_ft

    merged = merge_run(run_dir, tmp_path / "merged")
    metric = f"lm_eval:{TASK}"
    result = run_ft("evaluate", str(merged), "--metrics", metric, "--metric-option", f"{metric}.include_path={TASKS}",
                    "--metric-option", f"{metric}.limit=3", "--output", str(tmp_path / "eval"), "--json", cwd=TASKS)
    assert result.returncode == 0, result.stderr[-3000:]
    scores = json.loads(result.stdout)["scores"]
    assert set(scores) == {f"{TASK}/acc"}
    assert scores[f"{TASK}/acc"] == pytest.approx(hand_accuracy(merged, limit=3))


@pytest.mark.slow  # a name found in no task file makes lm-eval index its own 14,000 tasks: 45 s on a busy machine
def test_an_unknown_task_fails_in_one_line_with_suggestions(tiny_model_dir, tmp_path):
    from ftcore.testing.process import run_ft

    metric = "lm_eval:ft_colours"
    result = run_ft("evaluate", str(tiny_model_dir), "--metrics", metric, "--metric-option",
                    f"{metric}.include_path={TASKS}", "--output", str(tmp_path / "eval"))
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1, result.stderr[-3000:]
    assert "unknown task 'ft_colours' (did you mean ft_colors" in lines[0]


def test_ft_evaluate_without_data_names_the_metrics_that_need_it(tiny_model_dir, tmp_path):
    from ftcore.testing.process import run_ft

    result = run_ft("evaluate", str(tiny_model_dir), "--metrics", f"lm_eval:{TASK},rouge", "--output", str(tmp_path / "e"))
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].endswith("--data: the metrics rouge score examples; pass --data FILE")


def test_without_lm_eval_the_metric_says_what_to_install(monkeypatch):
    from ftlmeval.harness import evaluate_tasks

    from ftcore import PluginError

    monkeypatch.setitem(sys.modules, "lm_eval", None)  # as if the package were not installed
    with pytest.raises(PluginError, match=r"needs the lm-eval package .*pip install ftlmeval"):
        evaluate_tasks(f"lm_eval:{TASK}", {"options": {}})


def test_a_metric_name_without_a_task_is_refused():
    from ftlmeval.harness import task_specs

    from ftcore import UsageError

    with pytest.raises(UsageError, match=r"needs a task: write lm_eval:<task>"):
        task_specs("lm_eval", {})
    assert task_specs("lm_eval:arc_easy", {"tasks": ["hellaswag", "arc_easy"]}) == ["arc_easy", "hellaswag"]


def test_an_unknown_task_name_gets_the_closest_names():
    from ftlmeval.harness import check_task_name

    from ftcore import UsageError

    check_task_name("arc_easy", ["arc_easy", "arc_challenge"])
    with pytest.raises(UsageError, match=r"^lm_eval: unknown task 'arc_esay' \(did you mean arc_easy\?\); `lm-eval ls tasks`"):
        check_task_name("arc_esay", ["arc_easy", "hellaswag"])
