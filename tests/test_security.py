"""Security: remote code, pickle weights, YAML tags, Hub tokens, paths; and the preflight warnings."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import pytest
import yaml
from train_helpers import run_config, write_config, write_reversal_text

from ftcore.artifacts.rundir import plan_run
from ftcore.config.schema import build_config
from ftcore.run import preflight

FAKE_TOKEN = "hf_LeakCanary0123456789abcdefFAKE"


def ft(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    full.update({"HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1", **(env or {})})
    return subprocess.run([sys.executable, "-m", "ftcore", *args], capture_output=True, text=True, env=full,
                          cwd=cwd, timeout=600)


# ----------------------------------------------------------------------------- remote code and pickle


def _model_with_remote_code(root: Path, tiny_model_dir: Path) -> tuple[Path, Path]:
    """A copy of the tiny model whose config maps AutoModelForCausalLM to a module that leaves a marker."""
    model = root / "custom-model"
    shutil.copytree(tiny_model_dir, model)
    marker = root / "remote-code-ran"
    (model / "modeling_custom.py").write_text(
        "from pathlib import Path\n"
        "from transformers import LlamaForCausalLM\n"
        f"Path({str(marker)!r}).write_text('ran')\n"
        "class CustomLlama(LlamaForCausalLM):\n    pass\n"
    )
    config = json.loads((model / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_custom.CustomLlama"}
    (model / "config.json").write_text(json.dumps(config))
    return model, marker


def test_remote_code_runs_only_when_asked(tmp_path: Path, tiny_model_dir: Path, caplog: pytest.LogCaptureFixture,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from ftcore.models.loading import load_model

    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path / "modules"))
    model_dir, marker = _model_with_remote_code(tmp_path, tiny_model_dir)
    data = write_reversal_text(tmp_path / "t.jsonl", n=2)

    caplog.set_level("WARNING", logger="ftcore")
    model = load_model(build_config(run_config(model_dir, data, tmp_path / "run")))
    assert type(model).__name__ == "LlamaForCausalLM" and not marker.exists()
    assert "trust_remote_code" not in caplog.text

    trusted = build_config({**run_config(model_dir, data, tmp_path / "run"), "trust_remote_code": True})
    model = load_model(trusted)
    assert type(model).__name__ == "CustomLlama" and marker.read_text() == "ran"
    assert f"trust_remote_code is on: code from {model_dir} will run on this machine" in caplog.text


def _model_with_unknown_type(root: Path, tiny_model_dir: Path) -> tuple[Path, Path]:
    """A copy of the tiny model with an unknown model_type whose auto_map points at code that leaves a marker.

    transformers asks on stdin whether to run such code when trust_remote_code is not passed explicitly.
    """
    model = root / "unknown-type"
    shutil.copytree(tiny_model_dir, model)
    marker = root / "remote-code-ran"
    (model / "custom_code.py").write_text(
        "from pathlib import Path\n"
        "from transformers import LlamaConfig, LlamaForCausalLM\n"
        f"Path({str(marker)!r}).write_text('ran')\n"
        "class CustomConfig(LlamaConfig):\n    model_type = 'ft-test-custom'\n"
        "class CustomLlama(LlamaForCausalLM):\n    config_class = CustomConfig\n"
    )
    config = json.loads((model / "config.json").read_text())
    config["model_type"] = "ft-test-custom"
    config["auto_map"] = {"AutoConfig": "custom_code.CustomConfig", "AutoModelForCausalLM": "custom_code.CustomLlama"}
    (model / "config.json").write_text(json.dumps(config))
    return model, marker


def test_piped_yes_never_runs_remote_code(tmp_path: Path, tiny_model_dir: Path) -> None:
    """`printf 'y\\n' | ft train` and `ft recommend` on a model with custom code: refused, nothing read from stdin."""
    model_dir, marker = _model_with_unknown_type(tmp_path, tiny_model_dir)
    data = write_reversal_text(tmp_path / "t.jsonl", n=4)
    config = write_config(tmp_path / "c.yaml", run_config(model_dir, data, tmp_path / "run", max_steps=1))
    env = {"FT_CACHE_DIR": str(tmp_path / "cache"), "HF_MODULES_CACHE": str(tmp_path / "modules")}
    for args in (["train", "-c", str(config)], ["recommend", "--model", str(model_dir), "--memory", "8"]):
        result = subprocess.run([sys.executable, "-m", "ftcore", *args], input="y\ny\ny\n", capture_output=True,
                                text=True, env={**os.environ, "HF_HUB_OFFLINE": "1", **env}, timeout=600)
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert result.returncode == 1 and len(errors) == 1, result.stderr
        assert "unexpected" not in errors[0] and "custom code" in errors[0], errors[0]
        assert "[y/N]" not in result.stdout + result.stderr
        assert not marker.exists()
    assert not (tmp_path / "run").exists()


def test_pickle_weights_need_allow_pickle(tmp_path: Path, tiny_model_dir: Path) -> None:
    import torch
    from safetensors.torch import load_file

    from ftcore.models.loading import LoadOptions, load_pretrained

    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_model_dir, pickled)
    weights = pickled / "model.safetensors"
    torch.save(load_file(str(weights)), pickled / "pytorch_model.bin")
    weights.unlink()
    data = write_reversal_text(tmp_path / "t.jsonl", n=2)
    config = write_config(tmp_path / "c.yaml", run_config(pickled, data, tmp_path / "out" / "run"))

    result = ft("-q", "train", "-c", str(config), env={"FT_CACHE_DIR": str(tmp_path / "cache")})
    assert result.returncode == 1 and result.stderr.strip().splitlines() == [
        f"error: {pickled}: weights are only in pickle format (pytorch_model.bin), which can run code when loaded; "
        "set allow_pickle: true if you trust this file, or convert it to safetensors"
    ]
    assert not (tmp_path / "out" / "run").exists()
    model = load_pretrained(str(pickled), LoadOptions(allow_pickle=True))
    assert sum(p.numel() for p in model.parameters()) > 0


def test_index_pointing_at_pickle_shards_needs_allow_pickle(tmp_path: Path, tiny_model_dir: Path) -> None:
    """A safetensors-named index whose weight_map points at a .bin shard is pickle all the same."""
    import torch
    from safetensors.torch import load_file

    model = tmp_path / "indexed"
    shutil.copytree(tiny_model_dir, model)
    weights = load_file(str(model / "model.safetensors"))
    (model / "model.safetensors").unlink()
    shard = "pytorch_model-00001-of-00001.bin"
    torch.save(weights, model / shard)
    index = {"metadata": {}, "weight_map": dict.fromkeys(weights, shard)}
    (model / "model.safetensors.index.json").write_text(json.dumps(index))
    data = write_reversal_text(tmp_path / "t.jsonl", n=2)
    config = write_config(tmp_path / "c.yaml", run_config(model, data, tmp_path / "run"))
    result = ft("-q", "train", "-c", str(config), env={"FT_CACHE_DIR": str(tmp_path / "cache")})
    assert result.returncode == 1 and result.stderr.strip().splitlines() == [
        f"error: {model}: weights are only in pickle format ({shard}), which can run code when loaded; "
        "set allow_pickle: true if you trust this file, or convert it to safetensors"
    ]
    assert "weights_only" not in result.stderr and not (tmp_path / "run").exists()


def test_yaml_python_tags_are_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    config = tmp_path / "evil.yaml"
    config.write_text(f"model: x\ndata:\n  train: !!python/object/apply:os.system ['touch {marker}']\n")
    result = ft("train", "-c", str(config))
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1
    assert lines[0].startswith(f"error: invalid config: {config}:3: not valid YAML") and not marker.exists()


# ----------------------------------------------------------------------------- tokens


def test_hub_token_never_leaks(tmp_path: Path, tiny_model_dir: Path) -> None:
    """A recognisable fake token in HF_TOKEN appears in no output and no file of a run (fthub's tests check an
    upload and its failures the same way)."""
    data = write_reversal_text(tmp_path / "train.jsonl", n=8)
    run = tmp_path / "run"
    config = write_config(tmp_path / "c.yaml", run_config(tiny_model_dir, data, run, max_steps=2, save_steps=1,
                                                          logging_steps=1))
    env = {"HF_TOKEN": FAKE_TOKEN, "HF_HOME": str(tmp_path / "hf-home"), "FT_CACHE_DIR": str(tmp_path / "cache")}
    result = ft("-v", "train", "-c", str(config), env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert FAKE_TOKEN not in result.stdout + result.stderr
    written = [p for p in tmp_path.rglob("*") if p.is_file() and not p.is_symlink()]
    assert any(p.name == "ft_run.json" for p in written) and any(p.name == "metrics.jsonl" for p in written)
    assert [str(p) for p in written if FAKE_TOKEN.encode() in p.read_bytes()] == []


def test_tokens_are_redacted_from_errors_and_logs(tmp_path: Path) -> None:
    """The user's token and anything shaped like a Hub token never reach the terminal, even inside a message."""
    import logging

    from ftcore.util.logs import setup_logging

    own = "my-own-secret-token-42"
    shaped = "hf_SomebodyElses0123456789abcdef"
    for debug in ([], ["--debug"]):
        result = ft(*debug, "train", "-c", str(tmp_path / f"{own}-{shaped}.yaml"), env={"HF_TOKEN": own})
        assert result.returncode == 2 and "hf_***-hf_***.yaml" in result.stderr, result.stderr
        assert own not in result.stderr + result.stdout and shaped not in result.stderr + result.stdout

    setup_logging(0)
    handler = logging.getLogger("ftcore").handlers[0]
    record = logging.LogRecord("ftcore.x", logging.WARNING, __file__, 1, "server said: %s", (f"bad {shaped}",), None)
    assert handler.format(record) == "server said: bad hf_***"


