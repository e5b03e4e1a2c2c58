"""``ft config import``: turn an Axolotl, LLaMA-Factory or TRL config into an ft config, key by key.

Each peer has a table of rules, one per source key. A rule either maps the key to an ft key (possibly
changing its value), ignores it (it has no effect in ft, or ft does it differently on its own), or marks it
unsupported, with the reason. A key no table knows that is a ``transformers.TrainingArguments`` field goes
to ``training.trainer_args``; anything else is reported as unknown. Every source key gets one row.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftcore.errors import ConfigError
from ftcore.keys import TRAINER_ARG_OWNERS, TRAINER_ARGS_RESERVED, trainer_arg_names

PEERS = ("axolotl", "llamafactory", "trl")
MAPPED, IGNORED, UNSUPPORTED = "mapped", "ignored", "unsupported"


@dataclass(frozen=True)
class KeyOutcome:
    """What became of one source key: ``status`` mapped/ignored/unsupported, the ft key and why."""

    key: str
    status: str
    target: str = ""
    note: str = ""


@dataclass
class Conversion:
    """An import in progress: the ft config being built and one outcome per source key."""

    peer: str
    source: dict[str, Any]
    base_dir: Path
    raw: dict[str, Any] = field(default_factory=dict)
    keys: list[KeyOutcome] = field(default_factory=list)

    def put(self, key: str, path: str, value: Any, note: str = "") -> None:
        """Set ft key ``path`` (dotted) to ``value`` and record ``key`` as mapped to it."""
        node = self.raw
        parts = path.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
        self.record(key, MAPPED, path, note)

    def record(self, key: str, status: str, target: str = "", note: str = "") -> None:
        """Add the outcome of one source key."""
        self.keys.append(KeyOutcome(key, status, target, note))

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
        return self.raw.get("method", "lora")


Rule = Callable[[Conversion, str, Any], None]


# ----------------------------------------------------------------------------- rule builders


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
    """A key that chose the method (decided before the keys are walked)."""
    return lambda conv, key, value: conv.record(key, MAPPED, f"method: {conv.method}", note)


def lora(option: str, convert: Callable[[Any], Any] | None = None) -> Rule:
    """A LoRA option: ``method_options.<option>`` for lora/qlora, ignored for full fine-tuning."""
    def rule(conv: Conversion, key: str, value: Any) -> None:
        if conv.method in ("lora", "qlora"):
            conv.put(key, f"method_options.{option}", convert(value) if convert else value)
        else:
            conv.record(key, IGNORED, "", f"an adapter option; this config fine-tunes with method {conv.method}")
    return rule


def qlora(option: str, convert: Callable[[Any], Any] | None = None) -> Rule:
    """A 4-bit quantization option: ``method_options.<option>`` for qlora only."""
    def rule(conv: Conversion, key: str, value: Any) -> None:
        if conv.method == "qlora":
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


# ----------------------------------------------------------------------------- Axolotl


def axolotl_method(source: dict[str, Any]) -> str:
    """Axolotl fine-tunes fully unless ``adapter`` is lora or qlora (QLoRA also from ``load_in_4bit``)."""
    adapter = str(source.get("adapter") or "").lower()
    if adapter == "qlora" or (adapter == "lora" and source.get("load_in_4bit")):
        return "qlora"
    return "lora" if adapter == "lora" else "full"


AXOLOTL_TYPES = {"alpaca": "alpaca", "alpaca_chat": "alpaca", "alpaca_w_system": "alpaca", "sharegpt": "sharegpt",
                 "completion": "text", "pretrain": "text", "chat_template": "messages"}


def axolotl_datasets(target: str) -> Rule:
    """``datasets`` / ``test_datasets``: each entry's path, type, split and name; one row per entry key."""
    def rule(conv: Conversion, key: str, value: Any) -> None:
        entries = value if isinstance(value, list) else [value]
        first = len(conv.keys)
        files = [f for i, entry in enumerate(entries) if (f := _axolotl_entry(conv, f"{key}[{i}]", entry))]
        if files:
            conv.put(key, target, files, f"{len(files)} source(s)")
        else:
            conv.record(key, UNSUPPORTED, "", "no dataset entry could be imported")
        # The list's own row first, then one row per entry key.
        conv.keys.insert(first, conv.keys.pop())
    return rule


