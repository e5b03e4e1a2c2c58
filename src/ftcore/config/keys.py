"""Where a key belongs: ft's own key paths, the names peers and ``TrainingArguments`` use for them.

One table serves three purposes: did-you-mean across config sections (``learning_rate`` at the top level
belongs in ``training``), peer names pointing to ft's (``micro_batch_size`` → ``training.batch_size``), and
checking ``training.trainer_args`` (a field ft already has is set through ft's key, not the escape hatch).
Nothing here imports torch or transformers: ``TrainingArguments``' field names are read from its source.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
from pathlib import Path
from typing import Any

from ftcore.util.suggest import closest

#: ``TrainingArguments`` fields that ft sets from its own keys: name → the ft key to use instead.
TRAINER_ARG_OWNERS = {
    "output_dir": "output_dir",
    "num_train_epochs": "training.epochs",
    "max_steps": "training.max_steps",
    "learning_rate": "training.learning_rate",
    "lr_scheduler_type": "training.lr_scheduler",
    "lr_scheduler_kwargs": "training.lr_scheduler_kwargs",
    "warmup_steps": "training.warmup_steps",
    "warmup_ratio": "training.warmup_ratio",
    "per_device_train_batch_size": "training.batch_size",
    "per_device_eval_batch_size": "training.eval_batch_size",
    "gradient_accumulation_steps": "training.gradient_accumulation",
    "gradient_checkpointing": "training.gradient_checkpointing",
    "weight_decay": "training.weight_decay",
    "max_grad_norm": "training.max_grad_norm",
    "optim": "training.optimizer",
    "adam_beta1": "training.adam_beta1",
    "adam_beta2": "training.adam_beta2",
    "adam_epsilon": "training.adam_epsilon",
    "bf16": "training.precision",
    "fp16": "training.precision",
    "tf32": "training.tf32",
    "logging_steps": "training.logging_steps",
    "eval_steps": "training.eval_steps",
    "eval_strategy": "training.eval_steps",
    "save_steps": "training.save_steps",
    "save_strategy": "training.save_steps",
    "save_total_limit": "training.save_total_limit",
    "report_to": "training.report_to",
    "run_name": "training.run_name",
    "project": "training.project",
    "logging_dir": "training.logging_dir",
    "neftune_noise_alpha": "training.neftune_noise_alpha",
    "load_best_model_at_end": "training.load_best_model_at_end",
    "metric_for_best_model": "training.metric_for_best_model",
    "greater_is_better": "training.greater_is_better",
    "dataloader_num_workers": "training.dataloader_workers",
    "torch_compile": "training.torch_compile",
    "fsdp": "training.fsdp",
    "fsdp_config": "training.fsdp",
    "deepspeed": "training.deepspeed",
    "seed": "seed",
    "group_by_length": "data.group_by_length",
    "train_sampling_strategy": "data.group_by_length",
}

#: Fields ft must set itself for its data pipeline and progress display to work.
TRAINER_ARGS_RESERVED = {
    "remove_unused_columns": "ft's collator chooses the columns",
    "label_names": "ft's collator names the labels",
    "disable_tqdm": "ft shows its own progress",
    "include_num_input_tokens_seen": "ft counts tokens for tokens/s and the manifest",
    "resume_from_checkpoint": "use ft train --resume",
}

#: Names other tools (Axolotl, LLaMA-Factory, TRL) and common shorthands use for ft keys.
PEER_NAMES = {
    **TRAINER_ARG_OWNERS,
    "base_model": "model",
    "model_name_or_path": "model",
    "model_name": "model",
    "tokenizer_config": "tokenizer",
    "tokenizer_name_or_path": "tokenizer",
    "model_revision": "revision",
    "torch_dtype": "dtype",
    "micro_batch_size": "training.batch_size",
    "batch_size": "training.batch_size",
    "eval_batch_size": "training.eval_batch_size",
    "num_epochs": "training.epochs",
    "epochs": "training.epochs",
    "lr": "training.learning_rate",
    "lr_scheduler": "training.lr_scheduler",
    "scheduler": "training.lr_scheduler",
    "optimizer": "training.optimizer",
    "warmup": "training.warmup_steps",
    "sequence_len": "data.max_seq_len",
    "cutoff_len": "data.max_seq_len",
    "max_seq_length": "data.max_seq_len",
    "max_length": "data.max_seq_len",
    "seq_len": "data.max_seq_len",
    "sample_packing": "data.packing",
    "packing": "data.packing",
    "train_on_inputs": "data.train_on_inputs",
    "train_on_prompt": "data.train_on_inputs",
    "val_set_size": "data.eval_ratio",
    "val_size": "data.eval_ratio",
    "datasets": "data.train",
    "dataset": "data.train",
    "dataset_name": "data.train",
    "test_datasets": "data.eval",
    "eval_dataset": "data.eval",
    "template": "data.chat_template",
    "chat_template": "data.chat_template",
    "max_samples": "data.max_samples",
    "dataset_processes": "data.num_proc",
    "preprocessing_num_workers": "data.num_proc",
    "wandb_project": "training.project",
    "wandb_name": "training.run_name",
    "flash_attention": "attn_implementation",
    "flash_attn": "attn_implementation",
    "early_stopping_patience": "training.early_stopping_patience",
    "adapter": "method",
    "finetuning_type": "method",
}


def peer_target(name: str) -> str | None:
    """Where another tool's key ``name`` goes in ft: ft's own table, then what installed methods declare
    (:attr:`ftcore.MethodSpec.peer_keys`: ``lora_r`` comes from ftlora); None when nobody knows it."""
    if name in PEER_NAMES:
        return PEER_NAMES[name]
    from ftcore.contract.plugins import get_registry

    for spec, _plugin in get_registry().methods.values():
        if name in spec.peer_keys:
            return spec.peer_keys[name]
    return None


@functools.lru_cache(maxsize=1)
def trainer_arg_names() -> frozenset[str]:
    """Field names of ``transformers.TrainingArguments``, read from its source without importing it.

    Empty when transformers is not installed (the names then go unchecked until training starts).
    """
    spec = importlib.util.find_spec("transformers")
    if spec is None or not spec.submodule_search_locations:
        return frozenset()
    source = Path(next(iter(spec.submodule_search_locations))) / "training_args.py"
    if not source.is_file():
        return frozenset()
    tree = ast.parse(source.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "TrainingArguments":
            return frozenset(item.target.id for item in node.body
                             if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name))
    return frozenset()


def check_trainer_args(values: dict[str, Any]) -> list[str]:
    """Problems with ``training.trainer_args``: unknown fields (with did-you-mean), fields ft owns or reserves."""
    known = trainer_arg_names()
    problems = []
    for name in values:
        if name in TRAINER_ARG_OWNERS:
            problems.append(f"{name!r} is set through ft's own key {TRAINER_ARG_OWNERS[name]}")
        elif name in TRAINER_ARGS_RESERVED:
            problems.append(f"{name!r} cannot be overridden: {TRAINER_ARGS_RESERVED[name]}")
        elif known and name not in known:
            near = closest(name, known)
            hint = f" (did you mean {near!r}?)" if near else ""
            problems.append(f"{name!r} is not a transformers.TrainingArguments field{hint}")
    return problems


def submodel(annotation: Any) -> Any:
    """The pydantic model inside an annotation such as ``X | None`` or ``list[str | X]``, else the annotation."""
    if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = submodel(arg)
        if isinstance(found, type) and hasattr(found, "model_fields"):
            return found
    return annotation


def key_paths(model: Any, prefix: str = "") -> dict[str, str]:
    """Every key of a pydantic config model and its submodels: leaf name → dotted path (first wins)."""
    found: dict[str, str] = {}
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        found.setdefault(name, path)
        sub = submodel(info.annotation)
        if isinstance(sub, type) and hasattr(sub, "model_fields") and name in ("data", "training"):
            for leaf, deeper in key_paths(sub, f"{path}.").items():
                found.setdefault(leaf, deeper)
    return found


def where_it_belongs(name: str, section: str, root: Any) -> str | None:
    """`` (did you mean …)`` for an unknown key ``name`` in ``section`` ("" for the top level), or None.

    A key of another section points there (``learning_rate`` → ``training.learning_rate``); a peer's name
    points to ft's (``micro_batch_size`` → ``training.batch_size``).
    """
    paths = key_paths(root)
    here = f"{section}.{name}" if section else name
    own = paths.get(name)
    if own is not None and own != here:
        return f" (did you mean {own}? it belongs in {_section_name(own)})"
    target = peer_target(name)
    if target is not None and target != here:
        return peer_hint(target)
    return None


def misspelt_elsewhere(name: str, section: str, root: Any) -> str | None:
    """`` (did you mean training.learning_rate? ...)`` for a misspelling of another section's key, or None."""
    from ftcore.util.suggest import closest

    paths = key_paths(root)
    near = closest(name, paths, cutoff=0.8)
    if near is None or paths[near].rpartition(".")[0] == section:
        return None
    return f" (did you mean {paths[near]}? it belongs in {_section_name(paths[near])})"


def peer_hint(target: str) -> str:
    """`` (ft calls it data.max_seq_len)`` for a key, `` (in ft: method: qlora)`` for a setting."""
    return f" (in ft: {target})" if ": " in target else f" (ft calls it {target})"


def _section_name(path: str) -> str:
    section = path.rpartition(".")[0]
    return f"the {section} section" if section else "the top level"
