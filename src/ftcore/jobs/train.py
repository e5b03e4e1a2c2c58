"""One training run: config → model → ``setup_peft`` → data → ``Trainer`` → run directory.

:func:`run_training` is what ``ft train`` calls. Everything that needs no heavy import (config,
method options, the output location, the checkpoint to resume) is checked first, so a mistake
fails in a second, before torch loads. Only rank 0 writes the run directory.

This module orchestrates; the steps live by concern: the run's state (:mod:`ftcore.run.state`), the trainer and
its arguments (:mod:`ftcore.run.trainer`, :mod:`ftcore.run.arguments`), the progress bar (:mod:`ftcore.run.progress`)
and the files written at the end (:mod:`ftcore.run.outputs`, :mod:`ftcore.run.manifest`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftcore.artifacts import rundir
from ftcore.config.schema import config_to_yaml
from ftcore.contract.plugins import get_registry
from ftcore.errors import PluginError, RunDirError
from ftcore.models.loading import count_parameters
from ftcore.run import distributed, preflight, resumecheck, trackers
from ftcore.run.guard import TerminateGuard, TrainingGuard, check_resume_matches, unsafe_checkpoint
from ftcore.run.manifest import build_manifest
from ftcore.run.outputs import save_weights, write_run_files
from ftcore.run.runlock import RunLock
from ftcore.run.state import RunState
from ftcore.run.trainer import build_trainer, final_eval, log_passes

if TYPE_CHECKING:
    from ftcore.config.schema import FtConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    """What a finished run left behind: its directory and manifest."""

    run_dir: Path
    manifest: dict[str, Any]


def run_training(config: FtConfig, *, overwrite: bool = False, resume: bool | str | None = None,
                 allow_config_change: bool = False) -> TrainResult:
    """Train ``config`` and return the finished run directory.

    :param overwrite: replace a finished run at ``config.output_dir`` (only once the new one is done).
    :param resume: ``True`` to continue from the latest checkpoint of this run, or a checkpoint / run path.
    :param allow_config_change: on resume, accept a config or data that differs from the checkpoint's run in
        more than the safe keys (:data:`ftcore.run.resumecheck.SAFE_CHANGES`).
    """
    from ftcore.config.schema import validate_run_config

    spec, options = validate_run_config(config)
    distributed.check_layout(config)
    distributed.quiet_replicas()
    output = rundir.output_location(config.output_dir)
    # Rank 0 holds the lock for the whole run; it is taken before the output is read, so two runs never plan alike.
    lock = RunLock(output) if is_main_process() else nullcontext()
    with TerminateGuard() as terminate, lock:
        plan = rundir.plan_run(output, overwrite=overwrite, resume=resume)
        terminate.plan = plan
        run = RunState(config, spec, options, plan, time.time(), allow_config_change=allow_config_change)
        try:
            result = _train(run, terminate)
        except Exception as exc:
            known = _disk_full(exc, plan) or unsafe_checkpoint(exc, plan)
            if known is None:
                raise
            raise known from exc
    distributed.leave()
    return result


def _disk_full(exc: BaseException, plan: rundir.RunPlan) -> RunDirError | None:
    """One line for a full disk: the path, the space left there and what running again will do; else None."""
    path = preflight.disk_full_path(exc, plan)
    if path is None:
        return None
    free = shutil.disk_usage(preflight.nearest_existing(path)).free / 2**30
    checkpoint = rundir.latest_checkpoint(plan.checkpoints)
    then = (f"free some space, then run the same ft train command with --resume to continue from {checkpoint}"
            if checkpoint else "free some space and run the same ft train command again")
    return RunDirError(f"disk full while writing {path} ({free:.2f} GiB free there); {then}")


def _train(run: RunState, terminate: TerminateGuard) -> TrainResult:
    """The run itself, once the output location is planned and locked."""
    config, plan = run.config, run.plan
    _warn_replacing(plan)
    if plan.resume_from:
        run.config_changes = resumecheck.check_config(_resumed_run_dir(plan), config, run.allow_config_change)
    preflight.check_before_loading(config, plan)
    # Every rank plans (reads the output location) before rank 0 changes it in begin().
    distributed.wait_for_everyone()
    _prepare(run)
    if plan.resume_from:
        check_resume_matches(_checkpoint_now(plan), run.model, config.method)
        fingerprint = getattr(run.data, "fingerprint", None)
        run.config_changes |= resumecheck.check_data(_resumed_run_dir(plan), fingerprint, run.allow_config_change)
    if is_main_process():
        rundir.begin(plan)
        if not plan.resume_from:
            rundir.record_start(plan, config_to_yaml(config), getattr(run.data, "fingerprint", None))
        try:
            get_registry().broadcast("run_started", config=config, run_dir=plan.staging)
        except BaseException:
            rundir.abandon(plan)
            raise
    # No rank trains (or loads an adopted checkpoint) before rank 0 has the staging directory ready.
    distributed.wait_for_everyone()
    try:
        distributed.check_shared_output(plan.staging)
        with trackers.tracking(config):
            trainer, guard, metrics = _run_trainer(run, terminate)
        if guard.signal is not None:
            _save_interrupted(run, trainer)
            distributed.leave()  # every rank saved its part of the checkpoint together
            raise guard.interruption(plan)
        terminate.phase = "after training"
        run.train_metrics = metrics
        eval_loss = final_eval(trainer, run)
        if distributed.shards_model(config):
            # Sharded weights are gathered by every rank together; rank 0 writes them, in the dtype they loaded in.
            run.saved_dtype = distributed.save_sharded_model(trainer, plan.staging, run.load_dtype)
        if not is_main_process():
            return TrainResult(plan.output, {})
        save_weights(run, trainer)
        manifest = write_run_files(run, trainer, eval_loss)
        get_registry().broadcast("run_finished", config=config, run_dir=plan.staging, manifest=manifest)
        return TrainResult(rundir.commit(plan), manifest)
    except BaseException:
        if is_main_process():
            rundir.abandon(plan)
        raise


def _run_trainer(run: RunState, terminate: TerminateGuard) -> tuple[Any, TrainingGuard, dict[str, Any]]:
    """Build the trainer and train; returns the trainer, the guard that watched it and the training metrics."""
    from ftcore.data.pipeline import datasets_progress_bars

    with datasets_progress_bars():
        trainer = build_trainer(run)
    # A method's trainer may attach the adapter itself (TRL's do, from a peft config): count what trains now.
    run.params = trainable, total = count_parameters(trainer.model)
    log.info("trainable parameters: %s of %s (%.2f%%)", f"{trainable:,}", f"{total:,}", 100 * trainable / max(total, 1))
    terminate.phase = "training"
    with TrainingGuard(trainer, run.config) as guard:
        metrics = _train_or_restore(trainer, run)
    log_passes(trainer)
    return trainer, guard, metrics


def _warn_replacing(plan: rundir.RunPlan) -> None:
    """Say so when resuming an unfinished run will replace the finished run at the output path."""
    if plan.resume_from and not plan.adopt and rundir.is_run_dir(plan.output) and is_main_process():
        log.warning("resuming the unfinished run in %s; it replaces the finished run in %s when it completes",
                    plan.staging, plan.output)


def _train_or_restore(trainer: Any, run: RunState) -> dict[str, Any]:
    """``trainer.train()`` (resuming when planned) and its metrics, or nothing to train when the checkpoint is final.

    transformers resumes a checkpoint taken at the last step by training one step more; a run whose checkpoint
    already reached its last step is instead restored (weights and state) so that only its outputs are written.
    """
    resume = run.plan.resume_from
    if resume is not None and _checkpoint_is_final(resume, run.config):
        from transformers import TrainerState

        trainer.state = TrainerState.load_from_json(str(resume / "trainer_state.json"))
        trainer._load_from_checkpoint(str(resume))
        log.warning("%s is at the last step (%d): nothing left to train; writing the run from it",
                    resume.name, trainer.state.global_step)
        return {}
    return dict(trainer.train(resume_from_checkpoint=str(resume) if resume else None).metrics)


def _checkpoint_is_final(checkpoint: Path, config: FtConfig) -> bool:
    """True when ``checkpoint`` reached the run's last step (``training.max_steps``, else the step count it saved)."""

    state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    target = config.training.max_steps if config.training.max_steps > 0 else state.get("max_steps", 0)
    return bool(target) and state.get("global_step", 0) >= target


