"""Never lose a run (issue 17), through the CLI in subprocesses on the tiny model.

- The run lock: a second `ft train` on the same output fails at once naming the holder; a stale lock is taken over.
- `--overwrite` replaces only an ft run; `output_dir: .` and `/` are refused; nothing of the user's is touched.
- After an interrupted `--overwrite` the message says what `--resume` and `--overwrite` each do.
- SIGTERM before the training loop: one line, exit 143, no staging directory, no lock left.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from train_helpers import run_config, write_config, write_reversal_text

from ftcore.testing.process import run_ft


@pytest.fixture
def setup(tmp_path: Path, tiny_model_dir: Path):
    data = write_reversal_text(tmp_path / "train.jsonl", n=8)
    env = {"FT_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    return tmp_path, data, env


def errors_of(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def one_error(result: subprocess.CompletedProcess) -> str:
    lines = errors_of(result)
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "unexpected" not in lines[0], lines[0]
    return lines[0]


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_second_run_on_same_output_fails_at_once(setup, tiny_model_dir: Path) -> None:
    tmp_path, data, env = setup
    output = tmp_path / "run"
    config = write_config(tmp_path / "c.yaml", run_config(tiny_model_dir, data, output, max_steps=100_000, save_steps=100_000))
    first = subprocess.Popen([sys.executable, "-m", "ftcore", "train", "-c", str(config)], env={**os.environ, **env},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(tmp_path / ".run.ft-lock", first)
        second = run_ft("train", "-c", str(config), env=env)
        # At once: while the first run (too long to finish; killed below) still holds the lock, not after waiting
        # for it. No clock: a loaded machine can take long just to start a process.
        assert second.returncode == 1 and first.poll() is None
        line = one_error(second)
        assert "is in use by another ft train" in line
        assert f"host {socket.gethostname()}, pid {first.pid}, started " in line
    finally:
        first.send_signal(signal.SIGTERM)
        out, err = first.communicate(timeout=300)
    assert first.returncode == 143, err
    # The first run's clean-up removed its lock: the directory is free again.
    assert not (tmp_path / ".run.ft-lock").exists()


def test_stale_lock_of_dead_process_is_taken_over(setup, tiny_model_dir: Path) -> None:
    tmp_path, data, env = setup
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = tmp_path / ".run.ft-lock"
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid, "started": time.time() - 60}))
    output = tmp_path / "run"
    config = write_config(tmp_path / "c.yaml", run_config(tiny_model_dir, data, output, max_steps=1, save_steps=1000))
    result = run_ft("train", "-c", str(config), env=env)
    assert result.returncode == 0, result.stderr
    assert (output / "ft_run.json").is_file() and not lock.exists()


def test_overwrite_refuses_a_directory_that_is_not_an_ft_run(setup, tiny_model_dir: Path) -> None:
    tmp_path, data, env = setup
    output = tmp_path / "project"
    output.mkdir()
    (output / "notes.txt").write_text("mine")
    config = write_config(tmp_path / "c.yaml", run_config(tiny_model_dir, data, output))
    plain = run_ft("train", "-c", str(config), env=env)
    assert plain.returncode == 1 and "--overwrite" not in one_error(plain)
    forced = run_ft("train", "-c", str(config), "--overwrite", env=env)
    assert forced.returncode == 1
    assert "is not an ft run" in one_error(forced)
    assert (output / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir() if "project" in p.name) == ["project"]


@pytest.mark.parametrize("where", [".", "/"])
def test_output_dir_cwd_or_root_is_refused(setup, tiny_model_dir: Path, where: str) -> None:
    tmp_path, data, env = setup
    work = tmp_path / "work"
    work.mkdir()
    (work / "source.py").write_text("keep me")
    config = write_config(work / "c.yaml", run_config(tiny_model_dir, data, Path(where)))
    for extra in ([], ["--overwrite"]):
        result = run_ft("train", "-c", "c.yaml", *extra, env=env, cwd=work)
        assert result.returncode == 1
        line = one_error(result)
        assert "choose a new directory" in line and "--overwrite" not in line
    assert sorted(p.name for p in work.iterdir()) == ["c.yaml", "source.py"] and config.is_file()


def test_interrupted_overwrite_says_what_each_choice_does(setup, tiny_model_dir: Path) -> None:
    tmp_path, data, env = setup
    output = tmp_path / "run"
    output.mkdir()
    (output / "ft_run.json").write_text(json.dumps({"status": "complete"}))
    checkpoint = tmp_path / ".run.tmp-partial" / "checkpoints" / "checkpoint-3"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": 3}))
    config = write_config(tmp_path / "c.yaml", run_config(tiny_model_dir, data, output))
    result = run_ft("train", "-c", str(config), env=env)
    assert result.returncode == 1
    line = one_error(result)
    assert "holds a finished run and .run.tmp-partial an unfinished one (checkpoint at step 3)" in line
    assert "--resume continues the unfinished run and replaces the finished one when it completes" in line
    assert "--overwrite discards the unfinished run" in line and "another --output-dir" in line


def test_sigterm_before_training_cleans_up(setup, tiny_model_dir: Path) -> None:
    tmp_path, data, env = setup
    output = tmp_path / "run"
    config = write_config(tmp_path / "c.yaml", run_config(tiny_model_dir, data, output, max_steps=2))
    process = subprocess.Popen([sys.executable, "-m", "ftcore", "train", "-c", str(config)], env={**os.environ, **env},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(tmp_path / ".run.ft-lock", process)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 143, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "interrupted by SIGTERM before training started; nothing was saved" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir() if "run" in p.name) == []


def test_sigterm_converted_by_a_library_is_still_an_interruption() -> None:
    """transformers' lazy imports turn any failure into ModuleNotFoundError; a SIGTERM there is still one line, 143."""
    from ftcore.run.guard import Interrupted, TerminateGuard

    def lazy_import() -> None:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises here
        except BaseException as exc:
            raise ModuleNotFoundError("Could not import module 'LlamaConfig'") from exc

    with pytest.raises(Interrupted) as caught, TerminateGuard():
        lazy_import()
    assert caught.value.exit_code == 143
    assert str(caught.value) == ("interrupted by SIGTERM before training started; nothing was saved; run the same "
                                 "ft train command again")
    # Without a signal, the library's error passes through unchanged.
    with pytest.raises(ModuleNotFoundError), TerminateGuard():
        raise ModuleNotFoundError("missing")