def _axolotl_entry(conv: Conversion, key: str, entry: Any) -> dict[str, Any] | None:
    """One Axolotl dataset entry as an ft data source (a mapping), or None when its type is not supported."""
    if isinstance(entry, str):
        return {"path": entry}
    out: dict[str, Any] = {}
    for name, value in entry.items():
        sub = f"{key}.{name}"
        if name == "path":
            out["path"] = value
            conv.record(sub, MAPPED, f"{_data_key(key)}.path")
        elif name == "type":
            fmt = _axolotl_type(conv, sub, value, entry)
            if fmt is None:
                return None
            out["format"] = fmt
        elif name in ("split", "name"):
            out[name] = value
            conv.record(sub, MAPPED, f"{_data_key(key)}.{name}")
        elif name in ("field_messages", "field"):
            column = "messages" if name == "field_messages" else "text"
            if value != column:
                conv.put(sub, f"data.columns.{column}", value)
            else:
                conv.record(sub, IGNORED, "", "ft's default column name")
        elif name in ("ds_type", "data_files", "message_property_mappings", "roles_to_train", "train_on_eos"):
            conv.record(sub, IGNORED, "", _AXOLOTL_ENTRY_NOTES[name])
        else:
            conv.record(sub, UNSUPPORTED, "", "not a dataset option ft knows")
    return out if "path" in out else None


_AXOLOTL_ENTRY_NOTES = {
    "ds_type": "ft reads the file type from its extension",
    "data_files": "ft reads every data file of a local directory or Hub dataset",
    "message_property_mappings": "ft reads role/content (messages) or from/value (sharegpt)",
    "roles_to_train": "ft trains on assistant turns (data.train_on_inputs: true for all)",
    "train_on_eos": "ft trains on each assistant turn's end token",
}


def _axolotl_type(conv: Conversion, key: str, value: Any, entry: dict[str, Any]) -> str | None:
    """Map an Axolotl prompt-strategy type to an ft format, recording the outcome."""
    name = value if isinstance(value, str) else None
    fmt = AXOLOTL_TYPES.get(name.split(".")[0] if name else "")
    if fmt == "messages" and entry.get("field_messages") == "conversations":
        mapping = entry.get("message_property_mappings") or {}
        if mapping.get("role") == "from":
            fmt = "sharegpt"
    if fmt is None:
        conv.record(key, UNSUPPORTED, "", f"prompt strategy {value!r} has no ft format; use alpaca, sharegpt, "
                                          "chat_template or completion data")
        return None
    conv.record(key, MAPPED, f"{_data_key(key)}.format", f"format {fmt}")
    return fmt


def _data_key(key: str) -> str:
    """``datasets[0]`` → ``data.train[0]``; ``test_datasets[1]`` → ``data.eval[1]``."""
    head, _, rest = key.partition("[")
    index = rest.split("]")[0]
    return f"data.{'eval' if head.startswith('test') else 'train'}[{index}]"


def cosine_min_lr(conv: Conversion, key: str, value: Any) -> None:
    """Axolotl's ``cosine_min_lr_ratio``: transformers' cosine_with_min_lr with min_lr_rate."""
    conv.raw.setdefault("training", {}).setdefault("lr_scheduler_kwargs", {})["min_lr_rate"] = float(value)
    conv.put(key, "training.lr_scheduler", "cosine_with_min_lr", "lr_scheduler_kwargs.min_lr_rate set too")


def special_tokens(conv: Conversion, key: str, value: Any) -> None:
    """Only a pad token is harmless to drop: ft pads with the end-of-sequence token and masks padding."""
    if set(value or {}) <= {"pad_token"}:
        conv.record(key, IGNORED, "", "ft pads with the tokenizer's pad (else end-of-sequence) token")
    else:
        conv.record(key, UNSUPPORTED, "", "ft keeps the tokenizer's special tokens; adding tokens is not supported yet")


