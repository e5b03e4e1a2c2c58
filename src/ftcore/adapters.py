"""LoRA helpers that method plugins reuse: the options model and attaching an adapter.

Methods built on LoRA (``lora``, ``qlora``, ``instruction``, third-party ones) validate their
``method_options`` with :class:`LoraOptions` (or a subclass) and call :func:`attach_lora`, so they need
not depend on one another. Importing this module is cheap; peft is imported inside the functions.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from ftcore.config import FtConfig


class LoraOptions(BaseModel):
    """Options of a LoRA adapter; ``method_options`` of the ``lora`` method."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    r: int = Field(16, ge=1, description="Rank of the update matrices.")
    alpha: float = Field(32.0, gt=0, description="Scaling numerator: the update is scaled by alpha / r (alpha / sqrt(r) with rsLoRA).")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the adapter's input.")
    target_modules: Literal["auto", "all-linear"] | list[str] = Field(
        "auto",
        description="Module names to adapt: 'auto' (every Linear layer except the output head), or a list such as [q_proj, v_proj].",
    )
    use_dora: bool = Field(False, description="Weight-decomposed LoRA (DoRA).")
    use_rslora: bool = Field(False, description="Rank-stabilised scaling alpha / sqrt(r).")
    modules_to_save: list[str] = Field(default_factory=list, description="Modules trained fully and saved with the adapter, e.g. [lm_head].")
    bias: Literal["none", "all", "lora_only"] = Field("none", description="Which biases to train.")


def lora_config(model: Any, options: LoraOptions) -> Any:
    """The ``peft.LoraConfig`` for ``model`` described by ``options`` (target modules resolved)."""
    from peft import LoraConfig

    from ftcore.models import find_target_modules

    targets = options.target_modules
    if targets in ("auto", "all-linear"):
        targets = find_target_modules(model)
    return LoraConfig(
        task_type="CAUSAL_LM",
        r=options.r,
        lora_alpha=options.alpha,
        lora_dropout=options.dropout,
        target_modules=list(targets),
        use_dora=options.use_dora,
        use_rslora=options.use_rslora,
        modules_to_save=list(options.modules_to_save) or None,
        bias=options.bias,
    )


def attach_lora(model: Any, options: LoraOptions, config: FtConfig | None = None) -> Any:
    """Wrap ``model`` in a ``peft.PeftModel`` with a fresh LoRA adapter; only the adapter trains.

    Turns on gradient checkpointing when ``config.training.gradient_checkpointing`` asks for it
    (with input gradients enabled, which a frozen base needs for checkpointing to reach the adapter).
    Raises :class:`ftcore.ModelError` when a named target module does not exist in the model.
    """
    from peft import get_peft_model

    from ftcore.errors import ModelError

    if config is not None and config.training.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    peft_config = lora_config(model, options)
    try:
        with warnings.catch_warnings():
            # peft asks transformers 5 for a deprecated attribute; the warning means nothing to users.
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            return get_peft_model(model, peft_config)
    except ValueError as exc:
        if "not found in the base model" in str(exc) or "Target modules" in str(exc):
            raise ModelError(
                f"method_options.target_modules: {list(peft_config.target_modules)} do not match the model's "
                f"modules (linear layers here: {', '.join(_linear_names(model))})"
            ) from exc
        raise


def enable_gradient_checkpointing(model: Any) -> None:
    """Recompute activations in the backward pass; input grads on so frozen bases still backprop."""
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    model.config.use_cache = False


def _linear_names(model: Any) -> list[str]:
    from ftcore.models import find_target_modules

    return find_target_modules(model)


def count_parameters(model: Any) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts of ``model`` (4-bit weights counted unpacked)."""
    trainable = total = 0
    for param in model.parameters():
        n = param.numel()
        # bitsandbytes packs two 4-bit values per byte; count the weights they stand for.
        if param.__class__.__name__ == "Params4bit":
            n *= 2
        total += n
        if param.requires_grad:
            trainable += n
    return trainable, total
