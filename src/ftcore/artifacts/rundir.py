"""The run directory: where a run is built, how it is committed atomically, and reading it back.

A run is built in a sibling staging directory ``.<name>.tmp-partial`` (checkpoints included) and
renamed onto ``<name>`` only when it is finished, so a crash never leaves something that looks
complete; the staging directory is what ``--resume`` continues from after a kill. The name is
fixed, not per process, so every rank of a multi-process run agrees on it.

Layout (see docs/architecture.md): adapter or model weights, tokenizer files, ``ft_config.yaml``,
``ft_run.json`` (the manifest), ``metrics.jsonl`` and ``checkpoints/checkpoint-N/``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftcore.errors import RunDirError

log = logging.getLogger(__name__)

MANIFEST = "ft_run.json"
CONFIG = "ft_config.yaml"
METRICS = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
STAGING_SUFFIX = ".tmp-partial"
#: Written first into a staging directory, so that ``--overwrite`` knows the directory is ft's own.
STAGING_MARKER = ".ft-staging"

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


# ----------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class RunInfo:
    """A run directory read back: its path, manifest and resolved config (as a plain mapping)."""

    path: Path
    manifest: dict[str, Any]
    config: dict[str, Any]

    @property
    def output(self) -> str:
        """``"adapter"`` or ``"model"``: what the run saved."""
        return self.manifest.get("output", "adapter")

    @property
    def base_model(self) -> str:
        """The base model the run started from (absolute path for local sources, else a Hub id).

        A local base that is no longer there is replaced by its Hub id when the run recorded one.
        """
        recorded = self.manifest.get("base_model") or self.config.get("model", "")
        if Path(recorded).is_absolute() and not Path(recorded).exists() and self.base_hub_id:
            log.warning("the base model %s is gone; loading %s, its Hub id, instead", recorded, self.base_hub_id)
            return self.base_hub_id
        return recorded

    @property
    def base_hub_id(self) -> str | None:
        """The Hub id of the base model: recorded by the run (``base_model_provenance``), or the base itself
        when a run from before provenance was recorded named it by Hub id; None when unknown."""
        from ftcore.artifacts.provenance import is_hub_id

        provenance = self.manifest.get("base_model_provenance")
        if isinstance(provenance, dict) and is_hub_id(provenance.get("hub_id")):
            return provenance["hub_id"]
        recorded = self.manifest.get("base_model") or self.config.get("model")
        return recorded if is_hub_id(recorded) and not Path(recorded).exists() else None


def is_run_dir(path: str | Path) -> bool:
    """True when ``path`` is a directory holding an ft manifest."""
    return (Path(path) / MANIFEST).is_file()


def load_run(path: str | Path) -> RunInfo:
    """Read a run directory's manifest and config; RunDirError when it is not a run directory."""
    import yaml

    path = Path(path).expanduser().resolve()
    if not path.is_dir():
        raise RunDirError(f"run directory does not exist: {path}")
    if not is_run_dir(path):
        raise RunDirError(f"{path} is not an ft run directory (no {MANIFEST})")
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        config = yaml.safe_load((path / CONFIG).read_text(encoding="utf-8")) if (path / CONFIG).is_file() else {}
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise RunDirError(f"{path}: unreadable run directory: {exc}") from exc
    return RunInfo(path, manifest, config or {})


def latest_checkpoint(directory: str | Path) -> Path | None:
    """The ``checkpoint-N`` with the highest N under ``directory`` whose write finished, if any."""
    directory = Path(directory)
    if not directory.is_dir():
        return None
    found = []
    for child in directory.iterdir():
        match = _CHECKPOINT.match(child.name)
        if match and checkpoint_complete(child):
            found.append((int(match.group(1)), child))
    return max(found)[1] if found else None


def checkpoint_complete(checkpoint: Path) -> bool:
    """True when the Trainer finished writing ``checkpoint``: its state file, written last, parses.

    A process killed while saving leaves a checkpoint without ``trainer_state.json`` or with half of it.
    """
    try:
        state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(state, dict) and "global_step" in state


def staging_path(output: Path) -> Path:
    """The sibling directory a run is built in before it is renamed onto ``output``."""
    return output.with_name(f".{output.name}{STAGING_SUFFIX}")


# ----------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class RunPlan:
    """Where a run writes and what it continues from; decided before anything heavy happens.

    :param output: the final run directory.
    :param staging: where the run is built (``.<name>.tmp-partial``).
    :param resume_from: the checkpoint to resume from, or ``None`` for a fresh run.
    :param adopt: the existing ``output`` is moved back to ``staging`` to continue it (``--resume``
        of a finished or interrupted run).
    """

    output: Path
    staging: Path
    resume_from: Path | None = None
    adopt: bool = False
    overwrite: bool = False

    @property
    def checkpoints(self) -> Path:
        return self.staging / CHECKPOINTS


