"""One benchmark case, run in its own process: train N steps and write what was measured as JSON.

Every case trains the same fixture with the same LoRA (r=16, alpha 32, dropout 0.05, attention
projections) or full fine-tuning, learning rate 2e-4 with a cosine schedule, seed 42, global batch 8
examples. The same meter wraps each framework's collator and Trainer, so all cases are timed alike:
the clock starts after ``warmup`` optimizer steps and stops after the last one.
"""

from __future__ import annotations

import json
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LORA = {"r": 16, "alpha": 32.0, "dropout": 0.05, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}
SEED = 42
LEARNING_RATE = 2e-4


@dataclass(frozen=True)
class Case:
    """What one case runs: framework, method, micro-batch × accumulation, and its data layout."""

    framework: str  # hf | trl | ft
    method: str = "lora"  # lora | full
    micro: int = 1
    accum: int = 8
    layout: str = "padded"  # padded | padding_free | packed | default
    note: str = ""
    ft_set: tuple[str, ...] = field(default_factory=tuple)
    #: ft with peft's own ``nn.Dropout`` instead of ftlora's CPU dropout, so it draws the masks the hand-written
    #: loop draws: the identical-settings cases, whose per-step losses must match that loop's.
    torch_dropout: bool = False


CASES: dict[str, Case] = {
    "hf_mb8": Case("hf", micro=8, accum=1, note="hand-written Trainer+peft, micro-batch 8"),
    "hf_mb1": Case("hf", micro=1, accum=8, note="hand-written Trainer+peft, micro-batch 1 x accumulation 8"),
    "trl_padded": Case("trl", micro=8, accum=1, note="TRL SFTTrainer, padded micro-batch 8"),
    "trl_free": Case("trl", micro=8, accum=1, layout="padding_free", note="TRL SFTTrainer, padding-free micro-batch 8"),
    "trl_packed": Case("trl", micro=1, accum=1, layout="packed", note="TRL SFTTrainer, BFD packing, 1 row of 1024"),
    "ft_mb8": Case("ft", micro=8, accum=1, note="ft train, same settings as hf_mb8", torch_dropout=True),
    "ft_mb1": Case("ft", micro=1, accum=8, note="ft train, same settings as hf_mb1", torch_dropout=True),
    "ft_packed": Case("ft", micro=1, accum=1, layout="packed", note="ft train, packing into rows of 1024"),
    "ft_default": Case("ft", layout="default", note="ft train, ft's defaults (micro-batch 8 padding-free, per-example attention)"),
    "hf_full_mb1": Case("hf", method="full", note="hand-written full fine-tuning, micro-batch 1 x accumulation 8"),
    "ft_full_default": Case("ft", method="full", layout="default", note="ft train --method full, ft's defaults"),
    # Speed and memory options on top of ft's defaults (python benchmarks/run.py --cases ... --output ...).
    "ft_logits": Case("ft", layout="default", note="ft defaults, but the model's own loss (full logits)",
                      ft_set=("training.kernels=none",)),
    "ft_full_logits": Case("ft", method="full", layout="default",
                           note="ft --method full defaults, but the model's own loss (full logits)",
                           ft_set=("training.kernels=none",)),
    "ft_bf16_logits": Case("ft", layout="default", note="ft defaults + bf16 autocast, full logits",
                           ft_set=("training.precision=bf16", "training.kernels=none")),
    "ft_gc": Case("ft", layout="default", note="ft defaults + gradient checkpointing",
                  ft_set=("training.gradient_checkpointing=true",)),
    "ft_bf16": Case("ft", layout="default", note="ft defaults + bf16 autocast", ft_set=("training.precision=bf16",)),
    "ft_fused": Case("ft", layout="default", note="ft defaults + fused AdamW",
                     ft_set=("training.optimizer=adamw_torch_fused",)),
    "ft_adamw8bit": Case("ft", layout="default", note="ft defaults + 8-bit AdamW (bitsandbytes)",
                         ft_set=("training.optimizer=adamw_8bit",)),
    "ft_tok128": Case("ft", layout="default", note="ft defaults, passes of at most 128 tokens",
                      ft_set=("training.micro_batch_tokens=128",)),
    "ft_tok256": Case("ft", layout="default", note="ft defaults, passes of at most 256 tokens",
                      ft_set=("training.micro_batch_tokens=256",)),
    "ft_tok512": Case("ft", layout="default", note="ft defaults, passes of at most 512 tokens",
                      ft_set=("training.micro_batch_tokens=512",)),
    "ft_fp32": Case("ft", layout="default", note="ft defaults in fp32 (passes chosen by auto)",
                    ft_set=("training.precision=fp32",)),
    "ft_tok1024": Case("ft", layout="default", note="ft defaults, passes of at most 1024 tokens",
                       ft_set=("training.micro_batch_tokens=1024",)),
    "ft_tok512_fp32": Case("ft", layout="default", note="ft defaults in fp32, passes of at most 512 tokens",
                           ft_set=("training.micro_batch_tokens=512", "training.precision=fp32")),
    "ft_tokoff": Case("ft", layout="default", note="ft defaults, whole micro-batches (one pass of 8 examples)",
                      ft_set=("training.micro_batch_tokens=null",)),
    "ft_full_tok512": Case("ft", method="full", layout="default", note="ft train --method full, passes of at most 512 tokens",
                           ft_set=("training.micro_batch_tokens=512",)),
    "ft_full_fp32": Case("ft", method="full", layout="default", note="ft train --method full, defaults in fp32",
                         ft_set=("training.precision=fp32",)),
    "ft_full_gc": Case("ft", method="full", layout="default", note="ft train --method full, defaults + gradient checkpointing",
                       ft_set=("training.gradient_checkpointing=true",)),
    "ft_full_tokoff": Case("ft", method="full", layout="default", note="ft train --method full, whole micro-batches",
                           ft_set=("training.micro_batch_tokens=null",)),
    "ft_compile": Case("ft", layout="default", note="ft defaults + torch.compile", ft_set=("training.torch_compile=true",)),
}


