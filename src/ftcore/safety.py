"""Safety nets around a training run: preflight checks, interruption, non-finite losses, contained paths.

- :func:`check_writable` and :func:`preflight` run before anything heavy is loaded: an output location
  that cannot be written is an error; too little disk or memory for the estimate is a warning with numbers.
- :class:`TrainingGuard` wraps ``trainer.train()``: SIGINT/SIGTERM make the Trainer save a checkpoint at the
  end of the current optimizer step and stop (the caller then raises :class:`Interrupted`), and a NaN/inf
  training loss either stops the run with a :class:`~ftcore.errors.TrainingError` naming the step
  (``training.nan_policy: stop``) or drops that step's update (``skip``).
- :func:`check_resume_matches` refuses a checkpoint whose tensors do not fit the model (another base).
- :func:`contained` joins a name from a config or a data file under a root and refuses ``..`` escapes.

Nothing heavy is imported at module level.
"""

from __future__ import annotations

import logging
import math
import shutil
import signal
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftcore.errors import ModelError, RunDirError, TrainingError

if TYPE_CHECKING:
    from ftcore.config import FtConfig
    from ftcore.rundir import RunPlan

log = logging.getLogger(__name__)

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".ckpt", ".gguf")


# ----------------------------------------------------------------------------- paths


def contained(root: str | Path, *parts: str) -> Path:
    """``root / parts`` resolved, raising :class:`RunDirError` when it would land outside ``root``.

    For names that come from configs, data files or checkpoints (``../../x``, an absolute path).
    """
    base = Path(root).resolve()
    target = base.joinpath(*parts).resolve()
    if target != base and base not in target.parents:
        raise RunDirError(f"refusing to write {'/'.join(parts)!r}: it points outside {base}")
    return target


def nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable(plan: RunPlan) -> None:
    """Raise :class:`RunDirError` when the run's staging directory cannot be created.

    Probed by creating (and removing) a temporary file, since permission bits do not tell the whole
    story (read-only mounts, ACLs, root).
    """
    where = nearest_existing(plan.staging.parent)
    try:
        with tempfile.TemporaryFile(dir=where):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise RunDirError(
            f"output directory {plan.output} cannot be written: {where}: {reason}; choose another --output-dir"
        ) from None


def check_before_loading(config: FtConfig, plan: RunPlan) -> None:
    """Cheap checks that need no heavy import: the output can be written, local model paths exist and
    hold readable safetensors (or allowed pickle) weights."""
    from ftcore.models import check_weights_dir, is_gguf, resolve_source

    check_writable(plan)
    for source in dict.fromkeys(s for s in (config.model, config.tokenizer) if s):
        resolve_source(source)
    path = Path(resolve_source(config.model))
    if path.is_dir() and not is_gguf(str(path)):
        check_weights_dir(path, config.allow_pickle)


# ----------------------------------------------------------------------------- preflight


def weights_bytes(source: str) -> int | None:
    """Total size of a local model's weight files (a directory, or a .gguf file); None when unknown."""
    path = Path(source).expanduser()
    if path.is_file():
        return path.stat().st_size
    if not path.is_dir():
        return None
    files = [p for p in path.iterdir() if p.is_file() and p.suffix in _WEIGHT_SUFFIXES]
    safe = [p for p in files if p.suffix == ".safetensors"]
    # A directory with both formats loads (and checkpoints) the safetensors copy only.
    chosen = safe or files
    return sum(p.stat().st_size for p in chosen) if chosen else None


def disk_needed(weights: int, full: bool, kept_checkpoints: int | None) -> int:
    """Bytes the run's checkpoints and final output may take.

    A full fine-tune checkpoint holds the weights plus AdamW's two moments (3x the weights) and
    ``save_total_limit`` of them are kept while one more is written; an adapter run's files are small,
    but its output is only useful next to the base, so at least the model's size is asked for.
    """
    if not full:
        return weights
    return 3 * weights * ((kept_checkpoints or 1) + 1) + weights


def _gb(n: float) -> str:
    return f"{n / 2**30:.1f} GB" if n >= 2**28 else f"{n / 2**20:.1f} MB"


