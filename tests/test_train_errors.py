"""Bad input to `ft train`: each case fails with one clear line and leaves nothing behind."""

from __future__ import annotations

from pathlib import Path

import pytest
from train_helpers import run_config, write_config, write_reversal_text

from ftcore.cli import main

pytestmark = pytest.mark.usefixtures("single_thread")



def ft(*args: str) -> int:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    return exit_info.value.code


@pytest.fixture
def setup(tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FT_CACHE_DIR", str(tmp_path / "cache"))
    data = write_reversal_text(tmp_path / "train.jsonl", n=8)
    return tmp_path, data


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1, err
    return err[0]


def assert_nothing_written(tmp_path: Path) -> None:
    assert not [p.name for p in tmp_path.iterdir() if "run" in p.name]


def test_unknown_method(setup, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tmp_path, data = setup
    config = write_config(tmp_path / "c.yaml", run_config(tiny_model_dir, data, tmp_path / "run"))
    assert ft("train", "-c", str(config), "--method", "lorra") == 2
    line = error_line(capsys)
    assert "unknown method 'lorra'" in line and "did you mean 'lora'" in line and "installed methods:" in line
    assert_nothing_written(tmp_path)


def test_missing_model_path(setup, capsys: pytest.CaptureFixture[str]) -> None:
    tmp_path, data = setup
    missing = tmp_path / "models" / "nope"
    config = write_config(tmp_path / "c.yaml", run_config(missing, data, tmp_path / "run"))
    assert ft("train", "-c", str(config)) == 1
    assert error_line(capsys) == f"error: model path does not exist: {missing}"
    assert_nothing_written(tmp_path)


def test_corrupt_weights(setup, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    tmp_path, data = setup
    broken = tmp_path / "broken-model"
    shutil.copytree(tiny_model_dir, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(b"\x13\x00\x00\x00garbage" + weights.read_bytes()[:100])
    config = write_config(tmp_path / "c.yaml", run_config(broken, data, tmp_path / "run"))
    assert ft("train", "-c", str(config)) == 1
    line = error_line(capsys)
    assert str(weights) in line and "corrupt or truncated" in line
    assert_nothing_written(tmp_path)


def test_directory_without_weights(setup, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    tmp_path, data = setup
    empty = tmp_path / "no-weights"
    shutil.copytree(tiny_model_dir, empty)
    (empty / "model.safetensors").unlink()
    config = write_config(tmp_path / "c.yaml", run_config(empty, data, tmp_path / "run"))
    assert ft("train", "-c", str(config)) == 1
    assert "no model weights found (expected model.safetensors)" in error_line(capsys)
    assert_nothing_written(tmp_path)


def test_finished_output_dir_is_kept(setup, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tmp_path, data = setup
    output = tmp_path / "run"
    config = write_config(tmp_path / "c.yaml", run_config(tiny_model_dir, data, output, max_steps=2, save_steps=100))
    assert ft("train", "-c", str(config)) == 0
    before = {p.name: p.stat().st_mtime_ns for p in output.rglob("*")}
    capsys.readouterr()

    assert ft("train", "-c", str(config)) == 1
    line = error_line(capsys)
    assert f"{output} already holds a finished run" in line and "--overwrite" in line and "--resume" in line
    assert {p.name: p.stat().st_mtime_ns for p in output.rglob("*")} == before
    assert sorted(p.name for p in tmp_path.iterdir() if "run" in p.name) == ["run"]


def test_output_dir_is_a_file(setup, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tmp_path, data = setup
    (tmp_path / "run").write_text("not a directory")
    config = write_config(tmp_path / "c.yaml", run_config(tiny_model_dir, data, tmp_path / "run"))
    assert ft("train", "-c", str(config)) == 1
    assert "is a file" in error_line(capsys)
    assert (tmp_path / "run").read_text() == "not a directory"
