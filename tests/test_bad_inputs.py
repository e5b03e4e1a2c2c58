"""The bad-input corpus: every case through the real CLI (`python -m ftcore ...` in a subprocess).

Each case must end with exactly one `error: ...` line on stderr (no traceback, no other noise under
`ft -q`) that names the problem and where it is, a non-zero exit, and no run directory or staging
directory left behind. Library-level checks of the same inputs live in test_data_errors.py and
test_train_errors.py; these hold the CLI to them.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import textwrap
from pathlib import Path

import pytest
from train_helpers import run_config, write_config, write_reversal_text

from ftcore.testing.process import run_ft

# Progress bars would share stderr with the error line; tqdm is not what these tests are about.
QUIET_ENV = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_HUB_OFFLINE": "1"}


class Case:
    """A scratch directory with a valid config, data and model; each test breaks one thing."""

    def __init__(self, root: Path, model: Path) -> None:
        self.root = root
        self.model = model
        self.output = root / "out" / "run"
        self.output.parent.mkdir()
        self.data = write_reversal_text(root / "train.jsonl", n=16)
        self.env = {**QUIET_ENV, "FT_CACHE_DIR": str(root / "cache")}

    def file(self, name: str, content: str | bytes) -> Path:
        path = self.root / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(textwrap.dedent(content), encoding="utf-8")
        return path

    def config(self, data: Path | None = None, model: Path | None = None, **training) -> Path:
        raw = run_config(model or self.model, data or self.data, self.output, **{"max_steps": 2, **training})
        return write_config(self.root / "config.yaml", raw)

    def train(self, *args: str, config: Path | None = None, preexec=None) -> str:
        """Run `ft -q train`; return its one error line after checking exit code, stderr and leftovers."""
        argv = ["-q", "train", "-c", str(config or self.config()), *args]
        return self.check(_run_with(preexec, argv, self.env))

    def check(self, result) -> str:
        """The error: one line, or a header line and one ``  - problem`` line per config problem."""
        assert result.returncode != 0, result.stdout
        lines = result.stderr.strip().splitlines()
        assert "Traceback" not in result.stderr
        assert lines and lines[0].startswith("error: "), result.stderr
        assert all(line.startswith("  - ") for line in lines[1:]), result.stderr
        leftovers = [p.name for p in self.output.parent.iterdir()]
        assert leftovers == [], f"left behind: {leftovers}"
        return "\n".join(lines)


def _run_with(preexec, argv: list[str], env: dict[str, str]):
    """ftcore.testing.process.run_ft, with an optional ``preexec_fn`` for the child."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "ftcore", *argv], capture_output=True, text=True,
                          env={**os.environ, **env}, preexec_fn=preexec, timeout=600)


@pytest.fixture
def case(tmp_path: Path, tiny_model_dir: Path) -> Case:
    return Case(tmp_path, tiny_model_dir)


# ----------------------------------------------------------------------------- data files


def test_malformed_json_line(case: Case) -> None:
    bad = case.file("bad.jsonl", '{"text": "fine"}\n{"text": "broken"\n')
    line = case.train(config=case.config(bad))
    assert line.startswith(f"error: {bad}:2: malformed JSON line")


def test_json_that_is_not_a_list(case: Case) -> None:
    bad = case.file("bad.json", '"just a string"\n')
    assert case.train(config=case.config(bad)) == (
        f'error: {bad}: expected a JSON list of records, {{"data": [...]}} or one record object, got a string'
    )


def test_missing_required_field(case: Case) -> None:
    bad = case.file("alpaca.jsonl", '{"instruction": "a", "output": "b"}\n{"instruction": "c"}\n')
    assert case.train(config=case.config(bad)) == f"error: {bad}:2: field output missing (format alpaca)"


def test_list_where_a_string_is_expected(case: Case) -> None:
    bad = case.file("alpaca.jsonl", '{"instruction": "a", "output": ["b", "c"]}\n')
    assert case.train(config=case.config(bad)) == (
        f"error: {bad}:1: field output expected a string, got list ['b', 'c'] (format alpaca)"
    )