def disk_warning(config: FtConfig, full: bool, plan: RunPlan) -> str | None:
    """A warning when the disk under the output directory has less room than the run may need."""
    weights = weights_bytes(config.model)
    if weights is None:
        return None
    where = nearest_existing(plan.staging.parent)
    free = shutil.disk_usage(where).free
    needed = disk_needed(weights, full, config.training.save_total_limit)
    if free >= needed:
        return None
    return (
        f"preflight: {_gb(free)} free on the disk of {where}, but this run may write {_gb(needed)} "
        f"(model weights {_gb(weights)}{', 3x per full checkpoint' if full else ''}); free some space, "
        "lower training.save_total_limit or choose another --output-dir"
    )


def memory_warning(config: FtConfig, options: Any) -> str | None:
    """A warning when ``ftcore.recommend``'s peak-memory estimate exceeds the memory available."""
    from ftcore import recommend

    shape = recommend.model_shape(config.model)
    hardware = recommend.detect_hardware()
    method = config.method if config.method in ("full", "qlora") else "lora"
    t = config.training
    dtype = config.dtype if config.dtype != "auto" else ("bfloat16" if hardware.device == "cuda" else "float32")
    setup = recommend.Setup(
        method=method, micro_batch=t.batch_size, seq_len=config.data.max_seq_len,
        checkpointing=t.gradient_checkpointing, dtype=dtype,
        precision=t.precision if t.precision != "auto" else ("bf16" if hardware.bf16 else "fp32"),
        rank=int(getattr(options, "r", 16) or 16), optimizer=t.optimizer,
    )
    needed = recommend.estimate(shape, setup, hardware.device).total
    if needed <= hardware.available:
        return None
    return (
        f"preflight: this run is estimated to need {_gb(needed)} of {hardware.device} memory "
        f"({method}, batch {t.batch_size} x {config.data.max_seq_len} tokens) but {_gb(hardware.available)} is available; "
        "lower training.batch_size or data.max_seq_len, turn on training.gradient_checkpointing, or see `ft recommend`"
    )


def preflight(config: FtConfig, spec: Any, options: Any, plan: RunPlan) -> list[str]:
    """Warn (never fail) when disk or memory look too small for the run; returns the warnings logged.

    Called before the model is loaded. An estimate that cannot be made is skipped (logged at debug level):
    a preflight check must never be the reason a run fails.
    """
    full = getattr(spec, "output", "adapter") == "model"
    warnings = []
    for check in (lambda: disk_warning(config, full, plan), lambda: memory_warning(config, options)):
        try:
            message = check()
        except Exception as exc:  # an estimate is advice; a model it cannot read fails later, properly
            log.debug("preflight check skipped: %s: %s", type(exc).__name__, exc)
            continue
        if message:
            log.warning("%s", message)
            warnings.append(message)
    return warnings


# ----------------------------------------------------------------------------- resume


def check_resume_matches(checkpoint: Path, model: Any) -> None:
    """Raise :class:`ModelError` when ``checkpoint``'s saved tensors do not fit ``model``'s shapes.

    Without this, resuming a checkpoint of another base model fails deep inside the Trainer with a
    page of ``size mismatch`` lines.
    """
    from safetensors import safe_open

    adapter = checkpoint / "adapter_model.safetensors"
    weights = adapter if adapter.is_file() else checkpoint / "model.safetensors"
    if not weights.is_file():
        return
    expected = _expected_shapes(model, adapter=adapter.is_file())
    with safe_open(str(weights), framework="pt") as handle:
        for name in handle.keys():  # noqa: SIM118 (safe_open is not a mapping)
            shape = list(handle.get_slice(name).get_shape())
            want = expected.get(name)
            if want is not None and want != shape:
                base = _checkpoint_base(checkpoint)
                raise ModelError(
                    f"checkpoint {checkpoint} does not match the model: {name} has shape {shape} there but "
                    f"{want} in the model{f'; it was trained on {base}' if base else ''}; resume with the same "
                    "model and method options"
                )


def _expected_shapes(model: Any, adapter: bool) -> dict[str, list[int]]:
    if adapter:
        from peft import get_peft_model_state_dict

        state = get_peft_model_state_dict(model)
    else:
        state = model.state_dict()
    return {name: list(tensor.shape) for name, tensor in state.items()}