# ----------------------------------------------------------------------------- measuring


class Meter:
    """Counts tokens in every collated micro-batch and times optimizer steps after the warm-up."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.tokens = self.useful = self.squares = 0
        self.start: tuple[float, int, int, int] | None = None
        self.stop: tuple[float, int, int, int] | None = None

    def wrap(self, collator: Any) -> Any:
        def collate(features: list[dict[str, Any]]) -> Any:
            batch = collator(features)
            self.count(batch)
            return batch

        return collate

    def count(self, batch: Any) -> None:
        ids = batch["input_ids"]
        self.tokens += ids.numel()
        lengths = sequence_lengths(batch)
        self.useful += sum(lengths)
        self.squares += sum(n * n for n in lengths)

    def mark(self) -> tuple[float, int, int, int]:
        return time.perf_counter(), self.tokens, self.useful, self.squares

    def callback(self) -> Any:
        from transformers import TrainerCallback

        meter = self

        class MeterCallback(TrainerCallback):
            def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                if state.global_step == meter.warmup:
                    meter.start = meter.mark()
                if state.global_step == state.max_steps:
                    meter.stop = meter.mark()

        return MeterCallback()


def sequence_lengths(batch: Any) -> list[int]:
    """Real (non-pad) length of every sequence: per row from the mask, per segment from position resets."""
    mask = batch.get("attention_mask")
    if mask is not None and mask.dim() == 2:
        return [int(n) for n in mask.sum(-1).tolist()]
    positions = batch.get("position_ids")
    if positions is not None:
        lengths = []
        for row in positions.tolist():
            starts = [i for i, p in enumerate(row) if p == 0] + [len(row)]
            lengths += [b - a for a, b in zip(starts, starts[1:], strict=False) if b > a]
        return lengths
    return [batch["input_ids"].shape[-1]] * batch["input_ids"].shape[0]


def linear_params(model: Any) -> int:
    """Weights in the base model's Linear layers (output head included, LoRA adapters excluded)."""
    import torch

    return sum(m.weight.numel() for name, m in model.named_modules()
               if isinstance(m, torch.nn.Linear) and "lora_" not in name)


def model_shape(model: Any) -> tuple[int, int]:
    config = model.config
    return config.num_hidden_layers, config.hidden_size