AXOLOTL_RULES: dict[str, Rule] = {
    "base_model": to("model"),
    "base_model_config": ignore("ft reads the model's own config"),
    "tokenizer_config": to("tokenizer"),
    "revision_of_model": to("revision"),
    "model_type": ignore("ft loads with transformers' Auto classes"),
    "tokenizer_type": ignore("ft loads with transformers' Auto classes"),
    "is_llama_derived_model": ignore("ft detects the architecture"),
    "is_mistral_derived_model": ignore("ft detects the architecture"),
    "is_qwen_derived_model": ignore("ft detects the architecture"),
    "trust_remote_code": to("trust_remote_code"),
    "adapter": method_key(),
    "load_in_4bit": lambda conv, key, value: (conv.record(key, MAPPED, "method: qlora") if value
                                              else conv.record(key, IGNORED, "", "off")),
    "load_in_8bit": lambda conv, key, value: (
        conv.record(key, UNSUPPORTED, "", "8-bit base loading is not offered; use adapter: qlora (4-bit) or lora")
        if value else conv.record(key, IGNORED, "", "off")),
    "strict": ignore("ft always validates strictly"),
    "lora_r": lora("r"),
    "lora_alpha": lora("alpha"),
    "lora_dropout": lora("dropout"),
    "lora_target_modules": lora("target_modules", target_modules),
    "lora_target_linear": lambda conv, key, value: (
        lora("target_modules", lambda v: "all-linear")(conv, key, value) if value
        else conv.record(key, IGNORED, "", "off")),
    "lora_modules_to_save": lora("modules_to_save", name_list),
    "lora_fan_in_fan_out": ignore("peft detects the layer layout"),
    "peft_use_dora": lora("use_dora"),
    "peft_use_rslora": lora("use_rslora"),
    "lora_model_dir": unsupported("continuing a saved adapter is not importable; train from the base model"),
    "datasets": axolotl_datasets("data.train"),
    "test_datasets": axolotl_datasets("data.eval"),
    "dataset_prepared_path": ignore("ft caches tokenized data by fingerprint (data.cache_dir)"),
    "shuffle_merged_datasets": to("data.shuffle"),
    "dataset_processes": to("data.num_proc"),
    "val_set_size": eval_share,
    "chat_template": template,
    "default_system_message": to("data.system_prompt"),
    "sequence_len": to("data.max_seq_len"),
    "sample_packing": to("data.packing"),
    "eval_sample_packing": ignore("ft packs training data only"),
    "pad_to_sequence_len": ignore("ft pads per batch (or packs); results do not change"),
    "train_on_inputs": to("data.train_on_inputs"),
    "group_by_length": to("data.group_by_length"),
    "micro_batch_size": to("training.batch_size"),
    "eval_batch_size": to("training.eval_batch_size"),
    "gradient_accumulation_steps": to("training.gradient_accumulation"),
    "num_epochs": to("training.epochs", float),
    "max_steps": to("training.max_steps"),
    "learning_rate": to("training.learning_rate", float),
    "lr_scheduler": scheduler,
    "lr_scheduler_kwargs": to("training.lr_scheduler_kwargs"),
    "cosine_min_lr_ratio": cosine_min_lr,
    "warmup_steps": to("training.warmup_steps"),
    "warmup_ratio": to("training.warmup_ratio", float),
    "optimizer": to("training.optimizer"),
    "weight_decay": to("training.weight_decay", float),
    "max_grad_norm": to("training.max_grad_norm", float),
    "adam_beta1": to("training.adam_beta1", float),
    "adam_beta2": to("training.adam_beta2", float),
    "adam_epsilon": to("training.adam_epsilon", float),
    "bf16": precision,
    "fp16": precision,
    "tf32": to("training.tf32"),
    "gradient_checkpointing": to("training.gradient_checkpointing", bool, "any variant: ft's own"),
    "flash_attention": attention({True: "flash_attention_2"}),
    "sdp_attention": attention({True: "sdpa"}),
    "eager_attention": attention({True: "eager"}),
    "xformers_attention": lambda conv, key, value: (
        conv.record(key, UNSUPPORTED, "", "xformers attention is not offered; sdpa is the default")
        if value else conv.record(key, IGNORED, "", "off")),
    "neftune_noise_alpha": to("training.neftune_noise_alpha", float),
    "early_stopping_patience": to("training.early_stopping_patience"),
    "eval_steps": to("training.eval_steps"),
    "evals_per_epoch": unsupported("ft counts in steps: set training.eval_steps"),
    "save_steps": to("training.save_steps"),
    "saves_per_epoch": unsupported("ft counts in steps: set training.save_steps"),
    "save_total_limit": to("training.save_total_limit"),
    "logging_steps": to("training.logging_steps"),
    "output_dir": to("output_dir"),
    "seed": to("seed"),
    "torch_compile": to("training.torch_compile"),
    "deepspeed": to("training.deepspeed"),
    "dataloader_num_workers": to("training.dataloader_workers"),
    "dataloader_pin_memory": ignore("ft pins memory when a GPU is used"),
    "dataloader_prefetch_factor": ignore("the library default"),
    "wandb_project": lambda conv, key, value: (add_tracker(conv, "wandb"),
                                               conv.put(key, "training.project", value, "adds wandb to report_to")),
    "wandb_name": to("training.run_name"),
    "wandb_entity": unsupported("set the WANDB_ENTITY environment variable"),
    "wandb_mode": unsupported("set the WANDB_MODE environment variable"),
    "wandb_watch": ignore("ft does not watch gradients"),
    "wandb_log_model": ignore("the run directory holds the model"),
    "wandb_run_id": ignore("W&B makes a new run id"),
    "use_tensorboard": flag_to_tracker("tensorboard"),
    "use_mlflow": flag_to_tracker("mlflow"),
    "mlflow_experiment_name": lambda conv, key, value: (add_tracker(conv, "mlflow"),
                                                        conv.put(key, "training.project", value, "adds mlflow")),
    "mlflow_tracking_uri": unsupported("set the MLFLOW_TRACKING_URI environment variable"),
    "special_tokens": special_tokens,
    "tokens": unsupported("adding tokens to the vocabulary is not supported yet"),
    "resume_from_checkpoint": HF_RULES["resume_from_checkpoint"],
    "auto_resume_from_checkpoints": unsupported("continue a run with ft train --resume"),
    "hub_model_id": HF_RULES["hub_model_id"],
    "fsdp": HF_RULES["fsdp"],
    "fsdp_config": HF_RULES["fsdp_config"],
    "loss_watchdog_threshold": ignore("ft stops on a NaN/inf loss (training.nan_policy)"),
    "loss_watchdog_patience": ignore("ft stops on a NaN/inf loss (training.nan_policy)"),
    "logging_first_step": ignore("ft logs every training.logging_steps"),
    "debug": ignore("use ft --debug"),
    "local_rank": ignore("set by the launcher"),
    "plugins": unsupported("Axolotl plugins do not run in ft; ft has its own plugins"),
}


