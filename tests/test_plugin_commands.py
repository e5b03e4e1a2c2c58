"""Plugin API 3: a plugin that is not ours adds a command to ``ft`` and sees a run begin and end, and a failing
or exiting plugin hook is named in one line."""

from __future__ import annotations

import pytest
from data_helpers import write_jsonl

from ftcore.testing.process import run_ft

pytest.importorskip("ftrunnotes", reason="install tests/plugins/ftrunnotes (nox -s tests does)")

PAIRS = [{"prompt": f"Opposite of {a}:", "completion": f" {b}"} for a, b in [("up", "down"), ("hot", "cold")]] * 4


def _train(tmp_path, model_dir, *extra):
    data = write_jsonl(tmp_path / "train.jsonl", PAIRS)
    config = tmp_path / "cfg.yaml"
    config.write_text(
        f"model: {model_dir}\nmethod: lora\noutput_dir: {tmp_path / 'run'}\n"
        f"data: {{train: {data}, max_seq_len: 32, cache_dir: {tmp_path / 'cache'}}}\n"
        "training: {max_steps: 3, batch_size: 4, logging_steps: 1}\n"
    )
    return run_ft("train", "--config", str(config), *extra, env={"FTRUNNOTES": "1"})


def test_a_plugin_command_runs_through_ft_and_sees_the_run(tiny_model_dir, tmp_path):
    result = _train(tmp_path, tiny_model_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    notes = run_ft("notes", str(tmp_path / "run"))
    assert notes.returncode == 0, notes.stderr
    started, finished = notes.stdout.splitlines()
    assert started == "started: method=lora"
    assert finished.startswith("finished: steps=3 loss=")
    assert not any(p.name.startswith(".run") for p in tmp_path.iterdir()), "staging left behind"


def test_help_lists_plugin_commands_with_their_distribution_and_plugins_shows_them():
    help_text = run_ft("--help").stdout
    assert "Commands from plugins" in help_text
    line = next(line for line in help_text.splitlines() if line.strip().startswith("notes"))
    assert "[ftrunnotes]" in line
    listing = run_ft("plugins", "--json")
    notes_plugin = next(p for p in __import__("json").loads(listing.stdout)["plugins"] if p["dist"] == "ftrunnotes")
    assert notes_plugin["commands"] == ["notes"]


def test_a_plugin_command_error_is_one_line(tmp_path):
    result = run_ft("notes", str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: {tmp_path}: no notes.txt (was ftrunnotes installed when this run trained?)"


@pytest.mark.parametrize(("command", "dist"), [("export", "ftexport"), ("upload", "fthub")])
def test_a_missing_plugin_command_names_its_distribution_in_one_line(command, dist):
    result = run_ft(command, "runs/x", env={"FT_PLUGINS": f"-{dist}"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: `ft {command}` is added by the {dist} plugin distribution, which is not installed: "
        f"pip install {dist} (or ./plugins/{dist} from ft's repository)"]


def test_an_unknown_command_gets_a_did_you_mean():
    result = run_ft("nots")
    assert result.returncode == 2 and "did you mean 'notes'" in result.stderr.lower()


BROKEN_METHOD = """
import sys
from ftcore import MethodSpec, hookimpl

FTCORE_PLUGIN_API = 3


@hookimpl
def register_methods():
    return [MethodSpec("breaks", "raises in setup_peft"), MethodSpec("exits", "calls sys.exit in setup_peft")]


@hookimpl
def setup_peft(model, method):
    if method == "exits":
        sys.exit(4)
    raise ValueError("plugin bug")
"""


@pytest.mark.parametrize(("method", "said"), [("breaks", "ValueError: plugin bug"), ("exits", "SystemExit(4) (the plugin called sys.exit)")])
def test_a_plugin_bug_in_a_work_hook_is_named_in_one_line(fake_site, tiny_model_dir, tmp_path, method, said):
    fake_site.add("ft-broken", BROKEN_METHOD, entry="broken")
    data = write_jsonl(tmp_path / "train.jsonl", PAIRS)
    config = tmp_path / "cfg.yaml"
    config.write_text(f"model: {tiny_model_dir}\nmethod: {method}\noutput_dir: {tmp_path / 'run'}\n"
                      f"data: {{train: {data}, max_seq_len: 32, cache_dir: {tmp_path / 'cache'}}}\n")
    result = run_ft("train", "--config", str(config), env={"PYTHONPATH": str(fake_site)})
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last == f"error: plugin 'broken' (ft-broken 1.0) failed in setup_peft: {said}", result.stderr[-2000:]
    assert not (tmp_path / "run").exists()
