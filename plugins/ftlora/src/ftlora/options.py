"""The options of a LoRA adapter: ``method_options`` of ``lora`` and of the methods built on it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class LoraOptions(BaseModel):
    """Options of a LoRA adapter; ``method_options`` of the ``lora`` method.

    Methods built on LoRA (``qlora``, ``instruction``, third-party ones) subclass it to add their own.
    """

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