def test_empty_file(case: Case) -> None:
    bad = case.file("empty.jsonl", "")
    assert case.train(config=case.config(bad)) == f"error: {bad}: no records (empty dataset)"


def test_every_example_too_long_with_drop_policy(case: Case) -> None:
    line = case.train("--set", "data.max_seq_len=8", "--set", "data.overflow=drop")
    assert line.startswith("error: train data: every example was dropped: 16 longer than max_seq_len (8)")
    assert "data.overflow: truncate" in line


def test_non_utf8_bytes(case: Case) -> None:
    bad = case.file("latin1.jsonl", b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    assert case.train(config=case.config(bad)) == (
        f"error: {bad}:2: not UTF-8 text (invalid byte 0xe9 at byte offset 28) (re-save the file as UTF-8)"
    )


def test_csv_with_a_ragged_row(case: Case) -> None:
    bad = case.file("rag.csv", "prompt,completion\na,b\nc,d,e\n")
    assert case.train(config=case.config(bad)) == f"error: {bad}:3: CSV row has 3 fields but the header has 2"


# ----------------------------------------------------------------------------- names and config


def test_unknown_format(case: Case) -> None:
    line = case.train("--set", "data.format=alpacca")
    assert "data.format: unknown format 'alpacca' (did you mean 'alpaca'?)" in line and "installed formats:" in line


def test_unknown_method(case: Case) -> None:
    line = case.train("--method", "lorra")
    assert "method: unknown method 'lorra' (did you mean 'lora'?)" in line and "installed methods:" in line


def test_unknown_metric(case: Case) -> None:
    result = run_ft("-q", "evaluate", str(case.model), "--data", str(case.data), "--metrics", "rouge,blue", env=case.env)
    line = case.check(result)
    assert line.startswith("error: unknown metric 'blue' (did you mean 'bleu'?); installed metrics:")


def test_unknown_report_to(case: Case) -> None:
    config = case.config(report_to=["wandbb"])
    line = case.train(config=config)
    assert line.startswith(f"error: invalid config: {config}: training.report_to: unknown tracker 'wandbb' (did you mean 'wandb'?)")


def test_config_typo(case: Case) -> None:
    config = case.config(learnig_rate=0.1)
    assert case.train(config=config) == (
        f"error: invalid config: {config}: training.learnig_rate: unknown key (did you mean 'learning_rate'?)"
    )


def test_config_wrong_types_are_all_reported(case: Case) -> None:
    config = case.config(batch_size="four", max_steps=[3])
    lines = case.train(config=config).splitlines()
    assert lines[0] == f"error: invalid config: {config}: 2 problems:"
    assert any(line.startswith("  - training.batch_size: Input should be a valid integer") and "(got 'four')" in line
               for line in lines[1:])
    assert any(line.startswith("  - training.max_steps: Input should be a valid integer") for line in lines[1:])


def test_packing_with_a_format_that_forbids_it(case: Case, fake_site) -> None:
    fake_site.add("ft-nopack", """
        from ftcore import FormatSpec, hookimpl

        @hookimpl
        def register_dataset_formats():
            return [FormatSpec("nopack", "examples that must stay apart", columns=("pair",), packing=False)]
    """)
    case.env["PYTHONPATH"] = str(fake_site)
    line = case.train("--set", "data.format=nopack", "--set", "data.packing=true")
    assert line == "error: invalid config: data.packing: format 'nopack' cannot be packed; set data.packing: false"


def test_qlora_with_full_options(case: Case) -> None:
    line = case.train("--method", "qlora", "--set", "method_options.freeze_layers=1")
    assert line == ("error: invalid config: method_options.freeze_layers: not an option of method 'qlora' but of "
                    "'full'; qlora and full cannot be combined, choose one method")


# ----------------------------------------------------------------------------- models


def test_model_path_that_does_not_exist(case: Case) -> None:
    missing = case.root / "models" / "nope"
    assert case.train(config=case.config(model=missing)) == f"error: model path does not exist: {missing}"


def test_directory_with_no_weights(case: Case) -> None:
    empty = case.root / "no-weights"
    shutil.copytree(case.model, empty)
    (empty / "model.safetensors").unlink()
    line = case.train(config=case.config(model=empty))
    assert line == f"error: {empty}: no model weights found (expected model.safetensors)"


def test_corrupt_safetensors(case: Case) -> None:
    broken = case.root / "broken"
    shutil.copytree(case.model, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    line = case.train(config=case.config(model=broken))
    assert line.startswith(f"error: {weights}: cannot read safetensors weights") and "corrupt or truncated" in line


def test_adapter_whose_base_does_not_match(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Resuming a LoRA checkpoint trained on a narrower model names the tensor, both shapes and the base."""
    from ftcore.config.schema import build_config
    from ftcore.jobs.train import run_training
    from ftcore.testing.fixtures import build_tiny_llama

    monkeypatch.setenv("FT_CACHE_DIR", case.env["FT_CACHE_DIR"])
    narrow = build_tiny_llama(tmp_path / "narrow", case.model, hidden_size=32, intermediate_size=64)
    other = tmp_path / "other-run"
    run_training(build_config(run_config(narrow, case.data, other, max_steps=1, save_steps=1)))
    checkpoint = other / "checkpoints" / "checkpoint-1"
    # The recorded config already names the other model; allowed anyway, the tensors still cannot fit.
    line = case.train("--resume", str(checkpoint))
    assert line.startswith(f"error: --resume: the run in {other} was trained with another config or data: ")
    assert f"model ({json.dumps(str(narrow))} -> {json.dumps(str(case.model))})" in line
    result = run_ft("-q", "train", "-c", str(case.config()), "--resume", str(checkpoint), "--allow-config-change",
                    env=case.env)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    # Besides the error, only the warning that --allow-config-change asked for.
    warning, line = result.stderr.strip().splitlines()
    assert warning.startswith("--allow-config-change: continuing with changed model")
    assert line.startswith(f"error: checkpoint {checkpoint} does not match the model: ")
    assert " there but " in line and " in the model; " in line
    assert f"it was trained on {narrow}" in line


def test_tokenizer_without_chat_template_when_one_is_needed(case: Case) -> None:
    plain = case.root / "no-template"
    shutil.copytree(case.model, plain)
    (plain / "chat_template.jinja").unlink()
    config_file = plain / "tokenizer_config.json"
    tokenizer_config = json.loads(config_file.read_text())
    tokenizer_config.pop("chat_template", None)
    config_file.write_text(json.dumps(tokenizer_config))
    chats = case.file("chats.jsonl", json.dumps({"messages": [{"role": "user", "content": "hi"},
                                                              {"role": "assistant", "content": "hello"}]}) + "\n")
    line = case.train("--set", "data.chat_template=tokenizer", config=case.config(chats, model=plain))
    assert line == "error: data.chat_template: the tokenizer has no chat template (use one of chatml, alpaca, chatml-tools, chatml-think or a Jinja file)"


# ----------------------------------------------------------------------------- output location


def test_output_directory_that_is_a_file(case: Case) -> None:
    target = case.root / "taken"
    target.write_text("not a directory")
    assert case.train("-o", str(target)) == f"error: output directory {target} is a file; choose another --output-dir"
    assert target.read_text() == "not a directory"


def _without_dac_override() -> None:
    """preexec_fn: drop CAP_DAC_OVERRIDE so that root, too, obeys a directory's permission bits."""
    if os.geteuid() == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        pr_capbset_drop, cap_dac_override = 24, 1
        if libc.prctl(pr_capbset_drop, cap_dac_override, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def test_read_only_output_location(case: Case) -> None:
    locked = case.output.parent
    locked.chmod(0o555)
    try:
        line = case.train(preexec=_without_dac_override)
    finally:
        locked.chmod(0o755)
    assert line == (f"error: output directory {case.output} cannot be written: {locked}: Permission denied; "
                    "choose another --output-dir")


# ----------------------------------------------------------------------------- user-caused, never "unexpected"


@pytest.mark.parametrize(("settings", "expected"), [
    ({"seed": 2**32}, "seed: Input should be less than or equal to 4294967295"),
    ({"training": {"epochs": float("inf"), "max_steps": -1}}, "training.epochs: Input should be a finite number"),
    ({"training": {"max_steps": -5}}, "training.max_steps: must be a positive number of steps, or -1"),
    ({"training": {"lr_scheduler": "cosin"}}, "training.lr_scheduler: unknown scheduler 'cosin' (did you mean 'cosine'?)"),
    ({"training": {"optimizer": "adamw_troch"}},
     "training.optimizer: unknown optimizer 'adamw_troch' (did you mean 'adamw_torch'?)"),
    ({"training": {"report_to": ["wandb"]}}, "training.report_to: tracker 'wandb' is not installed; pip install wandb"),
])
def test_user_caused_config_problems_fail_at_validate(case: Case, settings: dict, expected: str) -> None:
    raw = run_config(case.model, case.data, case.output, max_steps=2)
    for key, value in settings.items():
        raw[key] = {**raw[key], **value} if isinstance(value, dict) else value
    config = write_config(case.root / "config.yaml", raw)
    for args in (["config", "validate", str(config)], ["train", "-c", str(config)]):
        result = run_ft("-q", *args, env=case.env)
        assert result.returncode == 2
        line = case.check(result)
        assert line.startswith(f"error: invalid config: {config}: ") and expected in line, line


def test_duplicate_yaml_key_names_key_and_lines(case: Case) -> None:
    config = case.file("dup.yaml", f"""\
        model: {case.model}
        seed: 1
        data:
          train: {case.data}
        seed: 2
        """)
    result = run_ft("-q", "config", "validate", str(config), env=case.env)
    assert result.returncode == 2
    assert case.check(result) == (f"error: invalid config: {config}:5: not valid YAML: duplicate key 'seed' "
                                  "(first given on line 2)")


def test_static_scheduler_and_optimizer_names_match_transformers() -> None:
    from ftcore.config.schema import OPTIMIZERS, SCHEDULERS, transformers_names

    assert sorted(SCHEDULERS) == sorted(transformers_names("scheduler"))
    assert sorted(OPTIMIZERS) == sorted(transformers_names("optimizer"))


def test_nproc_validates_the_config_once_before_the_launcher(case: Case) -> None:
    raw = run_config(case.model, case.data, case.output, max_steps=-5)
    config = write_config(case.root / "config.yaml", raw)
    result = run_ft("-q", "train", "-c", str(config), "--nproc", "2", env=case.env)
    assert result.returncode == 2
    line = case.check(result)
    assert "training.max_steps: must be a positive number of steps" in line and "ChildFailedError" not in result.stderr


def test_deeply_nested_json(case: Case) -> None:
    deep = '{"a":' * 100_000 + "1" + "}" * 100_000
    bad = case.file("deep.jsonl", '{"text": "fine"}\n{"text": "x", "meta": ' + deep + "}\n")
    assert case.train(config=case.config(bad)) == f"error: {bad}:2: JSON nested too deeply to read; flatten the record"
    worse = case.file("deep.json", "[" + deep + "]")
    assert case.train(config=case.config(worse)) == f"error: {worse}: JSON nested too deeply to read; flatten the records"


def test_a_second_nproc_run_on_a_held_output_fails_before_the_launcher(case: Case) -> None:
    import socket

    lock = case.output.with_name(f".{case.output.name}.ft-lock")
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started": 0}))
    try:
        result = run_ft("-q", "train", "-c", str(case.config()), "--nproc", "2", env=case.env)
    finally:
        lock.unlink()
    assert result.returncode == 1 and "ChildFailedError" not in result.stderr
    assert f"is in use by another ft train (host {socket.gethostname()}, pid {os.getpid()}" in case.check(result)