# ----------------------------------------------------------------------------- LLaMA-Factory


def llamafactory_method(source: dict[str, Any]) -> str:
    """LLaMA-Factory fine-tunes with LoRA by default; ``quantization_bit: 4`` makes it QLoRA."""
    kind = str(source.get("finetuning_type") or "lora").lower()
    if kind == "full":
        return "full"
    return "qlora" if kind == "lora" and str(source.get("quantization_bit")) == "4" else "lora"


def finetuning_type(conv: Conversion, key: str, value: Any) -> None:
    """lora and full map to ft methods; freeze (tuning only some layers) does not."""
    if str(value).lower() in ("lora", "full"):
        conv.record(key, MAPPED, f"method: {conv.method}")
    else:
        conv.record(key, UNSUPPORTED, "", f"finetuning_type {value!r}: ft offers lora, qlora and full "
                                          "(full can freeze layers: method_options.freeze_layers)")


def quantization_bit(conv: Conversion, key: str, value: Any) -> None:
    """4 bits: QLoRA; other widths are not offered."""
    if value in (None, ""):
        conv.record(key, IGNORED, "", "no quantization")
    elif str(value) == "4":
        conv.record(key, MAPPED, "method: qlora")
    else:
        conv.record(key, UNSUPPORTED, "", f"{value}-bit base loading is not offered; ft quantizes to 4 bits (qlora)")


