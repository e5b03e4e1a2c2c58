"""The ``instruction`` method: LoRA on instruction/chat data, response-only loss and chat template on."""

from __future__ import annotations

from typing import Any

from ftcore import MethodSpec
from ftcore.adapters import LoraOptions


class InstructionOptions(LoraOptions):
    """``method_options`` of ``instruction``: the LoRA options (rank, alpha, targets, ...)."""


def method_spec() -> MethodSpec:
    """The registered spec; ``chat=True`` makes ftcore require instruction data and mask the prompts."""
    return MethodSpec(
        "instruction",
        "LoRA instruction tuning: chat template, loss on assistant turns only (formats alpaca, sharegpt, messages)",
        options=InstructionOptions,
        output="adapter",
        chat=True,
    )


def attach(model: Any, options: InstructionOptions | None, config: Any = None) -> Any:
    """``model`` with a fresh LoRA adapter (only the adapter trains)."""
    from ftcore.adapters import attach_lora

    return attach_lora(model, options or InstructionOptions(), config)
