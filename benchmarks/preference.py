"""DPO-LoRA vs SFT-LoRA on the same fixture: useful tokens/s, examples/s and peak RSS, whole ``ft train`` processes.

    python benchmarks/preference.py [--quick] [--repeats 3] [--steps 12]

The fixture is the benchmark Llama (``benchmarks/fixture.py``; ``--quick``: the tiny one). SFT trains on its
alpaca records; DPO on pairs made from the same records: the prompt is the instruction, the chosen answer the
record's output and the rejected one the same words shuffled (same length, so both methods see the same tokens
per example, DPO twice per example: chosen and rejected, plus the reference pass with the adapter off).
Processes alternate SFT and DPO, ``--repeats`` times each; medians are reported in
``benchmarks/RESULTS-preference.md`` with the machine's description.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from fixture import QUICK, FixtureSpec, build  # noqa: E402

MEASURE = ("import resource, subprocess, sys\n"
           "r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
           "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
           "sys.stderr.write(r.stderr[-3000:])\n")


def pairs_from(records: list[dict[str, str]], seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    pairs = []
    for record in records:
        words = record["output"].split()
        shuffled = words[:]
        rng.shuffle(shuffled)
        prompt = record["instruction"] + (f"\n\n{record['input']}" if record["input"] else "")
        pairs.append({"prompt": [{"role": "user", "content": prompt}],
                      "chosen": [{"role": "assistant", "content": " ".join(words)}],
                      "rejected": [{"role": "assistant", "content": " ".join(shuffled)}]})
    return pairs


def write_config(root: Path, method: str, data: Path, steps: int) -> Path:
    options = "{r: 16, alpha: 32, dropout: 0.0, target_modules: [q_proj, k_proj, v_proj, o_proj]}"
    if method == "dpo":
        options = options[:-1] + ", beta: 0.1}"
    config = root / f"{method}.yaml"
    config.write_text(
        f"model: {root / 'model'}\nmethod: {method}\nmethod_options: {options}\noutput_dir: {root / 'runs' / method}\n"
        f"dtype: float32\ndata: {{train: {data}, max_seq_len: 512, cache_dir: {root / 'cache'}}}\n"
        f"training: {{max_steps: {steps}, batch_size: 2, gradient_accumulation: 4, learning_rate: 0.0002, "
        "save_steps: 100000, logging_steps: 1, lr_scheduler: constant}\n")
    return config


def one_run(root: Path, method: str, config: Path) -> dict[str, float]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    started = time.time()
    out = subprocess.run([sys.executable, "-c", MEASURE, sys.executable, "-m", "ftcore", "-q", "train", "--config",
                          str(config), "--overwrite"], capture_output=True, text=True, env=env)
    wall = time.time() - started
    code, rss_kib = out.stdout.split()
    if code != "0":
        raise SystemExit(f"{method} failed:\n{out.stderr}")
    manifest = json.loads((root / "runs" / method / "ft_run.json").read_text())
    examples = manifest["global_step"] * 8
    return {"tokens_per_second": manifest["tokens_per_second"], "examples_per_second": examples / manifest["train_runtime_s"],
            "train_runtime_s": manifest["train_runtime_s"], "wall_s": wall, "peak_rss_mib": int(rss_kib) / 1024}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the tiny fixture (a smoke run)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--output", type=Path, default=HERE / "RESULTS-preference.md")
    args = parser.parse_args(argv)
    spec = QUICK if args.quick else FixtureSpec(examples=400)
    with tempfile.TemporaryDirectory(prefix="ft-pref-bench-") as tmp:
        root = Path(tmp)
        info = build(root, spec)
        records = [json.loads(line) for line in (root / "train.jsonl").read_text().splitlines()]
        pref = root / "pairs.jsonl"
        pref.write_text("".join(json.dumps(p) + "\n" for p in pairs_from(records)), encoding="utf-8")
        configs = {"lora": write_config(root, "lora", root / "train.jsonl", args.steps),
                   "dpo": write_config(root, "dpo", pref, args.steps)}
        results: dict[str, list[dict[str, float]]] = {"lora": [], "dpo": []}
        for _ in range(args.repeats):
            for method, config in configs.items():
                results[method].append(one_run(root, method, config))
    medians = {m: {k: statistics.median(r[k] for r in runs) for k in runs[0]} for m, runs in results.items()}
    write_report(args.output, info, medians, args)


def write_report(path: Path, info: dict, medians: dict[str, dict[str, float]], args: argparse.Namespace) -> None:
    sft, dpo = medians["lora"], medians["dpo"]
    lines = [
        "# DPO-LoRA vs SFT-LoRA (whole `ft train` processes, medians)",
        "",
        f"Machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; measured "
        f"{time.strftime('%Y-%m-%d')}. Fixture: {info['params'] / 1e6:.1f}M-parameter Llama, {args.steps} optimizer "
        f"steps of 8 examples (2 x 4 accumulation), LoRA r=16 on q/k/v/o, float32, {args.repeats} interleaved runs each.",
        "",
        "| method | useful tokens/s | examples/s | train runtime (s) | whole process (s) | peak RSS (MiB) |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in (("SFT (`lora`)", sft), ("DPO (`dpo`, base: lora)", dpo)):
        lines.append(f"| {name} | {row['tokens_per_second']:.0f} | {row['examples_per_second']:.2f} | "
                     f"{row['train_runtime_s']:.1f} | {row['wall_s']:.1f} | {row['peak_rss_mib']:.0f} |")
    lines += [
        "",
        f"DPO / SFT: {dpo['tokens_per_second'] / sft['tokens_per_second']:.2f}x tokens/s, "
        f"{dpo['examples_per_second'] / sft['examples_per_second']:.2f}x examples/s, "
        f"{dpo['peak_rss_mib'] / sft['peak_rss_mib']:.2f}x peak RSS. A DPO example is two sequences (chosen and "
        "rejected) through the trained model plus the same two through the reference (the base with the adapter "
        "off, no gradients), so about a third of SFT's examples/s is the expected cost; tokens/s counts the tokens "
        "of the trained forward pass (TRL pads chosen and rejected to one length).",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
