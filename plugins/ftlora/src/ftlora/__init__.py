"""ftlora: the ``lora`` method for ft — a LoRA adapter on a full-precision base model.

The entry module imports nothing heavy: peft is imported by :func:`ftcore.adapters.attach_lora`
when a run starts.
"""

from __future__ import annotations

from typing import Any

from ftcore import MethodSpec, hookimpl
from ftcore.adapters import LoraOptions

__version__ = "0.1.0"

METHOD = MethodSpec(
    "lora",
    "LoRA adapter on a full-precision base (options: r, alpha, dropout, target_modules, use_dora, use_rslora)",
    options=LoraOptions,
    output="adapter",
)


@hookimpl
def register_methods() -> list[MethodSpec]:
    return [METHOD]


@hookimpl
def setup_peft(model: Any, method: str, config: Any, options: LoraOptions) -> Any:
    if method != METHOD.name:
        return None
    from ftcore.adapters import attach_lora

    return attach_lora(model, options, config)
