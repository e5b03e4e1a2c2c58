"""The manifest of a run, ``ft_run.json``: what ran, on what, with which versions, and how it went.

:func:`build_manifest` is called by :mod:`ftcore.jobs.train` and :mod:`ftcore.run.outputs` when a run finishes or is interrupted;
:mod:`ftcore.artifacts.rundir` writes it and reads it back (``docs/concepts/run-directory.md`` lists its keys).
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from dataclasses import asdict, is_dataclass
from typing import TYPE_CHECKING, Any

from ftcore.run import trackers

if TYPE_CHECKING:
    from ftcore.artifacts.rundir import RunPlan
    from ftcore.run.state import RunState


def build_manifest(run: RunState, trainer: Any, eval_loss: float | None, status: str = "complete") -> dict[str, Any]:
    """The ``ft_run.json`` record of ``run``, trained by ``trainer``; ``status`` is ``complete`` or ``interrupted``."""
    from ftcore.artifacts.provenance import base_provenance
    from ftcore.models.loading import resolve_source

    state = trainer.state
    losses = [e["loss"] for e in state.log_history if "loss" in e]
    trainable, total = run.params
    return {
        "format": 1,
        "status": status,
        "method": run.config.method,
        "method_plugin": _method_plugin(run.config.method),
        "output": run.spec.output_for(run.options),
        "model_kind": run.spec.model_kind,
        "base_model": resolve_source(run.config.model),
        "base_model_provenance": run.provenance or base_provenance(run.config.model, run.config.revision),
        "seed": run.config.seed,
        "global_step": state.global_step,
        "epoch": state.epoch,
        "tokens_seen": int(state.num_input_tokens_seen),
        "train_loss": losses[-1] if losses else None,
        "train_loss_mean": run.train_metrics.get("train_loss"),
        "train_runtime_s": run.train_metrics.get("train_runtime"),
        "tokens_per_second": _tokens_per_second(run, state),
        "eval_loss": eval_loss,
        "trainable_params": trainable,
        # Set when the run added tokens: loading its adapter first grows the base's embeddings to this size.
        "vocab_size": len(run.tokenizer) if run.added_token_ids else None,
        "load_dtype": run.load_dtype,
        "saved_dtype": run.saved_dtype,
        "added_token_ids": run.added_token_ids or None,
        "total_params": total,
        "wall_time_s": round(time.time() - run.started, 2),
        "resumed_from": _shown_checkpoint(run.plan),
        "run_name": trackers.run_name(run.config),
        "logs": str(trackers.logging_dir(run.config).resolve()) if run.config.training.report_to else None,
        "trainer_args": dict(run.config.training.trainer_args),
        "passes": _passes(run, trainer),
        "resume_changes": run.config_changes or None,
        "data": {"fingerprint": getattr(run.data, "fingerprint", None), "stats": _jsonable(getattr(run.data, "stats", None))},
        "versions": package_versions(_method_dist(run.config.method)),
        "plugins": plugin_versions(),
        "hardware": hardware(),
        "git_commit": git_commit(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _passes(run: RunState, trainer: Any) -> dict[str, Any] | None:
    """The token budget of one pass the run chose and why, with the passes its micro-batches took (ft's own trainer
    only: a method plugin's trainer runs its own steps)."""
    if run.passes is None or not hasattr(trainer, "micro_batch_tokens"):
        return None
    counts = {"micro_batches": getattr(trainer, "micro_batches", None), "passes": getattr(trainer, "passes", None)}
    return {**run.passes.record(), **counts}


def _shown_checkpoint(plan: RunPlan) -> str | None:
    """The checkpoint a run resumed from: relative to the run when it is its own, else absolute."""
    if plan.resume_from is None:
        return None
    if plan.staging in plan.resume_from.parents:
        return str(plan.resume_from.relative_to(plan.staging))
    return str(plan.resume_from)


def _tokens_per_second(run: RunState, state: Any) -> float | None:
    """Non-padding tokens per second of this session's training (a resumed run counts its own part)."""
    runtime = run.train_metrics.get("train_runtime")
    if not runtime or run.progress is None:
        return None
    return round((state.num_input_tokens_seen - run.progress.start_tokens) / runtime, 1)


def _jsonable(value: Any) -> Any:
    """Data statistics as plain JSON values, whether a dataclass, a pydantic model or a mapping."""
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if hasattr(value, "model_dump"):
        return value.model_dump()
    return value


#: The libraries every run depends on through ftcore; the method's plugin adds what it requires.
CORE_LIBRARIES = ("ftcore", "torch", "transformers", "datasets", "accelerate")


def package_versions(method_dist: str | None = None) -> dict[str, str | None]:
    """Versions of Python, ftcore's libraries and those the method's distribution requires (None when not installed)."""
    from importlib import metadata

    from ftcore.contract.plugins import required_libraries

    versions: dict[str, str | None] = {"python": platform.python_version()}
    extra = required_libraries([method_dist]) if method_dist else []
    for name in dict.fromkeys([*CORE_LIBRARIES, *extra]):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def plugin_versions() -> dict[str, dict[str, str]]:
    """Every loaded plugin with its distribution and version."""
    from ftcore.contract.plugins import get_registry

    return {p.name: {"dist": p.dist, "version": p.version} for p in get_registry().plugins}


def hardware() -> dict[str, Any]:
    """CPU, memory and accelerators of this machine."""
    import psutil
    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "world_size": int(os.environ.get("WORLD_SIZE", "1")),
    }
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def git_commit() -> str | None:
    """The commit of the git checkout the run was started from, when there is one."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _method_dist(method: str) -> str | None:
    """The distribution that provided ``method`` (``None`` when none did)."""
    found = _method_plugin(method)
    return found["dist"] if found else None


def _method_plugin(method: str) -> dict[str, str] | None:
    """The distribution and version of the plugin that provided ``method``, so a later command can name it."""
    from ftcore.contract.plugins import get_registry

    found = get_registry().methods.get(method)
    return {"dist": found[1].dist, "version": found[1].version} if found else None
