"""One training run: config → model → ``setup_peft`` → data → ``Trainer`` → run directory.

:func:`run_training` is what ``ft train`` calls. Everything that needs no heavy import (config,
method options, the output location, the checkpoint to resume) is checked first, so a mistake
fails in a second, before torch loads. Only rank 0 writes the run directory.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftcore import distributed, preflight, resumecheck, rundir, trackers
from ftcore.config import config_to_yaml
from ftcore.errors import ConfigError, PluginError, RunDirError
from ftcore.guard import TerminateGuard, TrainingGuard, check_resume_matches, unsafe_checkpoint
from ftcore.manifest import build_manifest
from ftcore.models import count_parameters
from ftcore.plugins import get_registry
from ftcore.runlock import RunLock

if TYPE_CHECKING:
    from ftcore.config import FtConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    """What a finished run left behind: its directory and manifest."""

    run_dir: Path
    manifest: dict[str, Any]


@dataclass
class _Run:
    """The pieces of one run, passed between the steps below."""

    config: FtConfig
    spec: Any
    options: Any
    plan: rundir.RunPlan
    started: float
    model: Any = None
    tokenizer: Any = None
    data: Any = None
    params: tuple[int, int] = (0, 0)
    train_metrics: dict[str, Any] = field(default_factory=dict)
    progress: Any = None
    #: ``{key: [old, new]}`` of a resumed run whose config or data changed (allowed ones only).
    config_changes: dict[str, list[Any]] = field(default_factory=dict)
    allow_config_change: bool = False
    #: The floating dtype the base's weights loaded in, and the one a sharded (FSDP, ZeRO-3) model was saved in.
    load_dtype: str | None = None
    saved_dtype: str | None = None
    #: Ids of the tokens this run added to the vocabulary (``added_tokens``, new ``special_tokens``).
    added_token_ids: list[int] = field(default_factory=list)
    #: Where the base model came from (:func:`ftcore.provenance.base_provenance`), found once at the end.
    provenance: dict[str, Any] | None = None


def run_training(config: FtConfig, *, overwrite: bool = False, resume: bool | str | None = None,
                 allow_config_change: bool = False) -> TrainResult:
    """Train ``config`` and return the finished run directory.

    :param overwrite: replace a finished run at ``config.output_dir`` (only once the new one is done).
    :param resume: ``True`` to continue from the latest checkpoint of this run, or a checkpoint / run path.
    :param allow_config_change: on resume, accept a config or data that differs from the checkpoint's run in
        more than the safe keys (:data:`ftcore.resumecheck.SAFE_CHANGES`).
    """
    from ftcore.config import validate_run_config

    spec, options = validate_run_config(config)
    distributed.check_layout(config)
    distributed.quiet_replicas()
    output = rundir.output_location(config.output_dir)
    # Rank 0 holds the lock for the whole run; it is taken before the output is read, so two runs never plan alike.
    lock = RunLock(output) if is_main_process() else nullcontext()
    with TerminateGuard() as terminate, lock:
        plan = rundir.plan_run(output, overwrite=overwrite, resume=resume)
        terminate.plan = plan
        run = _Run(config, spec, options, plan, time.time(), allow_config_change=allow_config_change)
        try:
            return _train(run, terminate)
        except Exception as exc:
            known = _disk_full(exc, plan) or unsafe_checkpoint(exc, plan)
            if known is None:
                raise
            raise known from exc


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


def _train(run: _Run, terminate: TerminateGuard) -> TrainResult:
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
        get_registry().broadcast("run_started", config=config, run_dir=plan.staging)
    # No rank trains (or loads an adopted checkpoint) before rank 0 has the staging directory ready.
    distributed.wait_for_everyone()
    try:
        distributed.check_shared_output(plan.staging)
        with trackers.tracking(config):
            trainer, guard, metrics = _run_trainer(run, terminate)
        if guard.signal is not None:
            _save_interrupted(run, trainer)
            raise guard.interruption(plan)
        terminate.phase = "after training"
        run.train_metrics = metrics
        eval_loss = _final_eval(trainer, run)
        if distributed.shards_model(config):
            # Sharded weights are gathered by every rank together; rank 0 writes them, in the dtype they loaded in.
            run.saved_dtype = distributed.save_sharded_model(trainer, plan.staging, run.load_dtype)
        if not is_main_process():
            return TrainResult(plan.output, {})
        manifest = _write_outputs(run, trainer, eval_loss)
        get_registry().broadcast("run_finished", config=config, run_dir=plan.staging, manifest=manifest)
        return TrainResult(rundir.commit(plan), manifest)
    except BaseException:
        if is_main_process():
            rundir.abandon(plan)
        raise


def _run_trainer(run: _Run, terminate: TerminateGuard) -> tuple[Any, TrainingGuard, dict[str, Any]]:
    """Build the trainer and train; returns the trainer, the guard that watched it and the training metrics."""
    from ftcore.data.pipeline import datasets_progress_bars

    with datasets_progress_bars():
        trainer = _build_trainer(run)
    # A method's trainer may attach the adapter itself (TRL's do, from a peft config): count what trains now.
    run.params = trainable, total = count_parameters(trainer.model)
    log.info("trainable parameters: %s of %s (%.2f%%)", f"{trainable:,}", f"{total:,}", 100 * trainable / max(total, 1))
    terminate.phase = "training"
    with TrainingGuard(trainer, run.config) as guard:
        metrics = _train_or_restore(trainer, run)
    _log_passes(trainer)
    return trainer, guard, metrics


def _warn_replacing(plan: rundir.RunPlan) -> None:
    """Say so when resuming an unfinished run will replace the finished run at the output path."""
    if plan.resume_from and not plan.adopt and rundir.is_run_dir(plan.output) and is_main_process():
        log.warning("resuming the unfinished run in %s; it replaces the finished run in %s when it completes",
                    plan.staging, plan.output)


def _train_or_restore(trainer: Any, run: _Run) -> dict[str, Any]:
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


def _save_interrupted(run: _Run, trainer: Any) -> None:
    """Metrics so far and a manifest with status ``interrupted`` in the staging directory ``--resume`` continues."""
    if is_main_process():
        staging = run.plan.staging
        rundir.write_metrics(staging / rundir.METRICS, trainer.state.log_history)
        rundir.write_json(staging / rundir.MANIFEST, build_manifest(run, trainer, None, status="interrupted"))


def is_main_process() -> bool:
    """True on rank 0 (or in a single-process run): the only process that writes outputs."""
    return int(os.environ.get("RANK", "0")) == 0


# ----------------------------------------------------------------------------- model and data


def _prepare(run: _Run) -> None:
    """Load the tokenizer, prepare the data, load the model (with the method's load kwargs), attach the method."""
    from ftcore.models import fit_embeddings, load_model, load_tokenizer

    registry = get_registry()
    config = run.config
    extra = registry.call("model_load_kwargs", "method", config.method, method=config.method, config=config,
                          options=run.options) or {}
    run.tokenizer = load_tokenizer(config)
    # Data problems are cheaper to find than a model is to load: report them first.
    run.data = _prepare_data(config, run.tokenizer)
    # transformers.trainer_utils imports peft and bitsandbytes (seconds): only once the data is known good.
    from transformers import set_seed

    preflight.preflight(config, run.spec, run.options, run.plan)
    # Seed before the adapter is initialised, so the same seed gives the same run.
    set_seed(config.seed)
    base = load_model(config, extra)
    run.load_dtype = _float_dtype(base)
    if config.added_tokens or config.special_tokens.model_dump(exclude_none=True):
        run.added_token_ids = fit_embeddings(base, run.tokenizer)
        if run.added_token_ids:
            log.info("embeddings grown by %d rows for the added tokens", len(run.added_token_ids))
    if run.data.collator is not None and (config.data.packing or config.data.padding_free):
        # Flattened batches: attend within each example instead of masking a row-sized square (see ftcore.attention).
        from ftcore.attention import use_segment_attention

        use_segment_attention(base)
    run.model = registry.call("setup_peft", "method", config.method, model=base, method=config.method, config=config,
                              options=run.options)
    if run.model is None:
        raise PluginError(f"method {config.method!r}: its plugin did not prepare the model (setup_peft returned None)")


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


# ----------------------------------------------------------------------------- trainer


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
        "dataloader_pin_memory": _cuda(),
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
    from ftcore.trackers import run_name

    t = config.training
    names: dict[str, Any] = {"run_name": run_name(config)}
    if t.project:
        names["project"] = t.project
    return names


def _cuda() -> bool:
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
    """FSDP keywords (see :func:`ftcore.distributed.fsdp_arguments`)."""
    return distributed.fsdp_arguments(settings, model)


def _build_trainer(run: _Run) -> Any:
    """The plugin's trainer when its ``make_trainer`` answers, else ft's own (``transformers.Trainer`` with
    token-budgeted passes, :mod:`ftcore.passes`)."""
    from transformers import PrinterCallback


    data = run.data
    args = training_arguments(run.config, run.plan.checkpoints, data.eval is not None, model=run.model)
    run.progress = progress_callback()
    callbacks = [run.progress, *trackers.callbacks(run.config)]
    if distributed.is_distributed():
        callbacks.append(distributed.rank_callback(run.config.seed))
    if run.config.training.early_stopping_patience and data.eval is not None:
        callbacks.append(_early_stopping(run.config.training))
    common = {
        "model": run.model,
        "args": args,
        "train_dataset": data.train,
        "eval_dataset": data.eval,
        "data_collator": data.collator,
        "callbacks": callbacks,
    }
    method = run.config.method
    trainer = get_registry().call("make_trainer", "method", method, tokenizer=run.tokenizer, method=method,
                                  config=run.config, options=run.options, shape=data.shape, **common)
    if trainer is None:
        if data.collator is None:
            raise PluginError(f"method {method!r} trains on {data.shape!r} data, which transformers.Trainer cannot "
                              "take as it is, but its plugin's make_trainer returned no trainer")
        trainer = _host_trainer(run, common)
        _use_loss_kernel(run)
    # disable_tqdm makes Trainer print raw log dicts; the progress callback shows them instead.
    if hasattr(trainer, "remove_callback"):
        trainer.remove_callback(PrinterCallback)
    return trainer


def _host_trainer(run: _Run, common: dict[str, Any]) -> Any:
    """ft's own trainer, running micro-batches in passes of ``training.micro_batch_tokens``."""
    from ftcore import passes

    budget = passes.budget_for(run.config.training.micro_batch_tokens, _cuda())
    if budget is not None:
        if distributed.shards_model(run.config):
            log.info("training.micro_batch_tokens: DeepSpeed and FSDP take whole micro-batches (no token budget)")
            budget = None
        else:
            log.info("training.micro_batch_tokens: each micro-batch runs in passes of at most %d tokens", budget)
    return passes.trainer_class()(processing_class=run.tokenizer, micro_batch_tokens=budget, **common)


def _log_passes(trainer: Any) -> None:
    """How many forward+backward passes the micro-batches took (ft's own trainer with a token budget)."""
    budget = getattr(trainer, "micro_batch_tokens", None)
    if budget is not None and trainer.micro_batches:
        log.info("training.micro_batch_tokens %d: %d micro-batches ran in %d passes (%.1f per micro-batch)",
                 budget, trainer.micro_batches, trainer.passes, trainer.passes / trainer.micro_batches)


def _use_loss_kernel(run: _Run) -> None:
    """Compute ``transformers.Trainer``'s loss without the full logits (``training.kernels``; see ftcore.loss).

    Only for ft's own trainer (a plugin's trainer may read the logits) and unsharded models (ZeRO-3 and FSDP
    gather the head's weight only inside its own forward).
    """
    from ftcore import loss

    if distributed.shards_model(run.config):
        return
    kernel = loss.choose_kernel(run.config.training.kernels, _cuda())
    if loss.install(run.model, kernel):
        log.info("training loss: %s cross-entropy over labelled positions (no full logits)", kernel)


def _early_stopping(t: Any) -> Any:
    """Transformers' early stopping on metric_for_best_model (eval_loss by default)."""
    from transformers import EarlyStoppingCallback

    return EarlyStoppingCallback(early_stopping_patience=t.early_stopping_patience,
                                 early_stopping_threshold=t.early_stopping_threshold)


def _final_eval(trainer: Any, run: _Run) -> float | None:
    """Evaluation loss at the end (from the last step-based eval, or one evaluation now)."""
    if run.data.eval is None:
        return None
    if not run.config.training.eval_steps:
        return trainer.evaluate().get("eval_loss")
    losses = [e["eval_loss"] for e in trainer.state.log_history if "eval_loss" in e]
    return losses[-1] if losses else None


# ----------------------------------------------------------------------------- progress


def progress_callback() -> Any:
    """A ``TrainerCallback`` showing a progress bar with loss and tokens/s (log lines when not on a terminal)."""
    from transformers import TrainerCallback

    class FtProgressCallback(_ProgressMixin, TrainerCallback):
        pass

    return FtProgressCallback()


#: Logged numbers shown on the console (key in the trainer's logs -> name shown).
CONSOLE_KEYS = {"loss": "loss", "eval_loss": "eval_loss", "reward": "reward", "rewards/accuracies": "reward_acc",
                "rewards/margins": "margin"}


class _ProgressMixin:
    bar: Any = None
    start_time: float = 0.0
    start_tokens: int = 0

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        import sys

        from tqdm.auto import tqdm

        if not state.is_world_process_zero:
            return
        self.start_time, self.start_tokens = time.time(), state.num_input_tokens_seen
        self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc="training", unit="step",
                        disable=not sys.stderr.isatty(), dynamic_ncols=True)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def tokens_per_second(self, state: Any) -> float:
        elapsed = time.time() - self.start_time
        return (state.num_input_tokens_seen - self.start_tokens) / elapsed if elapsed > 0 else 0.0

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if self.bar is None or not logs:
            return
        # Each method's key numbers beside its loss: GRPO's mean reward, a preference method's reward accuracy and
        # margin (the share of pairs whose chosen answer it rewards more, and by how much).
        shown = {name: logs[k] for k, name in CONSOLE_KEYS.items() if k in logs}
        if not shown:
            return
        shown["tok/s"] = self.tokens_per_second(state)
        text = {k: f"{v:.4g}" for k, v in shown.items()}
        if self.bar.disable:
            log.info("step %d/%d %s", state.global_step, state.max_steps, " ".join(f"{k} {v}" for k, v in text.items()))
        else:
            self.bar.set_postfix(text, refresh=False)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.close()


