"""The CLI: fast start-up without heavy imports, --help everywhere, one-line errors."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from ftcore.cli import COMMANDS, cli
from ftcore.testing.process import run_ft

HEAVY = ("torch", "transformers", "peft", "datasets", "evaluate", "bitsandbytes", "matplotlib")


def _heavy_modules_after(args: list[str]) -> list[str]:
    code = (
        "import sys\n"
        "from ftcore.cli import main\n"
        "try:\n"
        f"    main({args!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print('HEAVY=' + ','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("HEAVY=")]
    assert line, out.stdout + out.stderr
    return [m for m in line[0][len("HEAVY="):].split(",") if m]


@pytest.mark.parametrize(
    "args",
    [["--help"], ["--version"], ["plugins"], ["plugins", "--json"], ["config", "schema"]],
)
def test_light_commands_do_not_import_heavy_libraries(args):
    assert _heavy_modules_after(args) == []


def test_config_validate_does_not_import_heavy_libraries(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: some/model\nmethod: lora\ndata:\n  train: data.jsonl\n")
    assert _heavy_modules_after(["config", "validate", str(cfg)]) == []


def test_config_import_does_not_import_heavy_libraries(tmp_path):
    peer = tmp_path / "axolotl.yml"
    peer.write_text("base_model: m\ndatasets:\n  - path: d.jsonl\n    type: alpaca\nmicro_batch_size: 2\n"
                    "trainer_args_probe: 1\n")
    assert _heavy_modules_after(["config", "import", str(peer), "-o", str(tmp_path / "ft.yaml")]) == []
    assert (tmp_path / "ft.yaml").is_file()


def test_import_cli_leaves_torch_unimported():
    out = subprocess.run(
        [sys.executable, "-c", "import sys, ftcore.cli; print('torch' in sys.modules)"], capture_output=True, text=True
    )
    assert out.stdout.strip() == "False"


def _all_commands():
    runner = CliRunner()
    names = []
    for name in COMMANDS:
        command = cli.get_command(None, name)
        if command is None:
            continue
        names.append([name])
        for sub in getattr(command, "commands", {}):
            names.append([name, sub])
    assert runner  # keep flake quiet
    return names


@pytest.mark.parametrize("path", _all_commands(), ids=lambda p: " ".join(p))
def test_help_on_every_command(path):
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_version_lists_every_plugin():
    result = run_ft("--version")
    assert result.returncode == 0
    for name in ("ftcore", "ftlora", "ftqlora", "ftfull", "ftinstruct", "ftmetrics"):
        assert name in result.stdout


def test_errors_are_one_line_and_debug_shows_traceback(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("model: m\ndata:\n  train: x.jsonl\ntraining:\n  learnin_rate: 0.1\n")
    result = run_ft("config", "validate", str(cfg))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    debug = run_ft("--debug", "config", "validate", str(cfg))
    assert debug.returncode == 2
    assert "Traceback" in debug.stderr


def test_unknown_command_is_a_usage_error():
    result = run_ft("trian")
    assert result.returncode == 2
    assert "no such command 'trian' (did you mean 'train'?)" in result.stderr
