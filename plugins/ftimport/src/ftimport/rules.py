"""What every importer shares: the conversion in progress, rule builders (one rule per source key), value
converters and the rules for ``transformers.TrainingArguments`` names, which all three tools accept.

A rule maps a key to an ft key (possibly changing its value), ignores it (no effect in ft, or ft does it on its
own), marks it unsupported with the reason, or marks it ``blocking``: it asks for a kind of training ft cannot
run, so nothing may be written. A key no table knows that is a ``TrainingArguments`` field goes to
``training.trainer_args``; anything else is reported as unknown. Every source key gets one row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftcore import ImportedConfig, ImportRow, check_trainer_args

MAPPED, IGNORED, UNSUPPORTED, BLOCKING, WARNING = "mapped", "ignored", "unsupported", "blocking", "warning"
#: ft's methods that train an adapter or every weight; any other method (dpo, grpo...) takes ``base``.
BASES = ("lora", "qlora", "full")


@dataclass
class Conversion:
    """An import in progress: the ft config being built and one row per source key.

    ``base`` is what trains (lora, qlora or full); ``raw["method"]`` is ft's method, the base itself for
    supervised training or a preference/RL method (dpo, kto, grpo...) that then takes ``method_options.base``.
    """

    tool: str
    source: dict[str, Any]
    base_dir: Path
    base: str = "lora"
    raw: dict[str, Any] = field(default_factory=dict)
    rows: list[ImportRow] = field(default_factory=list)

    def put(self, key: str, path: str, value: Any, note: str = "", status: str = MAPPED) -> None:
        """Set ft key ``path`` (dotted) to ``value`` and record ``key`` as mapped to it."""
        node = self.raw
        parts = path.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
        self.record(key, status, path, note)

    def record(self, key: str, status: str, target: str = "", note: str = "") -> None:
        """Add the row of one source key."""
        self.rows.append(ImportRow(key, status, target, note))

    def get(self, path: str, default: Any = None) -> Any:
        """The value of ft key ``path`` set so far."""
        node: Any = self.raw
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    @property
    def method(self) -> str:
        return self.raw.get("method", self.base)

    @property
    def blocked(self) -> bool:
        return any(row.status == BLOCKING for row in self.rows)

    def result(self) -> ImportedConfig:
        """The ft config and the rows, as the host expects them."""
        return ImportedConfig(self.raw, self.rows)


Rule = Callable[[Conversion, str, Any], None]


# ----------------------------------------------------------------------------- rule builders


def num_proc(conv: Conversion, key: str, value: Any) -> None:
    """Data preparation workers: capped at this machine's CPU count, with a row saying so."""
    import os

    cpus = os.cpu_count() or 1
    if isinstance(value, int) and value > cpus:
        conv.put(key, "data.num_proc", cpus, f"{value} capped to this machine's {cpus} CPUs")
    else:
        conv.put(key, "data.num_proc", value)


def to(path: str, convert: Callable[[Any], Any] | None = None, note: str = "") -> Rule:
    """Map the key to ft key ``path``, converting its value with ``convert``."""
    def rule(conv: Conversion, key: str, value: Any) -> None:
        conv.put(key, path, convert(value) if convert else value, note)
    return rule


def ignore(note: str) -> Rule:
    """The key has no effect in ft (or ft does the same by itself)."""
    return lambda conv, key, value: conv.record(key, IGNORED, "", note)


def unsupported(note: str) -> Rule:
    """ft cannot do what the key asks (``note`` says why, or what to do instead); a key set to false asks nothing."""
    def rule(conv: Conversion, key: str, value: Any) -> None:
        if value is False:
            conv.record(key, IGNORED, "", "off")
        else:
            conv.record(key, UNSUPPORTED, "", note)
    return rule


def method_key(note: str = "") -> Rule:
    """A key that chose what trains (decided before the keys are walked)."""
    return lambda conv, key, value: conv.record(key, MAPPED, f"method: {conv.method}" if conv.method == conv.base
                                                else "method_options.base", note)


