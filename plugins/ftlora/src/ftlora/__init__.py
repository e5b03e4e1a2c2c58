"""ftlora: the ``lora`` method for ft — a LoRA adapter on a full-precision base model.

Other LoRA-based methods (``qlora``, ``instruction``, third-party ones) depend on this distribution and
build on :class:`LoraOptions`, :func:`attach_lora`, :func:`load_lora`, :func:`merge_lora` and
:func:`lora_tensor_shapes`. The entry module imports nothing heavy: peft and torch are imported inside
those functions when a run starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ftcore import MethodSpec, hookimpl
from ftlora.adapter import attach_lora, find_target_modules, load_lora, lora_config, lora_tensor_shapes, merge_lora
from ftlora.options import LoraOptions

__version__ = "0.1.0"

#: Needs plugin API 2 (load_adapter, merge_adapter, trained_tensor_shapes; MethodSpec.recommend).
FTCORE_PLUGIN_API = 2

METHOD = MethodSpec(
    "lora",
    "LoRA adapter on a full-precision base (options: r, alpha, dropout, target_modules, use_dora, use_rslora)",
    options=LoraOptions,
    output="adapter",
    recommend=10,
)

__all__ = [
    "METHOD",
    "LoraOptions",
    "attach_lora",
    "find_target_modules",
    "load_lora",
    "lora_config",
    "lora_tensor_shapes",
    "merge_lora",
]


@hookimpl
def register_methods() -> list[MethodSpec]:
    """The ``lora`` method."""
    return [METHOD]


@hookimpl
def setup_peft(model: Any, method: str, config: Any, options: LoraOptions | None) -> Any:
    """Attach a fresh LoRA adapter to the base model."""
    if method != METHOD.name:
        return None
    return attach_lora(model, options or LoraOptions(), config)


@hookimpl
def load_adapter(model: Any, path: Path, method: str) -> Any:
    """Apply a trained ``lora`` adapter to its base, for inference."""
    if method != METHOD.name:
        return None
    return load_lora(model, path)


@hookimpl
def merge_adapter(model: Any, path: Path, method: str) -> Any:
    """Fold a trained ``lora`` adapter into its base."""
    if method != METHOD.name:
        return None
    return merge_lora(model, path)


@hookimpl
def trained_tensor_shapes(model: Any, method: str) -> dict[str, list[int]] | None:
    """Shapes of the adapter tensors a ``lora`` checkpoint holds."""
    if method != METHOD.name:
        return None
    return lora_tensor_shapes(model)
