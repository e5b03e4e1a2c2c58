"""LLaMA-Factory configs: ``stage`` sft/pt (supervised), dpo (``pref_loss`` sigmoid, ipo, hinge, orpo, simpo) and kto
map to ft's methods; rm and ppo are refused. Datasets resolve through ``dataset_info.json``, paths kept relative."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ftimport.kinds import DPO_LOSSES, kind_row, option
from ftimport.rules import (
    HF_RULES,
    IGNORED,
    MAPPED,
    UNSUPPORTED,
    Conversion,
    Rule,
    Tool,
    attention,
    default,
    eval_share,
    ignore,
    lora,
    method_key,
    name_list,
    num_proc,
    qlora,
    remote_code,
    target_modules,
    template,
    to,
    unsupported,
)


def llamafactory_base(source: dict[str, Any]) -> str:
    """LLaMA-Factory fine-tunes with LoRA by default; ``quantization_bit: 4`` makes it QLoRA."""
    kind = str(source.get("finetuning_type") or "lora").lower()
    if kind == "full":
        return "full"
    return "qlora" if kind == "lora" and str(source.get("quantization_bit")) == "4" else "lora"


def finetuning_type(conv: Conversion, key: str, value: Any) -> None:
    """lora and full map to ft methods; freeze (tuning only some layers) does not."""
    if str(value).lower() in ("lora", "full"):
        method_key()(conv, key, value)
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


#: ``pref_loss`` of ``stage: dpo`` → (ft method, DPO loss_type or None).
PREF_LOSSES = {"orpo": ("orpo", None), "simpo": ("simpo", None),
               **{loss: ("dpo", loss) for loss in DPO_LOSSES}}
STAGES_REFUSED = {"rm": "reward-model training (stage rm) is not a method ft offers",
                  "ppo": "PPO is not a method ft offers (ft has grpo, which learns from reward functions)"}


def llamafactory_method(source: dict[str, Any]) -> str | None:
    """ft's method for ``stage`` (and ``pref_loss``); None for supervised stages and kinds ft lacks (a blocking row)."""
    kind = str(source.get("stage") or "sft").lower()
    if kind == "dpo":
        found = PREF_LOSSES.get(str(source.get("pref_loss") or "sigmoid").lower())
        return found[0] if found else None
    return "kto" if kind == "kto" else None


def stage(conv: Conversion, key: str, value: Any) -> None:
    """``stage``: sft/pt train supervised, dpo and kto map to ft's methods, rm/ppo (and unknown stages) block."""
    kind = str(value).lower()
    if kind in ("sft", "pt"):
        kind_row(conv, key, value, conv.base, "supervised: ft trains on what the data is (instructions or raw text)")
    elif kind in ("dpo", "kto"):
        loss = str(conv.source.get("pref_loss") or "sigmoid").lower()
        if kind == "dpo" and loss not in PREF_LOSSES:
            kind_row(conv, key, value, None, f"pref_loss {loss!r} is not a loss ft offers (ft has orpo, simpo and "
                                             f"TRL's DPO losses: {', '.join(DPO_LOSSES)})")
        else:
            kind_row(conv, key, value, conv.method, "" if kind == "kto" else f"pref_loss {loss}")
    else:
        kind_row(conv, key, value, None, STAGES_REFUSED.get(kind, f"stage {value!r} is not a kind of training ft knows"))


def pref_loss(conv: Conversion, key: str, value: Any) -> None:
    """``pref_loss``: chose the method with ``stage: dpo``; a DPO loss other than sigmoid is its loss_type."""
    if str(conv.source.get("stage")).lower() != "dpo":
        conv.record(key, IGNORED, "", "only read with stage: dpo")
        return
    found = PREF_LOSSES.get(str(value).lower())
    if found is None:
        conv.record(key, UNSUPPORTED, "", "see the stage row")
    elif found[1] not in (None, "sigmoid"):
        conv.put(key, "method_options.loss_type", found[1])
    else:
        conv.record(key, MAPPED, f"method: {found[0]}")


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
    """``dataset_info.json`` of ``dataset_dir`` (default ``data``), in the working directory (where LLaMA-Factory
    looks) or next to the config; a relative folder stays relative (to the working directory, as ft reads it)."""
    folder = Path(str(conv.source.get("dataset_dir") or "data"))
    for base in (Path("."), conv.base_dir):
        candidate = (base / folder / "dataset_info.json") if not folder.is_absolute() else folder / "dataset_info.json"
        if candidate.is_file():
            found = candidate.parent
            if not folder.is_absolute() and found.is_absolute():
                found = Path(os.path.relpath(found))
            conv.raw.setdefault("_dataset_dir", found.as_posix())
            return json.loads(candidate.read_text(encoding="utf-8"))
    return {}


LF_COLUMNS = {"prompt": "instruction", "query": "input", "response": "output", "system": "system",
              "messages": "conversations"}


