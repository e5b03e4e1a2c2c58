"""What a finished run writes into its staging directory: weights, tokenizer, config, metrics, loss curve, manifest."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftcore.artifacts import rundir
from ftcore.config.schema import config_to_yaml
from ftcore.run import distributed
from ftcore.run.manifest import build_manifest

if TYPE_CHECKING:
    from ftcore.run.state import RunState

log = logging.getLogger(__name__)


def save_weights(run: RunState, trainer: Any) -> None:
    """The trained weights into the staging directory (a sharded model's were saved by every rank together),
    and where the base model came from (``run.provenance``)."""
    from ftcore.artifacts.provenance import base_provenance

    if not distributed.shards_model(run.config):
        from ftcore.models.attention import restore_sdpa
        from ftcore.models.loss import uninstall as uninstall_loss

        restore_sdpa(trainer.model)
        uninstall_loss(trainer.model)
        trainer.model.save_pretrained(str(run.plan.staging))
    run.provenance = base_provenance(run.config.model, run.config.revision)


def write_run_files(run: RunState, trainer: Any, eval_loss: float | None) -> dict[str, Any]:
    """Tokenizer, config, metrics, loss curve and manifest into the staging directory; returns the manifest."""
    from ftcore.data.templates import template_to_save

    staging = run.plan.staging
    # An adapter library's placeholder model card says nothing about the run; a real one is written on upload.
    (staging / "README.md").unlink(missing_ok=True)
    # The tokenizer carries the template the chats were rendered with, whatever it had of its own.
    run.tokenizer.chat_template = template_to_save(run.config.data.chat_template, run.tokenizer)
    run.tokenizer.save_pretrained(str(staging))
    # A full fine-tune is a standalone model, and the tokenizer goes with every run: transformers 4.x reads both too.
    from ftcore.artifacts.portable import make_portable

    make_portable(staging)
    (staging / rundir.CONFIG).write_text(config_to_yaml(run.config), encoding="utf-8")
    rundir.write_metrics(staging / rundir.METRICS, trainer.state.log_history)
    _write_loss_curve(run, trainer.state.log_history)
    manifest = build_manifest(run, trainer, eval_loss)
    rundir.write_json(staging / rundir.MANIFEST, manifest)
    return manifest


def _write_loss_curve(run: RunState, history: list[dict[str, Any]]) -> None:
    """``loss.png``: a picture is a convenience, so a plotting failure is a warning, never a lost run."""
    from ftcore.artifacts.curves import LOSS_CURVE, write_loss_curve

    try:
        write_loss_curve(history, run.plan.staging / LOSS_CURVE, f"{run.config.method} · {Path(run.config.model).name}")
    except Exception as exc:  # matplotlib missing fonts, a broken backend...
        log.warning("could not draw %s: %s: %s", LOSS_CURVE, type(exc).__name__, exc)
