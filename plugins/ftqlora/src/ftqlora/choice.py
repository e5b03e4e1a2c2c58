"""For methods with their own loss that train a LoRA adapter, LoRA on a 4-bit base, or every weight (ftpref's
preference methods, ftrl's GRPO): the ``base`` option and what it means for loading, preparing and merging.

Such a method hands its trainer the prepared base and a LoRA config (TRL's trainers attach the adapter
themselves, so the reference model is the base with the adapter switched off, never a copy). Imported by those
plugins' entry modules: nothing heavy at module level.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from ftqlora import QLoraOptions


class BaseChoiceOptions(QLoraOptions):
    """LoRA's and QLoRA's options plus ``base``: what trains."""

    base: Literal["lora", "qlora", "full"] = Field(
        "lora", description="What trains: a LoRA adapter, LoRA on a 4-bit base, or every weight.")

    @property
    def output(self) -> str:
        """What the run saves: full weights when every weight trains, else an adapter."""
        return "model" if self.base == "full" else "adapter"

    @property
    def base_bits(self) -> int:
        """Bits per weight of the base while training (``bits`` under ``base: qlora``), for the memory estimate."""
        return self.bits if self.base == "qlora" else 16


def load_kwargs(options: BaseChoiceOptions, config: Any) -> dict[str, Any]:
    """``from_pretrained`` arguments of the base: 4-bit for ``base: qlora``, none otherwise."""
    if options.base != "qlora":
        return {}
    from ftqlora.quant import quantization_kwargs

    return quantization_kwargs(options, config)


def prepare_base(model: Any, options: BaseChoiceOptions, config: Any) -> Any:
    """Frozen under an adapter (k-bit-prepared on a 4-bit base), every weight trainable for ``base: full``."""
    if options.base == "full":
        for param in model.parameters():
            param.requires_grad_(True)
        return model
    if options.base == "qlora":
        from peft import prepare_model_for_kbit_training

        return prepare_model_for_kbit_training(model, use_gradient_checkpointing=config.training.gradient_checkpointing)
    for param in model.parameters():
        param.requires_grad_(False)
    return model


def adapter_config(model: Any, options: BaseChoiceOptions) -> Any:
    """The LoRA config the trainer attaches, or ``None`` for ``base: full``."""
    if options.base == "full":
        return None
    from ftlora import lora_config

    return lora_config(model, options)


def merge(model: Any, path: str | Path, options: BaseChoiceOptions | None) -> Any:
    """Fold the trained adapter in: QLoRA's merge (dequantize first) for ``base: qlora``, LoRA's otherwise."""
    if options is not None and options.base == "qlora":
        from ftqlora.dequant import merge_qlora

        return merge_qlora(model, path)
    from ftlora import merge_lora

    return merge_lora(model, path)