def _llamafactory_source(conv: Conversion, name: str, entry: dict[str, Any]) -> dict[str, Any] | None:
    """One dataset_info.json entry as an ft data source: file, Hub id, format and column names."""
    folder = Path(conv.raw["_dataset_dir"])
    if entry.get("file_name"):
        path = (folder / entry["file_name"]).as_posix()
    elif entry.get("hf_hub_url"):
        path = entry["hf_hub_url"]
    else:
        return None
    tags = entry.get("tags") or {}
    if conv.method != conv.base:
        return _preference_source(conv, path, entry)
    if str(conv.source.get("stage")).lower() == "pt":  # pre-training reads raw text from the prompt column
        column = (entry.get("columns") or {}).get("prompt", "text")
        if column != "text":
            conv.raw.setdefault("data", {}).setdefault("columns", {})["text"] = column
        return {"path": path, "format": "text"}
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


def _preference_source(conv: Conversion, path: str, entry: dict[str, Any]) -> dict[str, Any] | None:
    """A ``ranking`` (DPO) or ``kto_tag`` (KTO) dataset as ftpref's format, with its column names."""
    columns = entry.get("columns") or {}
    sharegpt = entry.get("formatting") == "sharegpt"
    if conv.method == "kto":
        fmt = "messages_unpaired" if sharegpt else "unpaired"
        names = {"messages": "messages", "kto_tag": "label"} if sharegpt else \
                {"prompt": "prompt", "response": "completion", "kto_tag": "label"}
    else:
        if not entry.get("ranking"):
            return None
        fmt = "sharegpt_preference" if sharegpt else "preference"
        names = {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"} if sharegpt else \
                {"prompt": "prompt", "chosen": "chosen", "rejected": "rejected"}
    if not sharegpt:
        columns = {"prompt": "instruction", **columns}
    mapped = {names[k]: v for k, v in columns.items() if k in names and names[k] != v}
    if mapped:
        conv.raw.setdefault("data", {}).setdefault("columns", {}).update(mapped)
    return {"path": path, "format": fmt}


LLAMAFACTORY_RULES: dict[str, Rule] = {
    **HF_RULES,
    "model_name_or_path": to("model"),
    "model_revision": to("revision"),
    "trust_remote_code": remote_code,
    "attn_implementation": to("attn_implementation"),
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
    "preprocessing_num_workers": num_proc,
    "tokenized_path": ignore("ft caches tokenized data by fingerprint (data.cache_dir)"),
    "streaming": unsupported("ft reads the whole dataset"),
    "plot_loss": ignore("ft writes metrics.jsonl; ft benchmark draws the loss"),
    "include_num_input_tokens_seen": ignore("ft always counts tokens"),
    "enable_thinking": ignore("ft renders the tokenizer's template as it is"),
    "compute_accuracy": ignore("use ft evaluate for metrics"),
    "predict_with_generate": unsupported("use ft evaluate or ft generate after training"),
    "pref_beta": option("beta", ("dpo", "orpo", "simpo", "kto"), float),
    "pref_loss": pref_loss,
    "pref_ftx": lambda conv, key, value: (
        conv.record(key, IGNORED, "", "0: no supervised term") if not value else
        conv.record(key, UNSUPPORTED, "", "ft's dpo adds no supervised loss; orpo does (stage dpo, pref_loss orpo)")),
    "simpo_gamma": option("gamma", ("simpo",), float),
    "dpo_label_smoothing": option("label_smoothing", ("dpo",), float),
    "kto_chosen_weight": option("desirable_weight", ("kto",), float),
    "kto_rejected_weight": option("undesirable_weight", ("kto",), float),
}


def finish(conv: Conversion) -> None:
    """LLaMA-Factory's defaults where ft's differ: LoRA alpha twice the rank, LoRA dropout 0, SimPO's beta 0.1."""
    if conv.base in ("lora", "qlora"):
        options = conv.raw.get("method_options", {})
        if "r" not in options:
            default(conv, "lora_rank", "method_options.r", 8, "LLaMA-Factory's default 8; ft's is 16")
        if "alpha" not in options:
            rank = conv.raw["method_options"]["r"]
            default(conv, "lora_alpha", "method_options.alpha", 2 * rank,
                    f"LLaMA-Factory's default: twice the rank ({rank}); ft's is 32")
        if "dropout" not in options:
            default(conv, "lora_dropout", "method_options.dropout", 0.0, "LLaMA-Factory's default 0; ft's is 0.05")
    if conv.method in ("dpo", "orpo", "simpo", "kto") and "beta" not in conv.raw.get("method_options", {}):
        note = "LLaMA-Factory's default pref_beta" + ("; ft's simpo default is 2.0" if conv.method == "simpo" else "")
        default(conv, "pref_beta", "method_options.beta", 0.1, note)


LLAMAFACTORY = Tool("llamafactory", LLAMAFACTORY_RULES, llamafactory_base, llamafactory_method, finish)
SIGNATURE = frozenset({"stage", "finetuning_type", "dataset", "template", "cutoff_len", "lora_rank", "lora_target",
                       "quantization_bit", "val_size", "train_on_prompt", "dataset_dir", "plot_loss", "pref_beta",
                       "pref_loss"})