def stage(conv: Conversion, key: str, value: Any) -> None:
    """Supervised fine-tuning (``sft``) and pre-training (``pt``) import; the preference/RL stages do not."""
    if value in ("sft", "pt"):
        conv.record(key, IGNORED, "", "ft trains on what the data is (instructions or raw text)")
    else:
        conv.record(key, UNSUPPORTED, "", f"stage {value!r}: preference methods come from the ftpref plugin "
                                          "(dpo, orpo, simpo, kto; see the preference tuning guide)")


def llamafactory_datasets(target: str) -> Rule:
    """``dataset`` names resolved through ``dataset_dir/dataset_info.json`` into files with their format."""
    def rule(conv: Conversion, key: str, value: Any) -> None:
        names = name_list(value)
        info = _dataset_info(conv)
        files, unresolved = [], []
        for name in names:
            entry = info.get(name)
            source = _llamafactory_source(conv, name, entry) if entry else None
            (files.append(source) if source else unresolved.append(name))
        if unresolved:
            conv.record(key, UNSUPPORTED, "", f"{', '.join(unresolved)}: not found in dataset_info.json (or a Hub/"
                                              f"script dataset); set {target} to the data file")
        if files:
            conv.put(key, target, files, "from dataset_info.json")
    return rule


def _dataset_info(conv: Conversion) -> dict[str, Any]:
    """``dataset_info.json`` of ``dataset_dir`` (default ``data``), next to the config or in the working directory."""
    folder = Path(str(conv.source.get("dataset_dir") or "data"))
    for base in (conv.base_dir, Path.cwd()):
        candidate = (base / folder / "dataset_info.json") if not folder.is_absolute() else folder / "dataset_info.json"
        if candidate.is_file():
            conv.raw.setdefault("_dataset_dir", str(candidate.parent))
            return json.loads(candidate.read_text(encoding="utf-8"))
    return {}


LF_COLUMNS = {"prompt": "instruction", "query": "input", "response": "output", "system": "system",
              "messages": "conversations"}


def _llamafactory_source(conv: Conversion, name: str, entry: dict[str, Any]) -> dict[str, Any] | None:
    """One dataset_info.json entry as an ft data source: file, Hub id, format and column names."""
    folder = Path(conv.raw["_dataset_dir"])
    if entry.get("file_name"):
        path = str(folder / entry["file_name"])
    elif entry.get("hf_hub_url"):
        path = entry["hf_hub_url"]
    else:
        return None
    tags = entry.get("tags") or {}
    fmt = "sharegpt" if entry.get("formatting") == "sharegpt" else "alpaca"
    if fmt == "sharegpt" and tags.get("role_tag") == "role":
        fmt = "messages"
    fields = {**LF_COLUMNS, "messages": "messages" if fmt == "messages" else "conversations"}
    columns = {fields[k]: v for k, v in (entry.get("columns") or {}).items() if k in fields and fields[k] != v}
    if columns:
        conv.raw.setdefault("data", {}).setdefault("columns", {}).update(columns)
    source = {"path": path, "format": fmt}
    if entry.get("split"):
        source["split"] = entry["split"]
    return source


