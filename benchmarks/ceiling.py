"""Where the limit is: how much faster batching can make a LoRA step than the hand-written micro-batch-1 loop.

    python benchmarks/ceiling.py                 # after `nox -s bench` (reads benchmarks/RESULTS.json)
    python benchmarks/ceiling.py --no-write      # print, leave docs/performance.md alone

A micro-batch of 8 examples flattened into one row (ft's default) does the same arithmetic per token as eight
examples run one at a time: the linear layers' FLOPs and attention's FLOPs per example are identical. What
changes is how fast the linear layers' matmuls run: with 8× the rows, a matmul reaches more of the CPU's peak.
Attention stays per example (the same kernels on the same sequences), and norms, RoPE, activations, dropout and
the optimizer cost per token or per weight whatever the batching.

This script measures the linear layers' matmuls of a LoRA step (forward, and the input-gradient of the frozen
weights; full fine-tuning adds the weight gradient) on the benchmark's two models at a sweep of token counts,
in fp32 and (where the CPU has bf16 instructions) bf16. It then takes the hand-written loop's measured speed from
the latest ``nox -s bench`` run (benchmarks/RESULTS.json), splits its step into "linear layers at one example's
token count" and "everything else", and bounds the speedup any batching can give: everything else unchanged, the
linear layers at the best rate of the sweep. The bound is what ft's defaults could reach at most on this CPU by
batching; reaching past it needs fewer FLOPs or a faster number format, not a better schedule.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
START, END = "<!-- benchmarks/ceiling.py writes from here -->", "<!-- end of what benchmarks/ceiling.py writes -->"

#: The benchmark's models: hidden size, MLP size, layers, attention heads and key/value heads, vocabulary.
MODELS = {
    "llama28m": {"label": "27.7M-parameter Llama (vocab 8,192)", "hidden": 512, "mlp": 1408, "layers": 6,
                 "heads": 8, "kv_heads": 8, "vocab": 8192},
    "smollm2": {"label": "SmolLM2-135M-Instruct (vocab 49,152)", "hidden": 576, "mlp": 1536, "layers": 30,
                "heads": 9, "kv_heads": 3, "vocab": 49152},
}
TOKENS = (32, 64, 128, 164, 256, 512, 1024, 1312, 2048, 4096)
#: Issue 33's speed target over the hand-written loop.
TARGET = 1.5


def linear_shapes(model: dict[str, Any]) -> list[tuple[int, int, int]]:
    """``(in, out, count)`` of the model's linear layers: per layer q/k/v/o and the MLP's three, then the head."""
    h, head_dim = model["hidden"], model["hidden"] // model["heads"]
    kv = model["kv_heads"] * head_dim
    n = model["layers"]
    return [(h, h, 2 * n), (h, kv, 2 * n), (h, model["mlp"], 2 * n), (model["mlp"], h, n), (h, model["vocab"], 1)]


def linear_flops_per_token(model: dict[str, Any], full: bool = False) -> int:
    """FLOPs per token of the linear layers: forward and input gradient (2 + 2 per weight), full adds 2."""
    weights = sum(i * o * c for i, o, c in linear_shapes(model))
    return (6 if full else 4) * weights


def rate(model: dict[str, Any], tokens: int, dtype: Any, seconds: float, full: bool = False) -> float:
    """GFLOP/s of one step's linear matmuls at ``tokens`` rows: best of repeats over about ``seconds``."""
    import torch

    shapes = [(torch.randn(tokens, i, dtype=dtype), torch.randn(o, i, dtype=dtype), torch.randn(tokens, o, dtype=dtype), c)
              for i, o, c in linear_shapes(model)]

    def once() -> None:
        for x, w, g, count in shapes:
            for _ in range(count):
                torch.mm(x, w.t())          # forward
                torch.mm(g, w)              # gradient of the input
                if full:
                    torch.mm(g.t(), x)      # gradient of the weight

    once()
    best, deadline = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        once()
        best = min(best, time.perf_counter() - t0)
    return linear_flops_per_token(model, full) * tokens / best / 1e9