def result(meter: Meter, trainer: Any, case: Case, seconds_total: float) -> dict[str, Any]:
    """The measurements of a finished run."""
    assert meter.start and meter.stop, "the timed steps did not run"
    t0, tok0, use0, sq0 = meter.start
    t1, tok1, use1, sq1 = meter.stop
    elapsed = t1 - t0
    layers, hidden = model_shape(trainer.model)
    base_flops = (6 if case.method == "full" else 4) * linear_params(trainer.model) * (use1 - use0)
    # Causal attention: QK^T and AV cost 2*s^2*d per layer forward; backward costs twice the forward.
    attention_flops = 3 * 2 * layers * hidden * (sq1 - sq0)
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    return {
        "seconds": elapsed,
        "timed_steps": trainer.state.global_step - meter.warmup,
        "tokens_per_s": (tok1 - tok0) / elapsed,
        "useful_tokens_per_s": (use1 - use0) / elapsed,
        "padding_share": 1 - (use1 - use0) / max(tok1 - tok0, 1),
        "flops_per_s": (base_flops + attention_flops) / elapsed,
        "losses": losses,
        "final_loss": losses[-1] if losses else None,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "wall_s": seconds_total,
    }


# ----------------------------------------------------------------------------- frameworks


def user_text(record: dict[str, str]) -> str:
    return f"{record['instruction']}\n\n{record['input']}" if record["input"] else record["instruction"]


def read_records(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def hand_tokenized(tokenizer: Any, records: list[dict[str, str]]) -> Any:
    """What a user writes: render with the chat template, mask the prompt's tokens with -100."""
    from datasets import Dataset

    rows: dict[str, list[list[int]]] = {"input_ids": [], "attention_mask": [], "labels": []}
    for record in records:
        prompt_msgs = [{"role": "user", "content": user_text(record)}]
        prompt = tokenizer.apply_chat_template(prompt_msgs, tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(prompt_msgs + [{"role": "assistant", "content": record["output"]}], tokenize=False)
        ids = tokenizer(full, add_special_tokens=False)["input_ids"][:1024]
        n_prompt = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
        rows["input_ids"].append(ids)
        rows["attention_mask"].append([1] * len(ids))
        rows["labels"].append([-100] * n_prompt + ids[n_prompt:])
    return Dataset.from_dict(rows)


def hf_args(case: Case, output_dir: Path, steps: int, **extra: Any) -> dict[str, Any]:
    return {
        "output_dir": str(output_dir), "max_steps": steps, "per_device_train_batch_size": case.micro,
        "gradient_accumulation_steps": case.accum, "learning_rate": LEARNING_RATE, "lr_scheduler_type": "cosine",
        "logging_steps": 1, "save_strategy": "no", "report_to": "none", "seed": SEED, "disable_tqdm": True, **extra,
    }


def run_hf(case: Case, fixture: Path, work: Path, steps: int, meter: Meter) -> Any:
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    tokenizer = AutoTokenizer.from_pretrained(fixture / "model")
    dataset = hand_tokenized(tokenizer, read_records(fixture / "train.jsonl"))
    set_seed(SEED)
    model = AutoModelForCausalLM.from_pretrained(fixture / "model")
    if case.method == "lora":
        model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", r=LORA["r"], lora_alpha=LORA["alpha"],
                                                 lora_dropout=LORA["dropout"], target_modules=LORA["target_modules"]))
    collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
    trainer = Trainer(model=model, args=TrainingArguments(**hf_args(case, work, steps)), train_dataset=dataset,
                      data_collator=meter.wrap(collator), processing_class=tokenizer, callbacks=[meter.callback()])
    trainer.train()
    return trainer