LLAMAFACTORY_RULES: dict[str, Rule] = {
    **HF_RULES,
    "model_name_or_path": to("model"),
    "model_revision": to("revision"),
    "trust_remote_code": to("trust_remote_code"),
    "cache_dir": ignore("the Hugging Face cache is used"),
    "use_fast_tokenizer": ignore("ft loads the fast tokenizer"),
    "adapter_name_or_path": unsupported("continuing a saved adapter is not importable; train from the base model"),
    "flash_attn": attention({"fa2": "flash_attention_2", "sdpa": "sdpa", "disabled": "eager", "auto": None}),
    "stage": stage,
    "finetuning_type": finetuning_type,
    "quantization_bit": quantization_bit,
    "quantization_method": lambda conv, key, value: (
        conv.record(key, IGNORED, "", "ft quantizes with bitsandbytes") if value in (None, "bnb", "bitsandbytes")
        else conv.record(key, UNSUPPORTED, "", f"{value} quantization is not offered; ft uses bitsandbytes")),
    "quantization_type": qlora("quant_type"),
    "double_quantization": qlora("double_quant"),
    "lora_rank": lora("r"),
    "lora_alpha": lora("alpha"),
    "lora_dropout": lora("dropout"),
    "lora_target": lora("target_modules", target_modules),
    "additional_target": lora("modules_to_save", name_list),
    "use_dora": lora("use_dora"),
    "use_rslora": lora("use_rslora"),
    "disable_gradient_checkpointing": to("training.gradient_checkpointing", lambda v: not v),
    "dataset": llamafactory_datasets("data.train"),
    "eval_dataset": llamafactory_datasets("data.eval"),
    "dataset_dir": ignore("used to find dataset_info.json"),
    "template": template,
    "default_system": to("data.system_prompt"),
    "cutoff_len": to("data.max_seq_len"),
    "max_samples": to("data.max_samples"),
    "val_size": eval_share,
    "packing": to("data.packing"),
    "neat_packing": lambda conv, key, value: (
        conv.put(key, "data.packing", True, "ft's packing never attends across examples") if value
        else conv.record(key, IGNORED, "", "off")),
    "train_on_prompt": to("data.train_on_inputs"),
    "mask_history": unsupported("ft trains on every assistant turn"),
    "overwrite_cache": ignore("ft's cache is keyed by the data and settings"),
    "preprocessing_num_workers": to("data.num_proc"),
    "tokenized_path": ignore("ft caches tokenized data by fingerprint (data.cache_dir)"),
    "streaming": unsupported("ft reads the whole dataset"),
    "plot_loss": ignore("ft writes metrics.jsonl; ft benchmark draws the loss"),
    "include_num_input_tokens_seen": ignore("ft always counts tokens"),
    "enable_thinking": ignore("ft renders the tokenizer's template as it is"),
    "compute_accuracy": ignore("use ft evaluate for metrics"),
    "predict_with_generate": unsupported("use ft evaluate or ft generate after training"),
    "pref_beta": unsupported("preference methods come from the ftpref plugin"),
}


# ----------------------------------------------------------------------------- TRL


def trl_method(source: dict[str, Any]) -> str:
    """TRL fine-tunes fully unless ``use_peft``; 4-bit loading makes it QLoRA."""
    if not source.get("use_peft"):
        return "full"
    return "qlora" if source.get("load_in_4bit") else "lora"


def trl_dataset(conv: Conversion, key: str, value: Any) -> None:
    """``dataset_name`` with its config and train split; the test split becomes eval data when evaluating."""
    source: dict[str, Any] = {"path": value}
    if conv.source.get("dataset_config"):
        source["name"] = conv.source["dataset_config"]
    if conv.source.get("dataset_train_split"):
        source["split"] = conv.source["dataset_train_split"]
    conv.put(key, "data.train", [source])
    strategy = conv.source.get("eval_strategy", conv.source.get("evaluation_strategy", "no"))
    # "no" read from a command line is YAML's false.
    if strategy not in (None, "no", False):
        conv.raw["data"]["eval"] = [{**source, "split": conv.source.get("dataset_test_split", "test")}]


def loss_on_answers(conv: Conversion, key: str, value: Any) -> None:
    """``completion_only_loss`` / ``assistant_only_loss``: loss on the answer only is ft's default."""
    if value is None:
        conv.record(key, IGNORED, "", "TRL's default")
        return
    conv.put(key, "data.train_on_inputs", not value)