def hand_written(results: Path) -> dict[str, dict[str, float]]:
    """The hand-written micro-batch-1 loop's useful tokens/s per model, and ft's defaults', from a bench run."""
    if not results.exists():
        return {}
    found = json.loads(results.read_text(encoding="utf-8"))
    speeds: dict[str, dict[str, list[float]]] = {}
    for r in found.get("runs", []):
        key = "smollm2" if r.get("model") == "smollm2" else "llama28m"
        speeds.setdefault(key, {}).setdefault(r["case"], []).append(r["useful_tokens_per_s"])
        if r["case"] == "hf_mb1":  # one example per micro-batch, 8 per step: its mean length
            per_example = r["useful_tokens_per_s"] * r["seconds"] / (r["timed_steps"] * 8)
            speeds[key].setdefault("example_tokens", []).append(per_example)
    return {model: {case: sorted(v)[len(v) // 2] for case, v in cases.items()} for model, cases in speeds.items()}


def at(sweep: dict[Any, float], tokens: float) -> float:
    """The sweep's GFLOP/s at ``tokens``, interpolated linearly between the two measured points around it."""
    points = sorted((int(t), v) for t, v in sweep.items())
    for (t0, v0), (t1, v1) in zip(points, points[1:], strict=False):
        if t0 <= tokens <= t1:
            return v0 + (v1 - v0) * (tokens - t0) / (t1 - t0)
    return points[0][1] if tokens < points[0][0] else points[-1][1]


def measure(args: argparse.Namespace) -> dict[str, Any]:
    import report as bench_report
    import torch

    dtypes = [("fp32", torch.float32)]
    if bench_report.machine().get("cpu_bf16"):
        dtypes.append(("bf16", torch.bfloat16))
    out: dict[str, Any] = {"threads": torch.get_num_threads(), "models": {}, "machine": bench_report.machine()}
    for key in args.models:
        model = MODELS[key]
        sweep = {name: {t: rate(model, t, dtype, args.seconds) for t in TOKENS} for name, dtype in dtypes}
        out["models"][key] = {"sweep": sweep, "flops_per_token": linear_flops_per_token(model)}
    out["measured"] = hand_written(args.results)
    out["mean_example_tokens"] = args.example_tokens
    return out


def bound(entry: dict[str, Any], speeds: dict[str, float], example_tokens: int) -> dict[str, float] | None:
    """Split the hand-written step per token into linear layers and the rest; the speedup with the best linear rate."""
    if "hf_mb1" not in speeds:
        return None
    step = 1 / speeds["hf_mb1"]
    tokens = speeds.get("example_tokens", example_tokens)
    linear = entry["flops_per_token"] / at(entry["sweep"]["fp32"], tokens) / 1e9
    rest = max(step - linear, 0.0)
    best = {name: max(sweep.values()) for name, sweep in entry["sweep"].items()}
    best_linear = entry["flops_per_token"] / best["fp32"] / 1e9
    result = {"example_tokens": tokens, "linear_share": linear / step, "fp32_bound": step / (rest + best_linear),
              # For TARGET× in fp32, with the linear layers at their best rate: what the rest may take, as a
              # share of what it takes in the hand-written step.
              "rest_allowed": max(step / TARGET - best_linear, 0.0) / rest if rest else float("nan")}
    if "bf16" in best:
        result["bf16_bound"] = step / (rest + entry["flops_per_token"] / best["bf16"] / 1e9)
    if "ft_default" in speeds:
        result["ft_default"] = speeds["ft_default"] / speeds["hf_mb1"]
    return result


def markdown(found: dict[str, Any]) -> str:
    m = found["machine"]
    lines = [f"### The batching ceiling ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})", "",
             "Generated by `python benchmarks/ceiling.py`: the GFLOP/s of one LoRA step's linear-layer matmuls "
             "(forward and input gradient of every projection, the MLP and the LM head) at a given number of "
             f"tokens per matmul, best of repeats, {found['threads']} threads, on {m.get('cpu', 'this CPU')}.", "",
             "| model | dtype | " + " | ".join(f"{t} tok" for t in TOKENS) + " |",
             "|---|---|" + "---|" * len(TOKENS)]
    for key, entry in found["models"].items():
        for name, sweep in entry["sweep"].items():
            values = [sweep.get(str(t), sweep.get(t)) for t in TOKENS]
            lines.append(f"| {MODELS[key]['label']} | {name} | " + " | ".join(f"{v:.0f}" for v in values) + " |")
    rows = []
    for key, entry in found["models"].items():
        b = bound(entry, found["measured"].get(key, {}), found["mean_example_tokens"])
        if b:
            rows.append(f"| {MODELS[key]['label']} | {b['example_tokens']:.0f} | {b['linear_share']:.0%} | "
                        f"{b['fp32_bound']:.2f}× | {b['rest_allowed']:.0%} | {b.get('bf16_bound', float('nan')):.2f}× | "
                        f"{b.get('ft_default', float('nan')):.2f}× |")
    if rows:
        lines += ["", "The hand-written micro-batch-1 loop's measured step (benchmarks/RESULTS.json), split into its "
                  "linear layers at one example's tokens (the mean example of the timed steps) and the rest; the "
                  "bound keeps the rest and runs the linear layers at the sweep's best rate. The rest (attention, "
                  "norms, activations, dropout, the loss, per-operator and per-micro-batch overhead) also gains "
                  "from batching where its cost is fixed per call; the fifth column is how small it would have to "
                  f"become, against the hand-written step's, for {TARGET:g}× in fp32:", "",
                  "| model | tokens per example | linear layers' share of the hand-written step | bound from the "
                  f"linear layers, fp32 | the rest allowed for {TARGET:g}× in fp32 | bound with bf16 matmuls | "
                  "ft's defaults measured (bf16 autocast) |", "|---|---|---|---|---|---|---|", *rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    import sys

    sys.path.insert(0, str(HERE))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--seconds", type=float, default=2.0, help="repeats per point, in seconds")
    parser.add_argument("--example-tokens", type=int, default=164,
                        help="one example's tokens when RESULTS.json does not tell (the peers job's mean: 164)")
    parser.add_argument("--results", type=Path, default=HERE / "RESULTS.json")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    found = measure(args)
    (HERE / "RESULTS-ceiling.json").write_text(json.dumps(found, indent=1), encoding="utf-8")
    section = markdown(json.loads(json.dumps(found)))
    print(section)
    if not args.no_write:
        from peers import merge  # the same marker-bounded section writer

        merge(HERE.parent / "docs" / "performance.md", section, START, END)


if __name__ == "__main__":
    main()