def remote_code(conv: Conversion, key: str, value: Any) -> None:
    """``trust_remote_code: true`` carries over with a warning: it runs the model repository's own Python code."""
    if value:
        conv.put(key, "trust_remote_code", True, "runs Python code from the model's repository; keep it only for a "
                 "repository you trust", status=WARNING)
    else:
        conv.put(key, "trust_remote_code", False)


def lora(option: str, convert: Callable[[Any], Any] | None = None) -> Rule:
    """A LoRA option: ``method_options.<option>`` for lora/qlora, ignored for full fine-tuning."""
    def rule(conv: Conversion, key: str, value: Any) -> None:
        if conv.base in ("lora", "qlora"):
            conv.put(key, f"method_options.{option}", convert(value) if convert else value)
        else:
            conv.record(key, IGNORED, "", "an adapter option; this config trains every weight")
    return rule


def qlora(option: str, convert: Callable[[Any], Any] | None = None) -> Rule:
    """A 4-bit quantization option: ``method_options.<option>`` for qlora only."""
    def rule(conv: Conversion, key: str, value: Any) -> None:
        if conv.base == "qlora":
            conv.put(key, f"method_options.{option}", convert(value) if convert else value)
        else:
            conv.record(key, IGNORED, "", "a 4-bit option; this config does not load the base in 4 bits")
    return rule


def flag_to_tracker(tracker: str) -> Rule:
    """``use_tensorboard: true`` style keys: add ``tracker`` to training.report_to."""
    def rule(conv: Conversion, key: str, value: Any) -> None:
        if value:
            add_tracker(conv, tracker)
            conv.record(key, MAPPED, "training.report_to", f"adds {tracker}")
        else:
            conv.record(key, IGNORED, "", "off")
    return rule


def add_tracker(conv: Conversion, tracker: str) -> None:
    """Add ``tracker`` to the imported training.report_to once."""
    trackers = conv.raw.setdefault("training", {}).setdefault("report_to", [])
    if tracker not in trackers:
        trackers.append(tracker)


# ----------------------------------------------------------------------------- value converters


SCHEDULERS = {"linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
              "inverse_sqrt", "reduce_lr_on_plateau", "cosine_with_min_lr", "cosine_warmup_with_min_lr",
              "warmup_stable_decay"}


def scheduler(conv: Conversion, key: str, value: Any) -> None:
    """A transformers scheduler name maps as it is; others (one_cycle, rex, ...) are unsupported."""
    if value in SCHEDULERS:
        if not (value == "cosine" and conv.get("training.lr_scheduler") == "cosine_with_min_lr"):
            conv.put(key, "training.lr_scheduler", value)
        else:
            conv.record(key, MAPPED, "training.lr_scheduler", "cosine with a minimum rate")
    else:
        conv.record(key, UNSUPPORTED, "", f"scheduler {value!r} is not a transformers scheduler; "
                                          f"ft offers {', '.join(sorted(SCHEDULERS))}")


def report_to(conv: Conversion, key: str, value: Any) -> None:
    """``report_to``: a name, a list, ``none`` or ``all``."""
    names = [value] if isinstance(value, str) else list(value or [])
    names = [n for n in names if n not in ("none", "")]
    if "all" in names:
        conv.record(key, UNSUPPORTED, "", "'all' depends on what is installed; name the trackers in training.report_to")
        return
    for name in names:
        add_tracker(conv, name)
    conv.record(key, MAPPED if names else IGNORED, "training.report_to" if names else "", "" if names else "no tracker")


def precision(conv: Conversion, key: str, value: Any) -> None:
    """bf16/fp16 flags (Axolotl also accepts ``auto``) → training.precision."""
    kind = "bf16" if key == "bf16" else "fp16"
    current = conv.get("training.precision")
    if value == "auto":
        conv.put(key, "training.precision", "auto")
    elif value is True or str(value).lower() == "true":
        conv.put(key, "training.precision", kind)
    elif current is None:
        conv.put(key, "training.precision", "fp32", "mixed precision off")
    else:
        conv.record(key, MAPPED, "training.precision", f"off (precision {current})")