# ----------------------------------------------------------------------------- paths


def test_hostile_names_from_configs_write_nothing_outside(tmp_path: Path, tiny_model_dir: Path) -> None:
    """``../../x`` as a format, a checkpoint to resume or a plugin name: one error line, nothing written."""
    sandbox = tmp_path / "a" / "b"
    sandbox.mkdir(parents=True)
    data = write_reversal_text(sandbox / "train.jsonl", n=4)
    config = write_config(sandbox / "c.yaml", run_config(tiny_model_dir, data, sandbox / "run"))
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    attempts = [
        ft("-q", "train", "-c", str(config), "--set", "data.format=../../x", cwd=sandbox),
        ft("-q", "train", "-c", str(config), "--resume", "../../x", cwd=sandbox),
        ft("-q", "plugin", "new", "../../x", "--kind", "method", cwd=sandbox),
    ]
    for result in attempts:
        lines = result.stderr.strip().splitlines()
        assert result.returncode != 0 and len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


# ----------------------------------------------------------------------------- preflight


@pytest.fixture
def plan_and_config(tmp_path: Path, tiny_model_dir: Path):
    data = write_reversal_text(tmp_path / "t.jsonl", n=2)
    config = build_config(run_config(tiny_model_dir, data, tmp_path / "out" / "run", "full"))
    return config, plan_run(config.output_dir)