def output_location(output_dir: str | Path) -> Path:
    """``output_dir`` resolved, refusing places a run must never be built at or renamed from.

    The filesystem root and the current directory (or one of its parents) are refused: a run
    directory is renamed into place and an old one renamed away, which must never take the
    working directory's files with it.
    """
    output = Path(output_dir).expanduser().resolve()
    if output.parent == output:
        raise RunDirError(f"output_dir {output} is the filesystem root; choose a new directory such as ./runs/NAME")
    cwd = Path.cwd().resolve()
    if output == cwd or output in cwd.parents:
        raise RunDirError(f"output_dir {output} is the current directory or contains it; "
                          "choose a new directory such as ./runs/NAME")
    if output.exists() and not output.is_dir():
        raise RunDirError(f"output directory {output} is a file; choose another --output-dir")
    check_no_file_above(output, "output directory", "--output-dir")
    return output


def check_no_file_above(path: Path, what: str, option: str) -> None:
    """RunDirError when a regular file sits where one of ``path``'s parent directories must be (no directory can
    be made under a file)."""
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise RunDirError(f"{what} {path} cannot be created: {parent} is a file, not a directory; "
                                  f"choose another {option}")
            return


def plan_run(output_dir: str | Path, *, overwrite: bool = False, resume: bool | str | None = None) -> RunPlan:
    """Check the output location and find the checkpoint to resume from, writing nothing.

    :param resume: ``None``/``False`` for a fresh run, ``True`` for the latest checkpoint of this
        run, or a path (a checkpoint, a run directory, or its staging directory).
    """
    if overwrite and resume:
        raise RunDirError("--overwrite and --resume contradict each other; use one")
    output = output_location(output_dir)
    staging = staging_path(output)
    if resume:
        return _plan_resume(output, staging, resume)
    if overwrite:
        _check_replaceable(output, staging)
    else:
        _check_fresh(output, staging)
    return RunPlan(output, staging, overwrite=overwrite)


def _unfinished_step(staging: Path) -> str:
    checkpoint = latest_checkpoint(staging / CHECKPOINTS)
    return f" (checkpoint at step {checkpoint.name.split('-')[1]})" if checkpoint else ""


def _nothing_to_resume(staging: Path) -> bool:
    """True for ft's own staging directory of a run stopped before its first checkpoint: a new run replaces it."""
    return staging.is_dir() and is_ft_staging(staging) and latest_checkpoint(staging / CHECKPOINTS) is None


def _check_fresh(output: Path, staging: Path) -> None:
    # A staging directory with nothing to continue is not in the way: begin() replaces it (--resume refuses it).
    unfinished = staging.exists() and not _nothing_to_resume(staging)
    finished = is_run_dir(output)
    if finished and unfinished:
        raise RunDirError(
            f"{output} holds a finished run and {staging.name} an unfinished one{_unfinished_step(staging)} that was "
            "started to replace it: --resume continues the unfinished run and replaces the finished one when it "
            "completes; --overwrite discards the unfinished run and starts a new one that replaces the finished one "
            "when it completes; or choose another --output-dir to keep the finished run as it is"
        )
    if finished:
        raise RunDirError(
            f"{output} already holds a finished run; --resume continues it from its last checkpoint, --overwrite "
            "replaces it once a new run completes, or choose another --output-dir"
        )
    if output.is_dir() and any(output.iterdir()):
        raise RunDirError(f"{output} exists, is not empty and is not an ft run; choose another --output-dir")
    if unfinished:
        raise RunDirError(
            f"{output} has an unfinished run in {staging.name}{_unfinished_step(staging)}; --resume continues it, "
            "--overwrite discards it and starts over"
        )


def is_ft_staging(staging: Path) -> bool:
    """True when ``staging`` is ft's own partial run (its marker or ft's files), or empty (nothing to lose)."""
    return any((staging / name).exists() for name in (STAGING_MARKER, MANIFEST, CHECKPOINTS)) or not any(
        staging.iterdir())


def _check_replaceable(output: Path, staging: Path) -> None:
    """``--overwrite`` only ever replaces an ft run or ft's own partial run; anything else is refused."""
    if output.is_dir() and any(output.iterdir()) and not is_run_dir(output):
        raise RunDirError(f"--overwrite: {output} is not an ft run (no {MANIFEST}); ft replaces only its own runs, "
                          "so move it away or choose another --output-dir")
    if staging.exists() and not (staging.is_dir() and is_ft_staging(staging)):
        raise RunDirError(f"--overwrite: {staging} was not made by ft; move it away or choose another --output-dir")


