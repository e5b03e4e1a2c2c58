"""Axolotl configs: supervised (``adapter`` lora/qlora or full) and ``rl`` (dpo, ipo, orpo, kto, simpo, grpo) with
``rl_beta``, the KTO weights and the ``trl:`` block of GRPO configs."""

from __future__ import annotations

from typing import Any

from ftimport.kinds import TRAINER_RULES, kind_row, option, reward_funcs
from ftimport.rules import (
    HF_RULES,
    IGNORED,
    MAPPED,
    UNSUPPORTED,
    Conversion,
    Rule,
    Tool,
    add_tracker,
    attention,
    eval_share,
    flag_to_tracker,
    ignore,
    lora,
    method_key,
    name_list,
    num_proc,
    precision,
    remote_code,
    scheduler,
    target_modules,
    template,
    to,
    unsupported,
)


def axolotl_base(source: dict[str, Any]) -> str:
    """Axolotl fine-tunes fully unless ``adapter`` is lora or qlora (QLoRA also from ``load_in_4bit``)."""
    adapter = str(source.get("adapter") or "").lower()
    if adapter == "qlora" or (adapter == "lora" and source.get("load_in_4bit")):
        return "qlora"
    return "lora" if adapter == "lora" else "full"


#: Axolotl's ``rl`` values and ft's method for each (ipo is DPO with loss_type ipo).
RL_METHODS = {"dpo": "dpo", "ipo": "dpo", "orpo": "orpo", "kto": "kto", "simpo": "simpo", "grpo": "grpo"}


def axolotl_method(source: dict[str, Any]) -> str | None:
    """ft's method: the ``rl`` kind's (None: supervised, or a kind ft lacks, whose row blocks the import)."""
    rl = source.get("rl")
    return RL_METHODS.get(str(rl).lower()) if rl else None


def rl(conv: Conversion, key: str, value: Any) -> None:
    """``rl``: a preference or RL method, or blocking when ft has none for it."""
    name = str(value).lower()
    if name == "ipo":
        conv.raw.setdefault("method_options", {})["loss_type"] = "ipo"
    method = RL_METHODS.get(name)
    why = "DPO with loss_type ipo" if name == "ipo" else ""
    kind_row(conv, key, value, method, why or f"rl {value!r} is not a method ft offers (ft has "
                                               f"{', '.join(sorted(set(RL_METHODS)))})")


def trl_block(conv: Conversion, key: str, value: Any) -> None:
    """Axolotl's ``trl:`` block: TRL's GRPO/DPO settings, one row per entry key."""
    if not isinstance(value, dict):
        conv.record(key, UNSUPPORTED, "", "expected a mapping of TRL settings")
        return
    conv.record(key, MAPPED, "method_options", f"{len(value)} TRL setting(s), one row each")
    for name, setting in value.items():
        sub = f"{key}.{name}"
        if setting is None:
            conv.record(sub, IGNORED, "", "empty")
        elif name == "reward_funcs":
            reward_funcs("trl")(conv, sub, setting)
        elif name in TRAINER_RULES:
            TRAINER_RULES[name](conv, sub, setting)
        else:
            conv.record(sub, UNSUPPORTED, "", "not a TRL setting ft knows")


AXOLOTL_TYPES = {"alpaca": "alpaca", "alpaca_chat": "alpaca", "alpaca_w_system": "alpaca", "sharegpt": "sharegpt",
                 "completion": "text", "pretrain": "text", "chat_template": "messages"}


def axolotl_datasets(target: str) -> Rule:
    """``datasets`` / ``test_datasets``: each entry's path, type, split and name; one row per entry key."""
    def rule(conv: Conversion, key: str, value: Any) -> None:
        entries = value if isinstance(value, list) else [value]
        first = len(conv.rows)
        files = [f for i, entry in enumerate(entries) if (f := _axolotl_entry(conv, f"{key}[{i}]", entry))]
        if files:
            conv.put(key, target, files, f"{len(files)} source(s)")
        else:
            conv.record(key, UNSUPPORTED, "", "no dataset entry could be imported")
        # The list's own row first, then one row per entry key.
        conv.rows.insert(first, conv.rows.pop())
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
    if conv.method != conv.base:
        return _rl_type(conv, key, str(value))
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


#: Axolotl's preference/KTO strategies (the part after the template name) and the columns they read.
RL_COLUMNS = {"intel": {"prompt": "question"},
              "argilla": {"prompt": "instruction", "chosen": "chosen_response", "rejected": "rejected_response"}}


def _rl_type(conv: Conversion, key: str, value: str) -> str:
    """A dataset type of an ``rl`` config: ft's preference, unpaired or prompt format, with its column names."""
    if conv.method == "grpo":
        conv.record(key, MAPPED, f"{_data_key(key)}.format", f"format prompt; Axolotl's transform {value!r} is Python "
                                                              "ft does not run: the data needs a prompt column "
                                                              "(data.columns maps another)")
        return "prompt"
    fmt = "unpaired" if conv.method == "kto" else "preference"
    columns = dict(RL_COLUMNS.get(value.rsplit(".", 1)[-1], {}))
    if fmt == "unpaired":
        columns.pop("chosen", None), columns.pop("rejected", None)
    if columns:
        conv.raw.setdefault("data", {}).setdefault("columns", {}).update(columns)
    shown = f" with columns {columns}" if columns else ""
    conv.record(key, MAPPED, f"{_data_key(key)}.format", f"format {fmt}{shown}")
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


SPECIAL = ("bos_token", "eos_token", "pad_token", "unk_token", "sep_token", "cls_token", "mask_token")


def special_tokens(conv: Conversion, key: str, value: Any) -> None:
    """``special_tokens`` → ft's ``special_tokens`` (a token the tokenizer lacks is added, as in Axolotl)."""
    unknown = sorted(set(value) - set(SPECIAL)) if isinstance(value, dict) else ["(not a mapping)"]
    if unknown:
        conv.record(key, UNSUPPORTED, "", f"{', '.join(unknown)}: ft sets {', '.join(SPECIAL)}")
    else:
        conv.put(key, "special_tokens", dict(value))


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
    "trust_remote_code": remote_code,
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
    "dataset_processes": num_proc,
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
    "tokens": to("added_tokens", name_list),
    "attn_implementation": to("attn_implementation"),
    "rl": rl,
    "rl_beta": option("beta", ("dpo", "orpo", "simpo", "kto", "grpo"), float),
    "simpo_gamma": option("gamma", ("simpo",), float),
    "kto_desirable_weight": option("desirable_weight", ("kto",), float),
    "kto_undesirable_weight": option("undesirable_weight", ("kto",), float),
    "dpo_label_smoothing": option("label_smoothing", ("dpo",), float),
    "trl": trl_block,
    "rl_adapter_ref_model": ignore("ft's reference is the base with the adapter off"),
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

AXOLOTL = Tool("axolotl", AXOLOTL_RULES, axolotl_base, axolotl_method)
SIGNATURE = frozenset({"base_model", "datasets", "micro_batch_size", "sequence_len", "num_epochs", "adapter",
                       "sample_packing", "val_set_size", "lora_target_linear", "wandb_project", "lora_target_modules",
                       "rl", "rl_beta"})
