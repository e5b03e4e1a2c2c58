"""ftlora's adapter hooks, ready-made for every method whose trained adapter is LoRA's.

A method plugin takes the ones it needs by importing them into its entry module (pluggy registers every hook
implementation the module holds, imported ones included) and writes only the hooks that differ::

    from ftlora.kit import load_adapter, trained_tensor_shapes  # noqa: F401  (ftlora's adapter hooks)

ftcore calls a work hook on the plugin that registered the run's method only, so none of these looks at the
method's name. The options the host passes are the method's validated options (a :class:`LoraOptions`, or a
subclass of it, for ``setup_peft``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ftcore import MemoryProfile, hookimpl
from ftlora.adapter import attach_lora, load_lora, lora_memory, lora_tensor_shapes, merge_lora
from ftlora.options import LoraOptions


@hookimpl
def setup_peft(model: Any, config: Any, options: LoraOptions | None) -> Any:
    """The base model with a fresh LoRA adapter attached (only the adapter, and added token rows, train)."""
    return attach_lora(model, options or LoraOptions(), config)


@hookimpl
def load_adapter(model: Any, path: Path) -> Any:
    """The base model with the LoRA adapter in ``path`` applied, for inference."""
    return load_lora(model, path)


@hookimpl
def merge_adapter(model: Any, path: Path) -> Any:
    """The base model with the LoRA adapter in ``path`` folded in."""
    return merge_lora(model, path)


@hookimpl
def trained_tensor_shapes(model: Any) -> dict[str, list[int]]:
    """Shapes of the adapter tensors a LoRA checkpoint holds."""
    return lora_tensor_shapes(model)


@hookimpl
def memory_profile(shape: Any, setup: Any) -> MemoryProfile | None:
    """LoRA's adapter parameters for the memory estimate (``ft recommend``, preflight)."""
    return lora_memory(shape, setup)