def _resumed_run_dir(plan: rundir.RunPlan) -> Path:
    """The run (or staging) directory that holds the checkpoint to resume, before ``begin``."""
    return _checkpoint_now(plan).parent.parent


def _checkpoint_now(plan: rundir.RunPlan) -> Path:
    """Where the checkpoint to resume is before ``begin``: an adopted run still sits at the output path."""
    assert plan.resume_from is not None
    return plan.output / plan.resume_from.relative_to(plan.staging) if plan.adopt else plan.resume_from


def _save_interrupted(run: RunState, trainer: Any) -> None:
    """Metrics so far and a manifest with status ``interrupted`` in the staging directory ``--resume`` continues."""
    if is_main_process():
        staging = run.plan.staging
        rundir.write_metrics(staging / rundir.METRICS, trainer.state.log_history)
        rundir.write_json(staging / rundir.MANIFEST, build_manifest(run, trainer, None, status="interrupted"))


def is_main_process() -> bool:
    """True on rank 0 (or in a single-process run): the only process that writes outputs."""
    return int(os.environ.get("RANK", "0")) == 0


# ----------------------------------------------------------------------------- model and data


def _prepare(run: RunState) -> None:
    """Load the tokenizer, prepare the data, load the model (with the method's load kwargs), attach the method."""
    from ftcore.models.loading import fit_embeddings, load_model, load_tokenizer

    registry = get_registry()
    config = run.config
    extra = registry.call("model_load_kwargs", "method", config.method, method=config.method, config=config,
                          options=run.options) or {}
    run.tokenizer = load_tokenizer(config)
    # Data problems are cheaper to find than a model is to load: report them first.
    run.data = _prepare_data(config, run.tokenizer)
    # transformers.trainer_utils imports peft and bitsandbytes (seconds): only once the data is known good.
    from transformers import set_seed

    run.passes = preflight.choose_passes(config, run.spec, run.options)
    preflight.preflight(config, run.spec, run.options, run.plan, run.passes.tokens)
    # Seed before the adapter is initialised, so the same seed gives the same run.
    set_seed(config.seed)
    base = load_model(config, extra)
    run.load_dtype = _float_dtype(base)
    if config.added_tokens or config.special_tokens.model_dump(exclude_none=True):
        run.added_token_ids = fit_embeddings(base, run.tokenizer)
        if run.added_token_ids:
            log.info("embeddings grown by %d rows for the added tokens", len(run.added_token_ids))
    if run.data.collator is not None and (config.data.packing or config.data.padding_free):
        # Flattened batches: attend within each example instead of masking a row-sized square (see ftcore.models.attention).
        from ftcore.models.attention import use_segment_attention

        use_segment_attention(base)
    run.model = registry.call("setup_peft", "method", config.method, model=base, method=config.method, config=config,
                              options=run.options)
    if run.model is None:
        owner = registry.owner("method", config.method).label
        raise PluginError(f"method {config.method!r}: {owner} did not prepare the model (setup_peft returned None)")


def _float_dtype(model: Any) -> str | None:
    """The dtype of ``model``'s first floating-point parameter (``"bfloat16"``...), or None."""
    for param in model.parameters():
        if param.is_floating_point():
            return str(param.dtype).removeprefix("torch.")
    return None


def _prepare_data(config: FtConfig, tokenizer: Any) -> Any:
    from ftcore.data import prepare_data

    # The first process of each machine tokenizes and caches; the others then load its cache.
    with distributed.local_main_process_first():
        data = prepare_data(config, tokenizer)
    distributed.log_rank("data %s", "loaded from cache" if data.stats.get("cache_hit") else "tokenized")
    if distributed.rank() == 0:
        from ftcore.data.audit import log_audit

        log_audit(data.stats.get("audit"))
    distributed.check_data_fits(config, len(data.train))
    return data

