"""Experiment trackers (TensorBoard, W&B, MLflow, ...): where their logs go, the run's name, ft's config as params.

transformers' integrations do the logging; ft only points them at a visible logs folder (the run itself is
built in a hidden staging directory until it finishes), names the run and project, lets MLflow use a local
``file:`` store (MLflow 3 refuses one unless ``MLFLOW_ALLOW_FILE_STORE=true``) and adds ft's own config to
what the tracker records, so a run can be found and compared by ft's keys, not only by TrainingArguments'.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ftcore.config.schema import FtConfig

log = logging.getLogger(__name__)

#: MLflow's parameters take at most this many characters per value and this many per call.
_MLFLOW_VALUE_CHARS = 6000
_MLFLOW_BATCH = 100


def run_name(config: FtConfig) -> str:
    """The run's name in trackers: ``training.run_name``, else the output directory's name."""
    return config.training.run_name or Path(config.output_dir).name


def logging_dir(config: FtConfig) -> Path:
    """Where tracker files go: ``training.logging_dir``, else ``logs/<run name>`` next to the run directory.

    Outside the run directory on purpose: it stays visible while the run is built in its hidden staging
    directory, and ``tensorboard --logdir <runs>/logs`` compares every run of a folder.
    """
    if config.training.logging_dir:
        return Path(config.training.logging_dir).expanduser()
    output = Path(config.output_dir).expanduser()
    return output.parent / "logs" / run_name(config)


def environment(config: FtConfig) -> dict[str, str]:
    """Environment variables that point the chosen trackers at the logs folder and name the project."""
    trackers = set(config.training.report_to)
    logs = logging_dir(config).resolve()
    env: dict[str, str] = {}
    if "tensorboard" in trackers:
        env["TENSORBOARD_LOGGING_DIR"] = str(logs)
    if "mlflow" in trackers:
        uri = os.environ.get("MLFLOW_TRACKING_URI") or (logs / "mlruns").as_uri()
        env["MLFLOW_TRACKING_URI"] = uri
        if _is_file_store(uri):
            env["MLFLOW_ALLOW_FILE_STORE"] = os.environ.get("MLFLOW_ALLOW_FILE_STORE", "true")
    project = config.training.project
    if project:
        env.update({"WANDB_PROJECT": project, "MLFLOW_EXPERIMENT_NAME": project, "COMET_PROJECT_NAME": project})
    return env


def _is_file_store(uri: str) -> bool:
    """True for an MLflow ``file:`` URI or a plain local path (MLflow treats both as a file store)."""
    scheme = uri.split(":", 1)[0] if "://" in uri or uri.startswith("file:") else ""
    return scheme in ("", "file")


@contextlib.contextmanager
def tracking(config: FtConfig) -> Iterator[Path | None]:
    """Set the trackers' environment for the duration of training; yields the logs folder (None: no tracker)."""
    if not config.training.report_to:
        yield None
        return
    logs = logging_dir(config)
    logs.mkdir(parents=True, exist_ok=True)
    env = environment(config)
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    log.info("tracker logs: %s (%s)", logs, ", ".join(config.training.report_to))
    try:
        yield logs
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def flat_config(config: FtConfig) -> dict[str, str]:
    """ft's config as flat ``ft.section.key`` → text parameters, the way trackers store parameters."""
    out: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for key, item in value.items():
                walk(f"{prefix}.{key}", item)
        else:
            out[prefix] = str(value)

    walk("ft", config.model_dump(mode="json"))
    return out


def callbacks(config: FtConfig) -> list[Any]:
    """The callback that records ft's config in the run's trackers (none when no tracker is on)."""
    if not config.training.report_to:
        return []
    from transformers import TrainerCallback

    class FtConfigToTrackers(_ConfigLogger, TrainerCallback):
        pass

    return [FtConfigToTrackers(config)]


class _ConfigLogger:
    """On train begin (after the trackers' own callbacks started their runs), add ft's config to each."""

    def __init__(self, config: FtConfig) -> None:
        self.config = config

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        for name in self.config.training.report_to:
            writer = _WRITERS.get(name)
            if writer is None:
                continue
            try:
                writer(self.config)
            except Exception as exc:  # a tracker problem must not stop training
                log.warning("could not record ft's config in %s: %s", name, exc)


def _to_wandb(config: FtConfig) -> None:
    import wandb

    if wandb.run is not None:
        wandb.config.update({"ft": config.model_dump(mode="json")}, allow_val_change=True)


def _to_mlflow(config: FtConfig) -> None:
    import mlflow

    if mlflow.active_run() is None:
        return
    items = [(key, value[:_MLFLOW_VALUE_CHARS]) for key, value in flat_config(config).items()]
    for start in range(0, len(items), _MLFLOW_BATCH):
        mlflow.log_params(dict(items[start:start + _MLFLOW_BATCH]))


def _to_tensorboard(config: FtConfig) -> None:
    from torch.utils.tensorboard import SummaryWriter

    from ftcore.config.schema import config_to_yaml

    with SummaryWriter(log_dir=str(logging_dir(config))) as writer:
        writer.add_text("ft_config", "```yaml\n" + config_to_yaml(config) + "```")


_WRITERS = {"wandb": _to_wandb, "mlflow": _to_mlflow, "tensorboard": _to_tensorboard}
