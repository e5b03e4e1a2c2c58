"""ftpref's reward-model plugin: method ``rm``, a scalar head trained on preference pairs with the Bradley-Terry loss.

A plugin of its own (entry point ``ftpref_rm``), so ft calls only these hooks for ``rm``: the method declares
``model_kind="sequence_classification"``, ft loads the base as a sequence classifier with one output, and every
weight trains. The run is a reward model: ftrl's ``reward_model`` reward scores GRPO completions with it; ``ft
generate`` refuses it. Nothing heavy is imported here.
"""

from __future__ import annotations

from typing import Any

from ftcore import MethodSpec, hookimpl
from ftpref.options import RmOptions

FTCORE_PLUGIN_API = 3

RM = MethodSpec("rm", "reward model on preference pairs: a scalar head, Bradley-Terry loss, held-out pair accuracy "
                "as eval_accuracy (options: center_rewards_coefficient); score with ftrl's reward_model",
                options=RmOptions, shapes=("preference",), output="model", adapter_rank_option=None,
                sequences_per_example=2, model_kind="sequence_classification")


@hookimpl
def register_methods() -> list[MethodSpec]:
    return [RM]


@hookimpl
def setup_peft(model: Any, method: str, config: Any) -> Any:
    """``rm`` trains every weight of the sequence classifier ft loaded."""
    if method != RM.name:
        return None
    if config.training.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


@hookimpl
def make_trainer(model: Any, tokenizer: Any, args: Any, train_dataset: Any, eval_dataset: Any, callbacks: list[Any],
                 method: str, config: Any, options: Any) -> Any:
    """The Bradley-Terry trainer of ``rm``."""
    if method != RM.name:
        return None
    from ftpref.reward_model import build_trainer

    return build_trainer(model, tokenizer, args, train_dataset, eval_dataset, callbacks, config, options)