def eval_share(conv: Conversion, key: str, value: Any) -> None:
    """A held-out share (0 < x < 1) maps to data.eval_ratio; a count of examples cannot."""
    if not value:
        conv.record(key, IGNORED, "", "no evaluation split")
    elif 0 < float(value) < 1:
        conv.put(key, "data.eval_ratio", float(value))
    else:
        conv.record(key, UNSUPPORTED, "", f"a count of {value} examples; ft holds out a share (data.eval_ratio) "
                                          "or reads data.eval")


def attention(names: dict[Any, str | None]) -> Rule:
    """An attention switch: its value picks attn_implementation (None: leave transformers' choice)."""
    def rule(conv: Conversion, key: str, value: Any) -> None:
        chosen = names.get(value)
        if chosen:
            conv.put(key, "attn_implementation", chosen)
        else:
            conv.record(key, IGNORED, "", "transformers' default attention")
    return rule


def target_modules(value: Any) -> Any:
    """LoRA targets: ``all`` / ``all-linear`` / a list / a comma-separated string."""
    if isinstance(value, str):
        if value.strip().lower() in ("all", "all-linear", "all_linear"):
            return "all-linear"
        return [part.strip() for part in value.split(",") if part.strip()]
    return list(value)


def name_list(value: Any) -> list[str]:
    """A list, or a comma-separated string of names."""
    return [p.strip() for p in value.split(",") if p.strip()] if isinstance(value, str) else list(value)


def chat_template(value: Any) -> str:
    """A peer's template name: chatml and alpaca are ft's own; anything else uses the tokenizer's template."""
    name = str(value).lower()
    if name in ("chatml", "qwen", "alpaca"):
        return "chatml" if name == "qwen" else name
    return "tokenizer"


def template(conv: Conversion, key: str, value: Any) -> None:
    """A named chat template; names ft does not ship fall back to the model tokenizer's own template."""
    mapped = chat_template(value)
    note = "" if mapped != "tokenizer" else f"{value!r} is not built in; ft uses the tokenizer's own chat template"
    conv.put(key, "data.chat_template", mapped, note)


# ----------------------------------------------------------------------------- TrainingArguments names


HF_RULES: dict[str, Rule] = {
    "output_dir": to("output_dir"),
    "per_device_train_batch_size": to("training.batch_size"),
    "per_device_eval_batch_size": to("training.eval_batch_size"),
    "gradient_accumulation_steps": to("training.gradient_accumulation"),
    "num_train_epochs": to("training.epochs", float),
    "max_steps": to("training.max_steps"),
    "learning_rate": to("training.learning_rate", float),
    "lr_scheduler_type": scheduler,
    "lr_scheduler_kwargs": to("training.lr_scheduler_kwargs"),
    "warmup_steps": to("training.warmup_steps"),
    "warmup_ratio": to("training.warmup_ratio", float),
    "optim": to("training.optimizer"),
    "weight_decay": to("training.weight_decay", float),
    "max_grad_norm": to("training.max_grad_norm", float),
    "adam_beta1": to("training.adam_beta1", float),
    "adam_beta2": to("training.adam_beta2", float),
    "adam_epsilon": to("training.adam_epsilon", float),
    "bf16": precision,
    "fp16": precision,
    "tf32": to("training.tf32"),
    "gradient_checkpointing": to("training.gradient_checkpointing", bool),
    "gradient_checkpointing_kwargs": ignore("ft chooses the checkpointing variant"),
    "logging_steps": to("training.logging_steps"),
    "eval_steps": to("training.eval_steps"),
    "save_steps": to("training.save_steps"),
    "save_total_limit": to("training.save_total_limit"),
    "eval_strategy": ignore("ft evaluates every training.eval_steps when set, else once at the end"),
    "evaluation_strategy": ignore("ft evaluates every training.eval_steps when set, else once at the end"),
    "save_strategy": ignore("ft checkpoints every training.save_steps"),
    "logging_strategy": ignore("ft logs every training.logging_steps"),
    "report_to": report_to,
    "run_name": to("training.run_name"),
    "project": to("training.project"),
    "logging_dir": to("training.logging_dir"),
    "neftune_noise_alpha": to("training.neftune_noise_alpha", float),
    "load_best_model_at_end": to("training.load_best_model_at_end"),
    "metric_for_best_model": to("training.metric_for_best_model"),
    "greater_is_better": to("training.greater_is_better"),
    "dataloader_num_workers": to("training.dataloader_workers"),
    "torch_compile": to("training.torch_compile"),
    "deepspeed": to("training.deepspeed"),
    "group_by_length": to("data.group_by_length"),
    "seed": to("seed"),
    "data_seed": ignore("ft shuffles data with the run's seed"),
    "do_train": ignore("ft train trains"),
    "do_eval": ignore("ft evaluates whenever there is eval data"),
    "overwrite_output_dir": ignore("pass --overwrite to ft train"),
    "save_only_model": ignore("ft's checkpoints hold what --resume needs"),
    "ddp_timeout": ignore("ft's launcher keeps the library default"),
    "push_to_hub": unsupported("publish the finished run with ft upload RUN REPO"),
    "hub_model_id": unsupported("publish the finished run with ft upload RUN REPO"),
    "hub_strategy": ignore("ft upload publishes the finished run"),
    "resume_from_checkpoint": lambda conv, key, value: (
        conv.record(key, IGNORED, "", "empty") if not value else
        conv.record(key, UNSUPPORTED, "", "continue a run with ft train --resume")),
    "fsdp": unsupported("ft's FSDP settings differ; set training.fsdp (see the multi-GPU guide)"),
    "fsdp_config": unsupported("ft's FSDP settings differ; set training.fsdp (see the multi-GPU guide)"),
    "early_stopping_patience": to("training.early_stopping_patience"),
}



