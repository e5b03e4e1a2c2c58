"""What the commands print: ``--json`` results on stdout only, no redrawn progress bars off a terminal,
``NO_COLOR``, an ``Examples:`` section in every ``--help``, and ``ft env``."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from train_helpers import run_config, write_config

from ftcore.cli import COMMANDS, LazyGroup, cli
from ftcore.commands.output import use_color
from ftcore.testing.process import run_ft


def _write_pairs(path: Path, n: int) -> Path:
    words = ["red", "dog", "fish", "tree", "one", "cat", "bird", "river"]
    with path.open("w", encoding="utf-8") as handle:
        for i in range(n):
            sample = [words[(i * 3 + j * 5) % len(words)] for j in range(4)]
            handle.write(json.dumps({"prompt": "Reverse: " + " ".join(sample), "completion": " ".join(reversed(sample))}) + "\n")
    return path


@pytest.fixture(scope="module")
def json_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path):
    """One real ``ft train --json`` in a subprocess whose stderr is a pipe (not a terminal)."""
    root = tmp_path_factory.mktemp("json_run")
    data = _write_pairs(root / "train.jsonl", 32)
    raw = run_config(tiny_model_dir, data, root / "run", max_steps=3, logging_steps=1, save_steps=3)
    config = write_config(root / "cfg.yaml", raw)
    proc = run_ft("train", "--config", str(config), "--json",
                  env={"FT_CACHE_DIR": str(root / "cache"), "OMP_NUM_THREADS": "1"})
    return root, proc


def test_train_json_is_the_only_stdout_and_stderr_has_no_redrawn_bars(json_run):
    root, proc = json_run
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)  # nothing but the result on stdout
    assert result["run_dir"] == str(root / "run")
    assert result["status"] == "complete" and result["global_step"] == 3 and result["method"] == "lora"
    # Off a terminal: ft's progress comes as log lines, and no library redraws a bar with carriage returns.
    assert "\r" not in proc.stderr
    assert "step 3/3" in proc.stderr


def _invoke(args: list[str]):
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.usefixtures("single_thread")
def test_evaluate_benchmark_merge_recommend_json(json_run, tiny_model_dir: Path, tmp_path: Path):
    root, proc = json_run
    assert proc.returncode == 0, proc.stderr
    run_dir = root / "run"
    held_out = _write_pairs(tmp_path / "test.jsonl", 4)

    evaluated = json.loads(_invoke(["evaluate", str(run_dir), "--data", str(held_out), "--metrics", "exact_match",
                                    "--max-new-tokens", "4", "--output", str(tmp_path / "eval"), "--json"]).stdout)
    assert evaluated["n_examples"] == 4 and "exact_match" in evaluated["scores"]
    assert json.loads((tmp_path / "eval" / "eval.json").read_text())["scores"] == evaluated["scores"]

    report = json.loads(_invoke(["benchmark", "--tuned", str(run_dir), "--data", str(held_out), "--metrics",
                                 "exact_match", "--max-new-tokens", "4", "--samples", "1",
                                 "--output", str(tmp_path / "bench"), "--json"]).stdout)
    assert [c["score"] for c in report["comparison"]] == ["exact_match"]
    assert report["tuned"]["n_examples"] == report["base"]["n_examples"] == 4

    merged = json.loads(_invoke(["merge", str(run_dir), "-o", str(tmp_path / "merged"), "--json"]).stdout)
    assert "model.safetensors" in merged["files"] and merged["bytes"] > 0

    rec = json.loads(_invoke(["recommend", "--model", str(tiny_model_dir), "--memory", "8", "--json"]).stdout)
    assert rec["fits"] is True and rec["memory_bytes"] == 8 * 2**30
    assert rec["recommended"]["config"]["method"] == rec["recommended"]["setup"]["method"]
    assert rec["recommended"]["total_bytes"] <= rec["budget_bytes"]


def test_recommend_json_when_nothing_fits_prints_the_result_then_fails(tiny_model_dir: Path):
    result = CliRunner().invoke(cli, ["recommend", "--model", str(tiny_model_dir), "--memory", "0.001", "--json"])
    assert result.exit_code != 0
    assert json.loads(result.stdout)["fits"] is False


def _commands(group: click.Group, ctx: click.Context, prefix: list[str]):
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        yield [*prefix, name], command
        if isinstance(command, click.Group):
            yield from _commands(command, ctx, [*prefix, name])


def test_every_command_help_has_examples():
    ctx = click.Context(cli)
    paths = list(_commands(cli, ctx, []))
    assert {path[0] for path, _command in paths} >= set(COMMANDS) and isinstance(cli, LazyGroup)  # and plugins' commands
    missing = []
    for path, command in paths:
        if isinstance(command, click.Group):
            continue  # a group's help lists its commands; each command carries the examples
        text = CliRunner().invoke(cli, [*path, "--help"]).output
        if "Examples:\n    ft " not in text:
            missing.append(" ".join(path))
    assert missing == []
    assert "_FT_COMPLETE=bash_source ft" in CliRunner().invoke(cli, ["--help"]).output


class _Stream:
    def __init__(self, tty: bool) -> None:
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_no_color_turns_colour_off_unless_asked(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert use_color(_Stream(True)) is True and use_color(_Stream(False)) is False
    monkeypatch.setenv("NO_COLOR", "1")
    assert use_color(_Stream(True)) is False
    assert use_color(_Stream(True), asked=True) is True  # --color still wins
    monkeypatch.setenv("NO_COLOR", "")  # empty means unset (no-color.org)
    assert use_color(_Stream(True)) is True


def test_env_reports_versions_devices_and_plugins():
    text = _invoke(["env"]).stdout
    assert "ftcore" in text and "torch 2." in text and "ftlora" in text
    info = json.loads(_invoke(["env", "--json"]).stdout)
    assert info["libraries"]["transformers"] and info["cpu"]["cores"] >= 1
    assert "cuda" in info["devices"] and {p["name"] for p in info["plugins"]} >= {"ftlora", "ftinstruct"}


def test_env_never_shows_a_token(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HF_TOKEN", "hf_" + "a" * 34)
    out = _invoke(["env", "--json"]).stdout
    assert "hf_aaaa" not in out and json.loads(out)["environment"]["HF_TOKEN"] == "(set, hidden)"