def run_trl(case: Case, fixture: Path, work: Path, steps: int, meter: Meter) -> Any:
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
    from trl import SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(fixture / "model")
    records = read_records(fixture / "train.jsonl")
    dataset = Dataset.from_dict({
        "prompt": [[{"role": "user", "content": user_text(r)}] for r in records],
        "completion": [[{"role": "assistant", "content": r["output"]}] for r in records],
    })
    layout = {"padded": {}, "padding_free": {"padding_free": True},
              "packed": {"packing": True, "packing_strategy": "bfd"}}[case.layout]
    # SFTConfig defaults to bf16, which a CPU without a GPU rejects; every case here trains in fp32.
    args = SFTConfig(**hf_args(case, work, steps), max_length=1024, bf16=False, **layout)
    set_seed(SEED)
    model = AutoModelForCausalLM.from_pretrained(fixture / "model")
    peft_config = LoraConfig(task_type="CAUSAL_LM", r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
                             target_modules=LORA["target_modules"]) if case.method == "lora" else None
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                         peft_config=peft_config, callbacks=[meter.callback()])
    trainer.data_collator = meter.wrap(trainer.data_collator)
    trainer.train()
    return trainer


def ft_config(case: Case, fixture: Path, work: Path, steps: int, cache_dir: Path) -> dict[str, Any]:
    """The ``ft train`` config of a case: only what differs from ft's defaults is set for ``default``."""
    data: dict[str, Any] = {"train": str(fixture / "train.jsonl"), "format": "alpaca", "max_seq_len": 1024,
                            "cache_dir": str(cache_dir)}
    training: dict[str, Any] = {"max_steps": steps, "logging_steps": 1, "save_steps": 100_000,
                                "learning_rate": LEARNING_RATE, "lr_scheduler": "cosine"}
    if case.layout != "default":
        # Same order as the hand-written baseline: no pre-shuffle, the Trainer's seeded sampler only.
        data.update(shuffle=False, packing=case.layout == "packed", padding_free=case.layout == "packed")
        # fp32 like the hand-written cases (ft's auto precision is bf16 on CPUs with bf16 instructions).
        training.update(batch_size=case.micro, gradient_accumulation=case.accum, precision="fp32")
    config: dict[str, Any] = {"model": str(fixture / "model"), "method": case.method, "seed": SEED,
                              "output_dir": str(work / "run"), "data": data, "training": training}
    if case.method == "lora":
        config["method_options"] = dict(LORA)
    for item in case.ft_set:
        key, value = item.split("=", 1)
        section, name = key.split(".")
        config[section][name] = yaml_value(value)
    return config


def yaml_value(text: str) -> Any:
    """A ``--set`` value with its YAML type (true, 1e-4, ...)."""
    import yaml

    return yaml.safe_load(text)


def run_ft(case: Case, fixture: Path, work: Path, steps: int, meter: Meter, cache_dir: Path) -> Any:
    import yaml

    import ftcore.jobs.train as ft_train
    from ftcore.cli import main

    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(ft_config(case, fixture, work, steps, cache_dir)), encoding="utf-8")
    built: list[Any] = []
    original = ft_train.build_trainer

    def build_with_meter(run: Any) -> Any:
        # The benchmark's only hook into ft: the same meter every other case uses.
        trainer = original(run)
        if case.torch_dropout:
            torch_dropout(trainer.model)
        trainer.add_callback(meter.callback())
        trainer.data_collator = meter.wrap(trainer.data_collator)
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


def torch_dropout(model: Any) -> None:
    """Put ``torch.nn.Dropout`` back where ftlora put its CPU dropout (same probability)."""
    import torch

    for module in model.modules():
        dropouts = getattr(module, "lora_dropout", None)
        if isinstance(dropouts, torch.nn.ModuleDict):
            for name, dropout in list(dropouts.items()):
                if type(dropout).__name__ == "CpuDropout":
                    dropouts[name] = torch.nn.Dropout(dropout.p)


def run_case(name: str, fixture: Path, work: Path, steps: int, warmup: int, cache_dir: Path) -> dict[str, Any]:
    """Run one case in this process and return its measurements."""
    started = time.perf_counter()
    case = CASES[name]
    meter = Meter(warmup)
    work.mkdir(parents=True, exist_ok=True)
    if case.framework == "hf":
        trainer = run_hf(case, fixture, work, steps, meter)
    elif case.framework == "trl":
        trainer = run_trl(case, fixture, work, steps, meter)
    else:
        trainer = run_ft(case, fixture, work, steps, meter, cache_dir)
    return {"case": name, **result(meter, trainer, case, time.perf_counter() - started)}
