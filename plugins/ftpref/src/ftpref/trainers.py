"""TRL's preference trainers built from the run ftcore prepared (imported only when a run starts).

ftcore hands over the base model as loaded (for an adapter base, ``setup_peft`` attached nothing): the trainer
attaches the LoRA adapter itself from ``peft_config``, so its reference model is that same base with the adapter
switched off, never a second copy and never an extra ``ref`` adapter in the saved run. With ``base: full`` the
reference's log-probabilities are computed once before training, again without a second copy.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ftcore import ConfigError, DataError


def _trl(method: str) -> tuple[Any, Any]:
    """``(trainer class, config class)`` of TRL for ``method``."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if method == "dpo":
            from trl import DPOConfig, DPOTrainer

            return DPOTrainer, DPOConfig
        if method == "kto":
            from trl import KTOConfig, KTOTrainer

            return KTOTrainer, KTOConfig
        if method == "orpo":
            from trl.experimental.orpo import ORPOConfig, ORPOTrainer

            return ORPOTrainer, ORPOConfig
        from trl.experimental.cpo import CPOConfig, CPOTrainer

        return CPOTrainer, CPOConfig


def method_settings(method: str, options: Any) -> dict[str, Any]:
    """The loss settings of ``method`` as TRL's config fields."""
    settings: dict[str, Any] = {"beta": options.beta}
    if method == "dpo":
        settings.update(loss_type=[options.loss_type], label_smoothing=options.label_smoothing,
                        precompute_ref_log_probs=options.base == "full")
    elif method == "kto":
        # KTO pairs each answer with its batch neighbours' for the KL term, in a fixed order; ftcore has already
        # shuffled the examples with the run's seed, so reading them in order loses nothing.
        settings.update(desirable_weight=options.desirable_weight, undesirable_weight=options.undesirable_weight,
                        precompute_ref_log_probs=options.base == "full", train_sampling_strategy="sequential")
    elif method == "simpo":
        settings.update(loss_type="simpo", cpo_alpha=0.0, simpo_gamma=options.gamma)
    return settings


def trainer_arguments(config_class: Any, args: Any, settings: dict[str, Any]) -> Any:
    """TRL's config for this run: every ``TrainingArguments`` field as ftcore set it, plus the method's settings."""
    from transformers import TrainingArguments

    fields = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainingArguments) if f.init}
    try:
        return config_class(**{**fields, **settings})
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"method_options: {exc}") from exc


def build_trainer(method: str, model: Any, tokenizer: Any, args: Any, train_dataset: Any, eval_dataset: Any,
                  callbacks: list[Any], config: Any, options: Any) -> Any:
    """The TRL trainer of ``method`` over the rendered examples."""
    from ftqlora.choice import adapter_config

    trainer_class, config_class = _trl(method)
    # prompt + answer is cut from its end at max_seq_len, as ftpref.encode.measure reported (pairs whose prompt
    # alone fills it were dropped there); DPO names that truncation, the others only do it.
    truncation = {"truncation_mode": "keep_start"} if method == "dpo" else {}
    settings = {
        **method_settings(method, options),
        **truncation,
        "max_length": config.data.max_seq_len,
        "gradient_checkpointing": config.training.gradient_checkpointing,
        "dataset_num_proc": None,
    }
    trainer = trainer_class(
        model=model, args=trainer_arguments(config_class, args, settings), train_dataset=train_dataset,
        eval_dataset=eval_dataset, processing_class=tokenizer, callbacks=callbacks,
        peft_config=adapter_config(model, options),
    )
    _check_kept(trainer, config.data.max_seq_len)
    trainer.add_callback(token_count_resumer(trainer))
    return trainer


def token_count_resumer(trainer: Any) -> Any:
    """A callback that starts TRL's own token count (``num_tokens`` in the logs; DPO and KTO keep it in the trainer,
    not in checkpoints) where a resumed run's state left it, not at 0. Both count the ``attention_mask`` of every
    training batch, as the state's ``num_input_tokens_seen`` does under ft's ``non_padding`` setting."""
    import weakref

    from transformers import TrainerCallback

    owner = weakref.ref(trainer)

    class ResumeTokenCount(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            current = owner()
            if current is not None and hasattr(current, "_total_train_tokens") and state.global_step > 0:
                current._total_train_tokens = int(state.num_input_tokens_seen)

    return ResumeTokenCount()


def _check_kept(trainer: Any, max_seq_len: int) -> None:
    """A DataError when TRL dropped every example of a split: it drops those whose prompt alone fills
    ``max_length`` (nothing of the answer would be left to learn from), and an empty split would fail later in
    the sampler (``num_samples=0``)."""
    for split, dataset in (("train", trainer.train_dataset), ("eval", trainer.eval_dataset)):
        if dataset is not None and hasattr(dataset, "__len__") and len(dataset) == 0:
            raise DataError(f"{split} data: every prompt is at least data.max_seq_len ({max_seq_len}) tokens long, so "
                            "no answer token would be left to learn from; raise data.max_seq_len or shorten the prompts")