def test_sigterm_swallowed_by_a_library_stops_the_run_at_the_next_phase() -> None:
    """An exception raised inside a ``__del__`` is printed and dropped: the run must not go on to train."""
    from ftcore.run.guard import Interrupted, TerminateGuard

    class Finalizer:
        def __del__(self) -> None:
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)  # the handler raises here
            except BaseException:  # what Python does with an exception in __del__, minus the printing
                pass

    with pytest.raises(Interrupted) as caught, TerminateGuard() as guard:
        Finalizer()
        guard.phase = "training"
    assert caught.value.exit_code == 143
    assert str(caught.value).startswith("interrupted by SIGTERM before training started; nothing was saved")


def test_the_sigterm_handler_comes_after_torch_is_imported() -> None:
    # torch's import runs C++ that turns a Python exception into a C++ one; raised by the handler in there, it
    # aborted `ft train` (SIGABRT, "Rust cannot catch foreign exceptions", no message, 2 of ~170 early SIGTERMs).
    # SIGINT is left as it was: Python's handler, or ignored when started in the background (nohup ... &).
    code = ("import signal, sys\n"
            "from ftcore.run.guard import TerminateGuard\n"
            "assert 'torch' not in sys.modules\n"
            "before = signal.getsignal(signal.SIGINT)\n"
            "with TerminateGuard():\n"
            "    assert 'torch' in sys.modules and signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL\n"
            "    assert signal.getsignal(signal.SIGINT) is before\n"
            "print('ok')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_resume_of_a_finished_run_trains_nothing(setup, tiny_model_dir: Path) -> None:
    from safetensors.torch import load_file

    tmp_path, data, env = setup
    output = tmp_path / "run"
    config = write_config(tmp_path / "c.yaml", run_config(tiny_model_dir, data, output, max_steps=2, save_steps=2,
                                                                   logging_steps=1))
    assert run_ft("train", "-c", str(config), env=env).returncode == 0
    before = load_file(output / "adapter_model.safetensors")
    result = run_ft("train", "-c", str(config), "--resume", env=env)
    assert result.returncode == 0, result.stderr
    assert "checkpoint-2 is at the last step (2): nothing left to train" in result.stderr
    assert "step 3/" not in result.stderr and "(step 2, train loss" in result.stdout
    after = load_file(output / "adapter_model.safetensors")
    assert before.keys() == after.keys() and all((before[k] == after[k]).all() for k in before)
    assert [json.loads(line).get("step") for line in (output / "metrics.jsonl").read_text().splitlines()][-1] == 2
    assert json.loads((output / "ft_run.json").read_text())["global_step"] == 2


def test_resume_with_changed_config_or_data(setup, tiny_model_dir: Path) -> None:
    """Optimisation or data changes are refused with the keys listed; safe ones are allowed and recorded."""
    tmp_path, data, env = setup
    output = tmp_path / "run"
    config = write_config(tmp_path / "c.yaml", run_config(tiny_model_dir, data, output, max_steps=1, save_steps=1))
    assert run_ft("train", "-c", str(config), env=env).returncode == 0

    changed = run_ft("train", "-c", str(config), "--resume", "--set", "training.learning_rate=0.1",
                     "--set", "training.max_steps=2", env=env)
    assert changed.returncode == 2
    line = one_error(changed)
    assert "training.learning_rate (0.005 -> 0.1)" in line and "max_steps" not in line
    assert "--allow-config-change" in line

    write_reversal_text(data, n=8, seed=1)
    moved = run_ft("train", "-c", str(config), "--resume", "--set", "training.max_steps=2", env=env)
    assert moved.returncode == 2 and "data.fingerprint (" in one_error(moved)

    allowed = run_ft("train", "-c", str(config), "--resume", "--allow-config-change", "--set", "training.max_steps=2",
                     "--set", "training.logging_steps=1", env=env)
    assert allowed.returncode == 0, allowed.stderr
    assert "--allow-config-change: continuing with changed data.fingerprint" in allowed.stderr
    manifest = json.loads((output / "ft_run.json").read_text())
    assert manifest["global_step"] == 2
    assert set(manifest["resume_changes"]) == {"training.max_steps", "training.logging_steps", "data.fingerprint"}
    assert manifest["resume_changes"]["training.max_steps"] == [1, 2]


def test_disk_full_names_path_and_space_and_stays_resumable(setup, tiny_model_dir: Path, fake_site) -> None:
    """A plugin makes writing metrics.jsonl fail with ENOSPC after training: one line, then --resume finishes."""
    tmp_path, data, env = setup
    fake_site.add("ft-fulldisk", """
        import errno, os
        import ftcore.artifacts.rundir

        original = ftcore.artifacts.rundir.write_metrics

        def full(path, log_history):
            if os.environ.get("FT_TEST_DISK_FULL"):
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
            original(path, log_history)

        ftcore.artifacts.rundir.write_metrics = full
        """)
    output = tmp_path / "run"
    config = write_config(tmp_path / "c.yaml", run_config(tiny_model_dir, data, output, max_steps=2, save_steps=2))
    env = {**env, "PYTHONPATH": str(fake_site)}
    result = run_ft("train", "-c", str(config), env={**env, "FT_TEST_DISK_FULL": "1"})
    assert result.returncode == 1
    line = one_error(result)
    checkpoint = tmp_path / ".run.tmp-partial" / "checkpoints" / "checkpoint-2"
    assert line.startswith(f"error: disk full while writing {tmp_path / '.run.tmp-partial' / 'metrics.jsonl'} (")
    assert f"GiB free there); free some space, then run the same ft train command with --resume to continue from {checkpoint}" in line
    assert not output.exists() and not (tmp_path / ".run.ft-lock").exists()
    resumed = run_ft("train", "-c", str(config), "--resume", env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert "nothing left to train" in resumed.stderr and (output / "metrics.jsonl").is_file()


@pytest.mark.parametrize(("rank", "lines"), [("0", 1), ("1", 0)])
def test_interruption_is_reported_once_by_rank_zero(rank: str, lines: int, tmp_path: Path, monkeypatch, capsys) -> None:
    import ftcore.jobs.train
    from ftcore.cli import main
    from ftcore.run.guard import Interrupted

    def interrupted(*args, **kwargs):
        raise Interrupted("training interrupted by SIGTERM at step 3; ...", signal.SIGTERM)

    monkeypatch.setattr(ftcore.jobs.train, "run_training", interrupted)
    monkeypatch.setenv("RANK", rank)
    config = tmp_path / "c.yaml"
    config.write_text("model: m\ndata:\n  train: d.jsonl\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "-c", str(config)])
    assert exit_info.value.code == 143
    assert len([line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]) == lines