# ----------------------------------------------------------------------------- outputs


def _write_outputs(run: _Run, trainer: Any, eval_loss: float | None) -> dict[str, Any]:
    """Weights, tokenizer, config, metrics, loss curve and manifest into the staging directory."""
    from ftcore.data.templates import template_to_save
    from ftcore.provenance import base_provenance

    staging = run.plan.staging
    if not distributed.shards_model(run.config):
        from ftcore.attention import restore_sdpa
        from ftcore.loss import uninstall as uninstall_loss

        restore_sdpa(trainer.model)
        uninstall_loss(trainer.model)
        trainer.model.save_pretrained(str(staging))
    run.provenance = base_provenance(run.config.model, run.config.revision)
    # An adapter library's placeholder model card says nothing about the run; a real one is written on upload.
    (staging / "README.md").unlink(missing_ok=True)
    # The tokenizer carries the template the chats were rendered with, whatever it had of its own.
    run.tokenizer.chat_template = template_to_save(run.config.data.chat_template, run.tokenizer)
    run.tokenizer.save_pretrained(str(staging))
    # A full fine-tune is a standalone model, and the tokenizer goes with every run: transformers 4.x reads both too.
    from ftcore.portable import make_portable

    make_portable(staging)
    (staging / rundir.CONFIG).write_text(config_to_yaml(run.config), encoding="utf-8")
    rundir.write_metrics(staging / rundir.METRICS, trainer.state.log_history)
    _write_loss_curve(run, trainer.state.log_history)
    manifest = build_manifest(run, trainer, eval_loss)
    rundir.write_json(staging / rundir.MANIFEST, manifest)
    return manifest


def _write_loss_curve(run: _Run, history: list[dict[str, Any]]) -> None:
    """``loss.png``: a picture is a convenience, so a plotting failure is a warning, never a lost run."""
    from ftcore.curves import LOSS_CURVE, write_loss_curve

    try:
        write_loss_curve(history, run.plan.staging / LOSS_CURVE, f"{run.config.method} · {Path(run.config.model).name}")
    except Exception as exc:  # matplotlib missing fonts, a broken backend...
        log.warning("could not draw %s: %s: %s", LOSS_CURVE, type(exc).__name__, exc)

