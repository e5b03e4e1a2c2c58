"""The trainer of a run: the method plugin's ``make_trainer``, else ft's own ``transformers.Trainer`` with
token-budgeted passes and the chunked loss; its callbacks; the final evaluation."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ftcore.contract.plugins import get_registry
from ftcore.errors import PluginError
from ftcore.run import distributed, trackers
from ftcore.run.arguments import cuda_available, training_arguments
from ftcore.run.progress import progress_callback

if TYPE_CHECKING:
    from ftcore.run.state import RunState

log = logging.getLogger(__name__)


def build_trainer(run: RunState) -> Any:
    """The plugin's trainer when its ``make_trainer`` answers, else ft's own (``transformers.Trainer`` with
    token-budgeted passes, :mod:`ftcore.run.passes`)."""
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


def _host_trainer(run: RunState, common: dict[str, Any]) -> Any:
    """ft's own trainer, running micro-batches in passes of ``training.micro_batch_tokens``."""
    from ftcore.run import passes

    choice = run.passes
    budget = choice.tokens if choice is not None else passes.budget_for(run.config.training.micro_batch_tokens, cuda_available())
    if budget is not None and distributed.shards_model(run.config):
        log.info("training.micro_batch_tokens: DeepSpeed and FSDP take whole micro-batches (no token budget)")
        budget = None
    elif choice is not None and choice.setting == "auto":
        log.info("training.micro_batch_tokens auto: %s", choice.reason)
    elif budget is not None:
        log.info("training.micro_batch_tokens: each micro-batch runs in passes of at most %d tokens", budget)
    # bf16 autocast on a CPU: a few row lengths instead of one per pass (see passes.pad_flat_row).
    args = common["args"]
    pad_rows = bool(args.bf16) and not cuda_available()
    if pad_rows:  # and no bf16 copy of each linear weight kept from the forward pass to the backward (models.linear)
        from ftcore.models import linear

        linear.install(run.model)
    pad_id = next((i for i in (getattr(run.tokenizer, "pad_token_id", None), getattr(run.tokenizer, "eos_token_id", None))
                   if isinstance(i, int)), 0)
    return passes.trainer_class()(processing_class=run.tokenizer, micro_batch_tokens=budget, pad_rows=pad_rows,
                                  pad_id=pad_id, **common)


def log_passes(trainer: Any) -> None:
    """How many forward+backward passes the micro-batches took (ft's own trainer with a token budget)."""
    budget = getattr(trainer, "micro_batch_tokens", None)
    if budget is not None and trainer.micro_batches:
        log.info("training.micro_batch_tokens %d: %d micro-batches ran in %d passes (%.1f per micro-batch)",
                 budget, trainer.micro_batches, trainer.passes, trainer.passes / trainer.micro_batches)


def _use_loss_kernel(run: RunState) -> None:
    """Compute ``transformers.Trainer``'s loss without the full logits (``training.kernels``; see ftcore.models.loss).

    Only for ft's own trainer (a plugin's trainer may read the logits) and unsharded models (ZeRO-3 and FSDP
    gather the head's weight only inside its own forward).
    """
    from ftcore.models import loss

    if distributed.shards_model(run.config):
        return
    kernel = loss.choose_kernel(run.config.training.kernels, cuda_available())
    if loss.install(run.model, kernel):
        log.info("training loss: %s cross-entropy over labelled positions (no full logits)", kernel)


def _early_stopping(t: Any) -> Any:
    """Transformers' early stopping on metric_for_best_model (eval_loss by default)."""
    from transformers import EarlyStoppingCallback

    return EarlyStoppingCallback(early_stopping_patience=t.early_stopping_patience,
                                 early_stopping_threshold=t.early_stopping_threshold)


def final_eval(trainer: Any, run: RunState) -> float | None:
    """Evaluation loss at the end (from the last step-based eval, or one evaluation now)."""
    if run.data.eval is None:
        return None
    if not run.config.training.eval_steps:
        return trainer.evaluate().get("eval_loss")
    losses = [e["eval_loss"] for e in trainer.state.log_history if "eval_loss" in e]
    return losses[-1] if losses else None