TRL_RULES: dict[str, Rule] = {
    **HF_RULES,
    "model_name_or_path": to("model"),
    "model_revision": to("revision"),
    "dtype": to("dtype", lambda v: {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}.get(v, v)),
    "torch_dtype": to("dtype", lambda v: {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}.get(v, v)),
    "trust_remote_code": to("trust_remote_code"),
    "attn_implementation": to("attn_implementation"),
    "use_peft": method_key(),
    "lora_r": lora("r"),
    "lora_alpha": lora("alpha"),
    "lora_dropout": lora("dropout"),
    "lora_target_modules": lora("target_modules", target_modules),
    "lora_modules_to_save": lora("modules_to_save", name_list),
    "lora_task_type": ignore("ft trains causal language models"),
    "use_rslora": lora("use_rslora"),
    "use_dora": lora("use_dora"),
    "load_in_4bit": AXOLOTL_RULES["load_in_4bit"],
    "load_in_8bit": AXOLOTL_RULES["load_in_8bit"],
    "bnb_4bit_quant_type": qlora("quant_type"),
    "use_bnb_nested_quant": qlora("double_quant"),
    "dataset_name": trl_dataset,
    "dataset_config": lambda conv, key, value: conv.record(key, MAPPED, "data.train[0].name"),
    "dataset_train_split": lambda conv, key, value: conv.record(key, MAPPED, "data.train[0].split"),
    "dataset_test_split": lambda conv, key, value: (
        conv.record(key, MAPPED, "data.eval[0].split") if conv.get("data.eval") else
        conv.record(key, IGNORED, "", "no evaluation (eval_strategy: no)")),
    "dataset_streaming": unsupported("ft reads the whole dataset"),
    "max_length": to("data.max_seq_len"),
    "max_seq_length": to("data.max_seq_len"),
    "packing": to("data.packing"),
    "packing_strategy": ignore("ft packs without attention across examples"),
    "padding_free": to("data.padding_free"),
    "completion_only_loss": loss_on_answers,
    "assistant_only_loss": loss_on_answers,
    "dataset_text_field": lambda conv, key, value: (
        conv.record(key, IGNORED, "", "ft's default column name") if value == "text"
        else conv.put(key, "data.columns.text", value)),
    "dataset_num_proc": to("data.num_proc"),
    "chat_template_path": to("data.chat_template"),
    "eos_token": unsupported("ft uses the tokenizer's end-of-sequence token"),
    "use_liger_kernel": unsupported("Liger kernels are not offered"),
    "model_init_kwargs": unsupported("set model loading through ft's keys (dtype, attn_implementation, ...)"),
}


# ----------------------------------------------------------------------------- the import


RULES = {"axolotl": AXOLOTL_RULES, "llamafactory": LLAMAFACTORY_RULES, "trl": TRL_RULES}
METHODS = {"axolotl": axolotl_method, "llamafactory": llamafactory_method, "trl": trl_method}

#: Keys that only one peer writes: detection counts them.
SIGNATURES = {
    "axolotl": {"base_model", "datasets", "micro_batch_size", "sequence_len", "num_epochs", "adapter",
                "sample_packing", "val_set_size", "lora_target_linear", "wandb_project", "lora_target_modules"},
    "llamafactory": {"stage", "finetuning_type", "dataset", "template", "cutoff_len", "lora_rank", "lora_target",
                     "quantization_bit", "val_size", "train_on_prompt", "dataset_dir", "plot_loss"},
    "trl": {"dataset_name", "use_peft", "max_length", "max_seq_length", "dataset_text_field", "completion_only_loss",
            "assistant_only_loss", "dataset_train_split", "dataset_test_split", "packing_strategy"},
}


def detect_peer(source: dict[str, Any], path: str = "config") -> str:
    """Which tool wrote ``source``, from the keys only that tool uses."""
    scores = {peer: len(keys & set(source)) for peer, keys in SIGNATURES.items()}
    best = max(scores.values())
    winners = [peer for peer, score in scores.items() if score == best]
    if best == 0 or len(winners) > 1:
        raise ConfigError(f"{path}: cannot tell which tool wrote this config; pass --from "
                          f"{'|'.join(PEERS)}")
    return winners[0]


def convert(source: dict[str, Any], peer: str, base_dir: Path | str = ".") -> Conversion:
    """Convert a peer's config mapping into an ft config mapping, with one outcome per source key."""
    if peer not in RULES:
        raise ConfigError(f"--from {peer!r}: not a known tool; choose {', '.join(PEERS)}")
    conv = Conversion(peer, source, Path(base_dir))
    conv.raw["method"] = METHODS[peer](source)
    rules = RULES[peer]
    for key, value in source.items():
        rule = rules.get(key)
        if value is None:
            conv.record(key, IGNORED, "", "empty")
        elif rule is not None:
            rule(conv, key, value)
        else:
            _fallback(conv, key, value)
    _finish(conv)
    return conv


