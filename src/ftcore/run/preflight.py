"""Checks before a training run loads anything heavy: the output can be written, the model is there, and
disk and memory look big enough.

- :func:`check_writable` and :func:`check_before_loading` fail the run (one line) when the output location cannot
  be written or a local model path is missing or unreadable.
- :func:`preflight` warns, never fails, when the disk or the memory looks too small for the run, with numbers:
  the memory estimate is :mod:`ftcore.models.estimate`'s for the run's method (read from its ``MethodSpec``).

Nothing heavy is imported at module level.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftcore.errors import PluginError, RunDirError

if TYPE_CHECKING:
    from ftcore.artifacts.rundir import RunPlan
    from ftcore.config.schema import FtConfig
    from ftcore.contract.specs import MethodSpec

log = logging.getLogger(__name__)

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".ckpt", ".gguf")


# ----------------------------------------------------------------------------- paths


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
    from ftcore.models.loading import check_weights_dir, is_gguf, resolve_source

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


def _memory_setup(config: FtConfig, spec: MethodSpec, options: Any, hardware: Any, pass_tokens: int | None) -> Any:
    """The estimate's :class:`~ftcore.models.estimate.Setup` of this run with passes of at most ``pass_tokens``."""
    from ftcore.models import estimate as est

    t = config.training
    dtype = config.dtype if config.dtype != "auto" else ("bfloat16" if hardware.device == "cuda" else "float32")
    precision = t.precision if t.precision != "auto" else ("bf16" if hardware.bf16 else "fp32")
    return est.setup_for(spec, options, micro_batch=t.batch_size, seq_len=config.data.max_seq_len,
                         checkpointing=t.gradient_checkpointing, dtype=dtype, precision=precision, optimizer=t.optimizer,
                         loss="logits" if t.kernels == "none" or _sharded(config) else "chunked",
                         pass_tokens=None if _sharded(config) else pass_tokens)


def _sharded(config: FtConfig) -> bool:
    """FSDP or DeepSpeed: ft's chunked loss and token budget stay off."""
    return config.training.fsdp is not None or bool(config.training.deepspeed)


def choose_passes(config: FtConfig, spec: MethodSpec | None, options: Any) -> Any:
    """The token budget of one pass this run uses (a :class:`~ftcore.run.passes.PassChoice`): the configured one,
    or for ``training.micro_batch_tokens: auto`` the largest that its memory estimate fits in the free memory
    (:func:`~ftcore.run.passes.choose_pass_tokens`): on a GPU whole micro-batches when they fit, on a CPU passes of
    at most ``data.max_seq_len`` tokens (:data:`~ftcore.run.passes.CPU_PASS_TOKENS` when that is shorter)."""
    from ftcore.run import passes

    setting = config.training.micro_batch_tokens
    if setting != "auto":
        shown = "null (whole micro-batches)" if setting is None else f"{setting} tokens"
        return passes.PassChoice(passes.budget_for(setting), f"training.micro_batch_tokens is set to {shown}", setting)
    if _sharded(config):
        return passes.PassChoice(None, "DeepSpeed and FSDP take whole micro-batches")
    from ftcore.models import estimate as est

    try:
        shape = est.model_shape(config.model, config.trust_remote_code)
        hardware = est.detect_hardware()

        def needed(tokens: int | None) -> int:
            return est.estimate(shape, _memory_setup(config, spec, options, hardware, tokens), hardware.device).total

        whole = config.training.batch_size * config.data.max_seq_len
        cpu_cap = max(passes.CPU_PASS_TOKENS, config.data.max_seq_len)
        return passes.choose_pass_tokens(needed, hardware.available, whole,
                                         cap=None if hardware.device == "cuda" else cpu_cap)
    except Exception as exc:  # an estimate is advice; the run goes on with the fixed default
        from ftcore.run.arguments import cuda_available

        budget = passes.budget_for("auto", cuda_available())
        return passes.PassChoice(budget, f"no memory estimate ({type(exc).__name__}: {exc}); the fixed default "
                                         f"{'whole micro-batches' if budget is None else f'{budget} tokens'}")


