"""The ``instruction`` method: LoRA on instruction/chat data, response-only loss and chat template on.

It builds on ftlora (a declared dependency): the adapter is LoRA's, attached, loaded and merged by ftlora.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ftlora import LoraOptions

from ftcore import MethodSpec


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
    from ftlora import attach_lora

    return attach_lora(model, options or InstructionOptions(), config)


def load(model: Any, path: Path) -> Any:
    """``model`` with the trained adapter in ``path`` applied, for inference."""
    from ftlora import load_lora

    return load_lora(model, path)


def merge(model: Any, path: Path) -> Any:
    """``model`` with the trained adapter in ``path`` folded in."""
    from ftlora import merge_lora

    return merge_lora(model, path)


def tensor_shapes(model: Any) -> dict[str, list[int]]:
    """Shapes of the adapter tensors a checkpoint holds."""
    from ftlora import lora_tensor_shapes

    return lora_tensor_shapes(model)