def _fallback(conv: Conversion, key: str, value: Any) -> None:
    """A key no table knows: a TrainingArguments field goes to the escape hatch; anything else is unknown."""
    if key in trainer_arg_names() and key not in TRAINER_ARG_OWNERS and key not in TRAINER_ARGS_RESERVED:
        conv.put(key, f"training.trainer_args.{key}", value, "passed to TrainingArguments as it is")
    else:
        conv.record(key, UNSUPPORTED, "", f"not a {conv.peer} key ft knows")


def _finish(conv: Conversion) -> None:
    """Defaults that follow from several keys: LLaMA-Factory's alpha of twice the rank; no internal keys."""
    conv.raw.pop("_dataset_dir", None)
    if conv.peer == "llamafactory" and conv.method in ("lora", "qlora"):
        options = conv.raw.setdefault("method_options", {})
        if "alpha" not in options:
            options["alpha"] = 2 * options.get("r", 8)
            options.setdefault("r", 8)
    if conv.raw.get("method_options") == {}:
        conv.raw.pop("method_options")


def import_file(path: str | Path, peer: str | None = None) -> Conversion:
    """Read a peer's YAML config (or a ``trl sft --key value ...`` command line) and convert it.

    ``peer`` is detected from the keys when None.
    """
    from ftcore.config import read_yaml

    text = Path(path).read_text(encoding="utf-8") if Path(path).is_file() else ""
    source = cli_arguments(text) if _is_command_line(text) else read_yaml(path)
    return convert(source, peer or detect_peer(source, str(path)), Path(path).parent)


def _is_command_line(text: str) -> bool:
    """True for a command line such as ``trl sft --model_name_or_path m ...`` (what TRL's docs show), not YAML."""
    import yaml

    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError:
        loaded = None
    return not isinstance(loaded, dict) and any(w.startswith("--") for w in text.split())


def cli_arguments(text: str) -> dict[str, Any]:
    """``--key value`` / ``--key=value`` / ``--flag`` arguments as a mapping (values typed as YAML scalars).

    Words before the first option (``trl sft``, ``accelerate launch ...``) and comments are skipped.
    """
    import shlex

    import yaml

    words = shlex.split(text.replace("\\\n", " "), comments=True)
    found: dict[str, Any] = {}
    key: str | None = None
    for word in words:
        if word.startswith("--"):
            key, _, value = word[2:].partition("=")
            found[key] = yaml.safe_load(value) if value else True
            if value:
                key = None
        elif key is not None:
            found[key] = yaml.safe_load(word)
            key = None
    return found


ORDER = ("model", "tokenizer", "revision", "method", "method_options", "output_dir", "seed", "dtype",
         "attn_implementation", "trust_remote_code", "data", "training")


def as_yaml(conv: Conversion, origin: str, target: str = "ft.yaml") -> str:
    """The imported ft config as YAML, in ft's key order, with a header naming where it came from."""
    import yaml

    ordered = {k: conv.raw[k] for k in ORDER if k in conv.raw}
    ordered.update({k: v for k, v in conv.raw.items() if k not in ordered})
    header = f"# ft train --config {target}\n# Imported from {origin} ({conv.peer}) by ft config import.\n"
    return header + yaml.safe_dump(ordered, sort_keys=False, allow_unicode=True)


def table(conv: Conversion) -> str:
    """One row per source key: key, outcome, ft key, note, in aligned columns."""
    rows = [("source key", "outcome", "ft key", "note")]
    rows += [(o.key, o.status, o.target, o.note) for o in conv.keys]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(cell.ljust(widths[i]) if i < 3 else cell for i, cell in enumerate(r)).rstrip() for r in rows]
    counts = {s: sum(o.status == s for o in conv.keys) for s in (MAPPED, IGNORED, UNSUPPORTED)}
    lines.append(f"{len(conv.keys)} keys: {counts[MAPPED]} mapped, {counts[IGNORED]} ignored, "
                 f"{counts[UNSUPPORTED]} unsupported")
    return "\n".join(lines)


def problems(conv: Conversion) -> list[str]:
    """What ft's validation says about the imported config (empty when it is valid as it is)."""
    from ftcore.config import build_config

    try:
        build_config(conv.raw)
    except ConfigError as exc:
        return exc.problems
    return []