def memory_warning(config: FtConfig, spec: MethodSpec, options: Any, pass_tokens: Any = "auto") -> str | None:
    """A warning when :mod:`ftcore.models.estimate`'s peak-memory estimate of the run exceeds the memory available.

    :param pass_tokens: the run's token budget per pass (:func:`choose_passes`); ``"auto"``: ``auto``'s fixed default.
    """
    from ftcore.models import estimate as est

    shape = est.model_shape(config.model, config.trust_remote_code)
    hardware = est.detect_hardware()
    t = config.training
    if pass_tokens == "auto":
        from ftcore.run import passes

        pass_tokens = passes.budget_for(t.micro_batch_tokens, hardware.device == "cuda")
    needed = est.estimate(shape, _memory_setup(config, spec, options, hardware, pass_tokens), hardware.device).total
    if needed <= hardware.available:
        return None
    return (
        f"preflight: this run is estimated to need {_gb(needed)} of {hardware.device} memory "
        f"({config.method}, batch {t.batch_size} x {config.data.max_seq_len} tokens) but {_gb(hardware.available)} is available; "
        "lower training.batch_size or data.max_seq_len, turn on training.gradient_checkpointing, or see `ft recommend`"
    )


def preflight(config: FtConfig, spec: MethodSpec | None, options: Any, plan: RunPlan, pass_tokens: Any = "auto") -> list[str]:
    """Warn (never fail) when disk or memory look too small for the run; returns the warnings logged.

    Called before the model is loaded. An estimate that cannot be made is skipped (logged at debug level):
    a preflight check must never be the reason a run fails.
    """
    full = getattr(spec, "output", "adapter") == "model"
    warnings = []
    for check in (lambda: disk_warning(config, full, plan), lambda: memory_warning(config, spec, options, pass_tokens)):
        try:
            message = check()
        except PluginError as exc:  # a plugin's bug (its memory_profile) is named, as one at import is
            log.warning("preflight: memory estimate skipped: %s", exc)
            continue
        except Exception as exc:  # an estimate is advice; a model it cannot read fails later, properly
            log.debug("preflight check skipped: %s: %s", type(exc).__name__, exc)
            continue
        if message:
            log.warning("%s", message)
            warnings.append(message)
    return warnings


# ----------------------------------------------------------------------------- a full disk

#: What torch's checkpoint writer (``torch.save``'s zip container) says when a write comes up short; it carries
#: no errno, so the text is what there is to recognise.
_TORCH_SHORT_WRITE = ("unexpected pos", "file write failed", "failed writing file")


def disk_full_path(exc: BaseException, plan: RunPlan) -> Path | None:
    """The path a run was writing when ``exc`` says the disk is full (or the quota is spent); None for any other error.

    A full disk shows as ``ENOSPC``/``EDQUOT``, as its message inside another library's error (safetensors), or as
    torch's short-write message while saving a checkpoint; the path is the one named, else the checkpoint left
    half-written, else the staging directory.
    """
    import errno

    message = str(exc)
    full = (getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or "No space left on device" in message
            or "Disk quota exceeded" in message
            or ("inline_container" in message and any(text in message for text in _TORCH_SHORT_WRITE)))
    if not full:
        return None
    named = getattr(exc, "filename", None)
    return Path(named) if named else _half_written(plan) or plan.staging


def _half_written(plan: RunPlan) -> Path | None:
    """The newest checkpoint directory whose save did not finish, if any."""
    from ftcore.artifacts.rundir import checkpoint_complete

    if not plan.checkpoints.is_dir():
        return None
    unfinished = [p for p in plan.checkpoints.glob("checkpoint-*") if p.is_dir() and not checkpoint_complete(p)]
    return max(unfinished, key=lambda p: p.stat().st_mtime) if unfinished else None


def check_output_dir(path: Path, option: str) -> None:
    """Raise :class:`RunDirError` when directory ``path`` cannot be made or written: a file is at it or where one of
    its parents must be, or its nearest existing directory is not writable. Checked before anything heavy loads."""
    from ftcore.artifacts.rundir import check_no_file_above

    path = path.expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise RunDirError(f"{option} {path} is a file; give a directory")
    check_no_file_above(path, option, option)
    where = nearest_existing(path)
    try:
        with tempfile.TemporaryFile(dir=where):
            pass
    except OSError as exc:
        raise RunDirError(f"{option} {path} cannot be written: {where}: {exc.strerror or type(exc).__name__}; "
                          f"choose another {option}") from None