def _plan_resume(output: Path, staging: Path, resume: bool | str) -> RunPlan:
    if resume is True or resume == "latest":
        checkpoint = latest_checkpoint(staging / CHECKPOINTS)
        if checkpoint is not None:
            return RunPlan(output, staging, checkpoint)
        checkpoint = latest_checkpoint(output / CHECKPOINTS)
        if checkpoint is not None:
            return RunPlan(output, staging, staging / CHECKPOINTS / checkpoint.name, adopt=True)
        raise RunDirError(f"nothing to resume: no checkpoint in {output} or {staging.name}; run without --resume")
    checkpoint = _checkpoint_at(Path(str(resume)).expanduser().resolve())
    inside_output = output in checkpoint.parents
    if inside_output:
        return RunPlan(output, staging, staging / checkpoint.relative_to(output), adopt=True)
    if staging not in checkpoint.parents:
        _check_fresh(output, staging)
    return RunPlan(output, staging, checkpoint)


def _checkpoint_at(path: Path) -> Path:
    """The checkpoint ``--resume PATH`` names: the path itself, or the latest one inside it."""
    if (path / "trainer_state.json").is_file():
        if not checkpoint_complete(path):
            raise RunDirError(f"--resume {path}: this checkpoint was cut short while saving (trainer_state.json is "
                              "incomplete); resume from an earlier checkpoint")
        return path
    found = latest_checkpoint(path / CHECKPOINTS) or latest_checkpoint(path)
    if found is None:
        raise RunDirError(f"--resume {path}: no checkpoint there (expected checkpoint-N with trainer_state.json)")
    return found


# ----------------------------------------------------------------------------- writing


def begin(plan: RunPlan) -> None:
    """Create (or take over) the staging directory; only rank 0 calls this."""
    if plan.overwrite and plan.staging.exists():
        _check_replaceable(plan.output, plan.staging)
        shutil.rmtree(plan.staging)
    elif not plan.resume_from and _nothing_to_resume(plan.staging):
        shutil.rmtree(plan.staging)  # a run stopped before its first checkpoint left nothing to continue
    if plan.adopt:
        if plan.staging.exists():
            raise RunDirError(f"cannot resume {plan.output}: {plan.staging.name} is in the way; remove it first")
        plan.output.rename(plan.staging)
    plan.staging.mkdir(parents=True, exist_ok=True)
    (plan.staging / STAGING_MARKER).touch()


def record_start(plan: RunPlan, config_yaml: str, fingerprint: str | None) -> None:
    """Record the config and data fingerprint a fresh run starts with, so that ``--resume`` can compare."""
    (plan.staging / CONFIG).write_text(config_yaml, encoding="utf-8")
    write_json(plan.staging / STAGING_MARKER, {"data_fingerprint": fingerprint})


def commit(plan: RunPlan) -> Path:
    """Rename the finished staging directory onto the output path (replacing an old ft run last)."""
    old = None
    if plan.output.exists():
        if any(plan.output.iterdir()) and not is_run_dir(plan.output):
            raise RunDirError(f"{plan.output} was filled by something else during the run; the finished run stays "
                              f"in {plan.staging}")
        old = plan.output.with_name(f".{plan.output.name}.old-{os.getpid()}")
        plan.output.rename(old)
    (plan.staging / STAGING_MARKER).unlink(missing_ok=True)
    plan.staging.rename(plan.output)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return plan.output


def abandon(plan: RunPlan) -> None:
    """After a failure: drop the staging directory unless it holds checkpoints worth resuming."""
    if plan.adopt:
        _give_back(plan)
        return
    if not plan.staging.is_dir() or not is_ft_staging(plan.staging):
        return
    if latest_checkpoint(plan.checkpoints) is None:
        shutil.rmtree(plan.staging, ignore_errors=True)


def _give_back(plan: RunPlan) -> None:
    """A resumed run that failed before saving a new checkpoint goes back where it was, as it was."""
    if plan.staging.is_dir() and not plan.output.exists() and latest_checkpoint(plan.checkpoints) == plan.resume_from:
        (plan.staging / STAGING_MARKER).unlink(missing_ok=True)
        plan.staging.rename(plan.output)


def write_json(path: Path, data: Any) -> None:
    """Write JSON through a temporary file and a rename, so readers never see half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)


def write_metrics(path: Path, log_history: list[dict[str, Any]]) -> None:
    """One JSON object per logged step (``step``, ``loss``, ``learning_rate``, ``epoch``, ``eval_loss``...)."""
    with path.open("w", encoding="utf-8") as handle:
        for entry in log_history:
            handle.write(json.dumps(entry, default=float) + "\n")