Usage = namedtuple("Usage", "total used free")


def test_preflight_warns_about_disk_space_with_numbers(plan_and_config, tiny_model_dir: Path,
                                                       monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    from ftcore.config.schema import validate_run_config

    config, plan = plan_and_config
    spec, options = validate_run_config(config)
    assert not [w for w in preflight.preflight(config, spec, options, plan) if "disk" in w]  # plenty of room here

    weights = (tiny_model_dir / "model.safetensors").stat().st_size
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10 * 2**20, 10 * 2**20 - 2**20, 2**20))
    caplog.set_level("WARNING", logger="ftcore")
    warnings = preflight.preflight(config, spec, options, plan)
    needed = 3 * weights * (config.training.save_total_limit + 1) + weights
    expected = (f"preflight: 1.0 MB free on the disk of {plan.output.parent.parent}, but this run may write "
                f"{needed / 2**20:.1f} MB (model weights {weights / 2**20:.1f} MB, 3x per full checkpoint)")
    assert len(warnings) == 1 and warnings[0].startswith(expected)
    assert expected in caplog.text


def test_preflight_warns_about_memory_with_numbers(plan_and_config, monkeypatch: pytest.MonkeyPatch) -> None:
    import psutil

    from ftcore.config.schema import validate_run_config
    from ftcore.models import estimate

    config, plan = plan_and_config
    spec, options = validate_run_config(config)
    Memory = namedtuple("Memory", "total available")
    monkeypatch.setattr(psutil, "virtual_memory", lambda: Memory(2**30, 100 * 2**20))
    warnings = preflight.preflight(config, spec, options, plan)
    assert len(warnings) == 1
    shape = estimate.model_shape(config.model)
    setup = estimate.Setup("full", 4, 64, False, "float32", "fp32", rank=None, optimizer="adamw_torch")
    needed = estimate.estimate(shape, setup).total
    assert warnings[0].startswith(
        f"preflight: this run is estimated to need {needed / 2**30:.1f} GB of cpu memory (full, batch 4 x 64 tokens) "
        "but 100.0 MB is available"
    )


def test_preflight_never_fails_a_run(plan_and_config, monkeypatch: pytest.MonkeyPatch) -> None:
    config, plan = plan_and_config

    def broken(path):
        raise OSError("statvfs failed")

    monkeypatch.setattr(shutil, "disk_usage", broken)
    assert preflight.preflight(config.model_copy(update={"model": "no/such-model-anywhere"}), None, None, plan) == []


def test_yaml_dump_of_config_is_plain(tmp_path: Path, tiny_model_dir: Path) -> None:
    """ft_config.yaml is written with safe_dump: reading it back with safe_load gives the same mapping."""
    from ftcore.config.schema import config_to_yaml

    config = build_config(run_config(tiny_model_dir, tmp_path / "t.jsonl", tmp_path / "run"))
    assert build_config(yaml.safe_load(config_to_yaml(config))) == config