def _checkpoint_base(checkpoint: Path) -> str | None:
    import json

    try:
        return json.loads((checkpoint / "adapter_config.json").read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (OSError, ValueError):
        return None


# ----------------------------------------------------------------------------- interruption and NaN


class Interrupted(TrainingError):
    """Training was stopped by a signal after saving a checkpoint; ``--resume`` continues it."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        # The shell convention for "ended by signal N".
        self.exit_code = 128 + signum


class TrainingGuard:
    """Signal handling and the non-finite-loss check for one ``trainer.train()`` call.

    Use as a context manager around ``trainer.train()``; afterwards :attr:`signal` is the signal that
    stopped training (or None) and :attr:`skipped` the steps whose update was dropped.
    """

    def __init__(self, trainer: Any, config: FtConfig) -> None:
        self.trainer = trainer
        self.policy = config.training.nan_policy
        self.signal: int | None = None
        self.skipped: list[int] = []
        self.step = 0
        self._bad_step: int | None = None
        self._previous: dict[int, Any] = {}
        self._hook: Any = None
        trainer.add_callback(_guard_callback(self))

    # -- context manager
    def __enter__(self) -> TrainingGuard:
        model = getattr(self.trainer, "model", None)
        if model is not None:
            self._hook = model.register_forward_hook(self._check_loss)
        if _main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._on_signal)
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
        if self._hook is not None:
            self._hook.remove()

    # -- signals
    def _on_signal(self, signum: int, _frame: Any) -> None:
        if self.signal is not None:
            # A second signal: the user does not want to wait for the checkpoint.
            self.__exit__()
            raise KeyboardInterrupt
        self.signal = signum
        log.warning("%s received: saving a checkpoint at the end of this step, then stopping "
                    "(send it again to stop at once, without a checkpoint)", signal.Signals(signum).name)

    def interruption(self, plan: RunPlan) -> Interrupted:
        """The error to raise after an interrupted ``train()`` (checkpoint saved in ``plan.staging``)."""
        from ftcore.rundir import latest_checkpoint

        assert self.signal is not None
        checkpoint = latest_checkpoint(plan.checkpoints)
        name = signal.Signals(self.signal).name
        return Interrupted(
            f"training interrupted by {name} at step {self.trainer.state.global_step}; checkpoint saved in "
            f"{checkpoint or plan.checkpoints}; to continue, run the same ft train command with --resume "
            f"(same config and output directory {plan.output})",
            self.signal,
        )

    # -- non-finite loss
    def _check_loss(self, module: Any, _args: Any, output: Any) -> None:
        loss = getattr(output, "loss", None)
        if loss is None or not module.training:
            return
        value = float(loss.detach().float().sum())
        if math.isfinite(value):
            return
        if self.policy == "stop":
            raise TrainingError(
                f"training loss is {value} at step {self.step}: the run diverged or a batch is broken; lower "
                "training.learning_rate, check the data, or set training.nan_policy: skip to skip such steps"
            )
        self._bad_step = self.step

    def skip_update(self, model: Any, state: Any) -> None:
        """Drop every gradient of a step that saw a non-finite loss, so the optimizer leaves weights as they are."""
        if self._bad_step != self.step:
            return
        for param in model.parameters():
            param.grad = None
        self.skipped.append(self.step)
        state.log_history.append({"step": self.step, "nonfinite_loss": True, "update_skipped": True})
        log.warning("step %d: non-finite training loss; this step's update was skipped (training.nan_policy: skip)",
                    self.step)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _guard_callback(guard: TrainingGuard) -> Any:
    """A ``TrainerCallback`` that tracks the step and acts on the guard's flags at step boundaries."""
    from transformers import TrainerCallback

    class FtGuardCallback(TrainerCallback):
        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            guard.step = state.global_step + 1

        def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
            if model is not None:
                guard.skip_update(model, state)

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if guard.signal is not None:
                # Log, save and stop at this optimizer-step boundary: the checkpoint is consistent.
                control.should_log = True
                control.should_save = True
                control.should_training_stop = True
            return control

    return FtGuardCallback()
