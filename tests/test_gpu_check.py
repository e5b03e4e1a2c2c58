"""benchmarks/gpu_check.py stays importable, plans its cases and writes its report (no training here)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("gpu_check", None)


def test_cases_cover_the_issue(gpu_check) -> None:
    names = set(gpu_check.CASES)
    for framework in ("ft", "hf", "trl"):
        for method in ("lora", "qlora", "full"):
            assert f"big_{framework}_{method}" in names
    assert {"parity_free", "parity_padded", "smol_liger", "smol_flash_attn", "tiny_fsdp", "tiny_zero2", "tiny_zero3",
            "smol_eval"} <= names
    assert all(c.needs_cuda for c in gpu_check.CASES.values() if c.method == "qlora" or c.launch in ("fsdp", "zero2", "zero3"))


def test_plan_on_cpu_skips_cuda_cases_and_missing_modules(gpu_check) -> None:
    planned = gpu_check.plan(list(gpu_check.CASES), cuda=False, has_module=lambda name: name != "liger_kernel")
    reasons = {case.name: reason for case, reason in planned}
    assert reasons["big_ft_qlora"] == "skipped: needs CUDA"
    assert reasons["tiny_fsdp"] == "skipped: needs CUDA"
    assert reasons["smol_liger"] == "skipped: liger_kernel not installed"
    assert reasons["big_ft_lora"] is None and reasons["parity_free"] is None
    # evaluate compares the base with parity_free's tuned run, so asking for it alone runs that first
    assert [c.name for c, _ in gpu_check.plan(["smol_eval"], cuda=True)] == ["parity_free", "smol_eval"]


def test_ft_config_of_cases(gpu_check, tmp_path: Path) -> None:
    models = {"big": tmp_path / "big", "smol": tmp_path / "smol", "tiny": tmp_path / "tiny", "data": tmp_path / "d.jsonl"}
    s = gpu_check.Settings()
    padded = gpu_check.ft_config(gpu_check.CASES["parity_padded"], models, s, tmp_path / "out")
    assert padded["data"]["padding_free"] is False and padded["data"]["shuffle"] is False
    zero3 = gpu_check.ft_config(gpu_check.CASES["tiny_zero3"], models, s, tmp_path / "out")
    assert Path(zero3["training"]["deepspeed"]).is_file() and zero3["dtype"] == "bfloat16"
    liger = gpu_check.ft_config(gpu_check.CASES["smol_liger"], models, s, tmp_path / "out")
    assert liger["training"]["trainer_args"] == {"use_liger_kernel": True} and liger["training"]["max_steps"] == s.steps
    full = gpu_check.ft_config(gpu_check.CASES["big_ft_full"], models, s, tmp_path / "out")
    assert "method_options" not in full and "precision" not in full["training"]  # ft's defaults
    from ftcore.config.schema import build_config

    for config in (padded, zero3, liger, full):
        build_config(config)


def test_report_on_fake_results(gpu_check, tmp_path: Path) -> None:
    report = {
        "device": {"cuda": True, "name": "NVIDIA Fake 80GB", "memory_gb": 80.0, "cpus": 16, "platform": "Linux",
                   "versions": {"torch": "2.13.0"}},
        "settings": {"steps": 20, "warmup": 3, "micro": 8, "max_len": 512, "new_tokens": 64},
        "models": {"big": {"params": 9.7e8}, "smol": {"converted": True}},
        "cases": {
            "big_ft_lora": {"kind": "train", "status": "ok", "note": "ft", "useful_tokens_per_s": 12345.0,
                            "peak_cuda_allocated_mb": 4000.0, "estimate": {"without_runtime_mb": 4400.0},
                            "weight_dtypes": {"bfloat16": 10}, "bf16": True, "attn_implementation": "ft_segments",
                            "final_loss": 9.1},
            "big_hf_qlora": {"kind": "train", "status": "failed",
                             "error": "RuntimeError: CUDA error: an illegal memory access was encountered"},
            "tiny_zero3": {"kind": "dist", "status": "skipped", "reason": "skipped: deepspeed not installed"},
            "tiny_fsdp": {"kind": "dist", "status": "ok", "reloaded_dtype": "bfloat16", "dtype_as_configured": True,
                          "peak_cuda_allocated_mb": 100.0, "bf16": True},
            "smol_eval": {"kind": "eval", "status": "ok",
                          "base": {"examples": 32, "generate_s": 2.0, "examples_per_s": 16.0, "whole_s": 9.0},
                          "tuned": {"examples": 32, "generate_s": 4.0, "examples_per_s": 8.0, "whole_s": 11.0}},
        },
        "parity": {"free": [10.0], "padded": [10.01], "max_rel_diff": 1e-3, "rtol": 2e-2, "ok": True},
    }
    json_path, md_path = gpu_check.write_report(report, tmp_path)
    text = md_path.read_text()
    assert "NVIDIA Fake 80GB" in text and "CPU smoke" not in text
    assert "12,345" in text and "| 1.10 |" in text  # estimate / measured
    assert "illegal memory access" in text and "deepspeed not installed" in text
    assert "tiny_fsdp: bfloat16 (as configured)" in text
    assert "within tolerance" in text and "| tuned | 32 | 4.00 | 8.00 |" in text
    assert json.loads(json_path.read_text())["cases"]["big_ft_lora"]["useful_tokens_per_s"] == 12345.0
    report["device"] = {"cuda": False, "name": "CPU only: x", "cpus": 2, "platform": "Linux", "versions": {}}
    gpu_check.write_report(report, tmp_path)
    assert "CPU smoke" in md_path.read_text()


def test_last_error_line(gpu_check) -> None:
    out = "Traceback (most recent call last):\n  File \"x.py\", line 1\nValueError: bad thing\n\nexiting\n"
    assert gpu_check.last_error_line(out) == "ValueError: bad thing"
    assert gpu_check.last_error_line("") == "(no output)"


def test_checks_name_what_failed(gpu_check) -> None:
    report = {
        "device": {"cuda": True, "bf16_supported": True},
        "cases": {
            "big_ft_lora": {"kind": "train", "framework": "ft", "status": "ok", "bf16": True,
                            "attn_implementation": "ft_segments"},
            "big_ft_full": {"kind": "train", "framework": "ft", "status": "ok", "bf16": False,
                            "attn_implementation": "sdpa"},
            "smol_flash_attn": {"kind": "train", "framework": "ft", "status": "ok", "bf16": True,
                                "attn_implementation": "flash_attention_2"},
            "tiny_zero3": {"kind": "dist", "framework": "ft", "status": "ok", "bf16": True,
                           "attn_implementation": "ft_segments", "dtype_as_configured": False},
            "big_hf_qlora": {"kind": "train", "framework": "hf", "status": "failed", "error": "boom"},
        },
        "parity": None,
    }
    found = dict(gpu_check.checks(report))
    assert found["ft's defaults train with bf16 mixed precision on this GPU"] == "FAIL: not bf16 (big_ft_full)"
    assert found["ft's padding-free default trains through ft_segments (per-example SDPA)"] == "FAIL: another kernel (big_ft_full)"
    assert found["flash_attention_2 is used when configured"] == "pass"
    assert found["1-rank torchrun/FSDP/ZeRO runs save weights that reload in the configured dtype"].startswith("FAIL")
    assert found["padding-free and padded first-step losses agree"] == "not run"
    assert found["every case that ran finished"] == "FAIL: big_hf_qlora"