# ----------------------------------------------------------------------------- the conversion


@dataclass(frozen=True)
class Tool:
    """One tool's importer: its rule table, what trains (``base``), ft's method, and what follows from several keys."""

    name: str
    rules: dict[str, Rule]
    base: Callable[[dict[str, Any]], str]
    method: Callable[[dict[str, Any]], str]
    finish: Callable[[Conversion], None] | None = None


def convert(tool: Tool, source: dict[str, Any], base_dir: Path | str = ".") -> Conversion:
    """Convert ``source`` (the tool's config as a mapping) with one row per key."""
    conv = Conversion(tool.name, source, Path(base_dir), base=tool.base(source))
    conv.raw["method"] = tool.method(source) or conv.base
    for key, value in source.items():
        key = str(key)
        rule = tool.rules.get(key)
        if value is None:
            conv.record(key, IGNORED, "", "empty")
            continue
        try:
            (rule or fallback)(conv, key, value)
        except (ValueError, TypeError, AttributeError, KeyError) as exc:  # a value of the wrong kind
            conv.record(key, UNSUPPORTED, "", f"cannot read {str(value)[:60]!r}: {type(exc).__name__}: {exc}")
    if tool.finish is not None:
        tool.finish(conv)
    if conv.method not in BASES:
        conv.raw.setdefault("method_options", {})["base"] = conv.base
    conv.raw.pop("_dataset_dir", None)
    if conv.raw.get("method_options") == {}:
        conv.raw.pop("method_options")
    return conv


def fallback(conv: Conversion, key: str, value: Any) -> None:
    """A key no table knows: a TrainingArguments field goes to the escape hatch; anything else is unknown."""
    if not check_trainer_args({key: value}) and key.isidentifier():
        conv.put(key, f"training.trainer_args.{key}", value, "passed to TrainingArguments as it is")
    else:
        conv.record(key, UNSUPPORTED, "", f"not {'an' if conv.tool[0] in 'aeiou' else 'a'} {conv.tool} key ft knows")


def default(conv: Conversion, key: str, path: str, value: Any, note: str) -> None:
    """A value the tool uses by default that ft's default differs from: set it, with a row saying so."""
    conv.put(f"({key} default)", path, value, note)
