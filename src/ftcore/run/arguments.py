"""``transformers.TrainingArguments`` for a run: ft's keys, precision, FSDP/DeepSpeed, trackers, the escape hatch."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftcore.errors import ConfigError
from ftcore.run import distributed

if TYPE_CHECKING:
    from ftcore.config.schema import FtConfig


def training_arguments(config: FtConfig, output_dir: Path, has_eval: bool, model: Any = None) -> Any:
    """``transformers.TrainingArguments`` for ``config``, checkpointing into ``output_dir``.

    ``model`` (optional) names the decoder layer class that FSDP wraps.
    """
    from transformers import TrainingArguments

    t = config.training
    kwargs: dict[str, Any] = {
        "output_dir": str(output_dir),
        "num_train_epochs": t.epochs,
        "max_steps": t.max_steps,
        "learning_rate": t.learning_rate,
        "lr_scheduler_type": t.lr_scheduler,
        "warmup_steps": t.warmup_steps if t.warmup_steps > 0 else t.warmup_ratio,
        "per_device_train_batch_size": t.batch_size,
        "per_device_eval_batch_size": t.eval_batch_size or t.batch_size,
        "gradient_accumulation_steps": t.gradient_accumulation,
        "weight_decay": t.weight_decay,
        "max_grad_norm": t.max_grad_norm,
        "optim": t.optimizer,
        "logging_steps": t.logging_steps,
        "eval_strategy": "steps" if has_eval and t.eval_steps else "no",
        "eval_steps": t.eval_steps,
        "save_strategy": "steps",
        "save_steps": t.save_steps,
        "save_total_limit": t.save_total_limit,
        "seed": config.seed,
        "report_to": list(t.report_to) or "none",
        "dataloader_num_workers": t.dataloader_workers,
        "torch_compile": t.torch_compile,
        "train_sampling_strategy": "group_by_length" if config.data.group_by_length else "random",
        # ftcore's collator picks its columns; the Trainer must not drop any by signature.
        "remove_unused_columns": False,
        "label_names": ["labels"],
        "include_num_input_tokens_seen": "non_padding",
        "disable_tqdm": True,
        "dataloader_pin_memory": cuda_available(),
        "deepspeed": distributed.deepspeed_argument(t.deepspeed),
        **distributed.device_arguments(),
        **_precision(t.precision),
        **_fsdp(t.fsdp, model),
        **_optimizer_extras(t),
        **_best_model(t, has_eval),
        **_tracking(config),
        # The escape hatch last: its names were checked against TrainingArguments and never shadow ft's keys.
        **t.trainer_args,
    }
    try:
        return TrainingArguments(**kwargs)
    except ValueError as exc:
        raise ConfigError(f"training: {exc}") from exc


def _optimizer_extras(t: Any) -> dict[str, Any]:
    """Adam betas and epsilon, scheduler arguments, NEFTune noise and TF32."""
    extras: dict[str, Any] = {
        "adam_beta1": t.adam_beta1,
        "adam_beta2": t.adam_beta2,
        "adam_epsilon": t.adam_epsilon,
        "lr_scheduler_kwargs": dict(t.lr_scheduler_kwargs),
        "neftune_noise_alpha": t.neftune_noise_alpha,
    }
    if t.tf32 is not None:
        extras["tf32"] = t.tf32
    return extras


def _best_model(t: Any, has_eval: bool) -> dict[str, Any]:
    """Best-checkpoint selection: on for load_best_model_at_end or early stopping, when there is eval data."""
    if not (t.load_best_model_at_end or t.early_stopping_patience) or not has_eval:
        return {}
    return {
        "load_best_model_at_end": True,
        "metric_for_best_model": t.metric_for_best_model or "eval_loss",
        "greater_is_better": t.greater_is_better,
    }


def _tracking(config: FtConfig) -> dict[str, Any]:
    """Run and project names for the trackers (the run directory's name unless set)."""
    from ftcore.run.trackers import run_name

    t = config.training
    names: dict[str, Any] = {"run_name": run_name(config)}
    if t.project:
        names["project"] = t.project
    return names


def cuda_available() -> bool:
    """True when torch sees a CUDA GPU."""
    import torch

    return torch.cuda.is_available()


def _precision(precision: str) -> dict[str, Any]:
    """Mixed-precision flags: auto means bf16 on GPUs that support it, fp16 on older GPUs, bf16 autocast on CPUs
    with bf16 instructions (AVX512_BF16 or AMX), else fp32 (where bf16 would be emulated, and slower)."""
    import torch

    cuda = torch.cuda.is_available()
    if precision == "auto":
        if not cuda:
            return {"bf16": True, "use_cpu": True} if cpu_has_bf16() else {}
        return {"bf16": True} if torch.cuda.is_bf16_supported() else {"fp16": True}
    if precision == "fp16" and not cuda:
        raise ConfigError("training.precision: fp16 needs a CUDA GPU; use bf16 or fp32 on CPU")
    if precision == "bf16":
        return {"bf16": True, "use_cpu": not cuda}
    return {"fp16": True} if precision == "fp16" else {}


def cpu_has_bf16() -> bool:
    """True when this CPU computes bf16 natively (AVX512_BF16 or AMX), so bf16 autocast is faster than fp32."""
    import torch

    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    try:
        return any(getattr(torch.cpu, name)() for name in checks if hasattr(torch.cpu, name))
    except RuntimeError:
        return False


def _fsdp(settings: dict[str, Any] | None, model: Any = None) -> dict[str, Any]:
    """FSDP keywords (see :func:`ftcore.run.distributed.fsdp_arguments`)."""
    return distributed.fsdp_arguments(settings, model)
