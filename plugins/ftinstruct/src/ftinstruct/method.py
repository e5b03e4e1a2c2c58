"""The ``instruction`` method: LoRA on instruction/chat data, response-only loss and chat template on.

It builds on ftlora (a declared dependency): the adapter is LoRA's, attached, loaded and merged by
ftlora's hooks (:mod:`ftlora.kit`).
"""

from __future__ import annotations

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

