"""ftlora: the ``lora`` method for ft — a LoRA adapter on a full-precision base model.

Other LoRA-based methods (``qlora``, ``instruction``, third-party ones) depend on this distribution: they take
its adapter hooks ready-made from :mod:`ftlora.kit` and build on :class:`LoraOptions`, :func:`attach_lora`,
:func:`load_lora`, :func:`merge_lora` and :func:`lora_tensor_shapes`. The entry module imports nothing heavy:
peft and torch are imported inside those functions when a run starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ftcore import MethodSpec, hookimpl
from ftlora.adapter import (
    attach_lora,
    find_target_modules,
    load_lora,
    lora_config,
    lora_memory,
    lora_tensor_shapes,
    merge_lora,
)
from ftlora.kit import (  # noqa: F401  (the lora method's hooks)
    load_adapter,
    memory_profile,
    merge_adapter,
    setup_peft,
    trained_tensor_shapes,
)
from ftlora.options import LoraOptions

__version__ = "0.1.0"

#: Needs plugin API 3 (run_finished; API 2: load_adapter, merge_adapter, trained_tensor_shapes, MethodSpec.recommend).
FTCORE_PLUGIN_API = 3

METHOD = MethodSpec(
    "lora",
    "LoRA adapter on a full-precision base (options: r, alpha, dropout, target_modules, use_dora, use_rslora)",
    options=LoraOptions,
    output="adapter",
    recommend=10,
    # Axolotl's and LLaMA-Factory's names for LoRA's settings, for the hint a config using them gets.
    peer_keys={"lora_r": "method_options.r", "lora_rank": "method_options.r", "lora_alpha": "method_options.alpha",
               "lora_dropout": "method_options.dropout", "lora_target_modules": "method_options.target_modules",
               "lora_target": "method_options.target_modules"},
)

__all__ = [
    "METHOD",
    "LoraOptions",
    "attach_lora",
    "find_target_modules",
    "load_lora",
    "lora_config",
    "lora_memory",
    "lora_tensor_shapes",
    "merge_lora",
]


@hookimpl
def register_methods() -> list[MethodSpec]:
    """The ``lora`` method."""
    return [METHOD]


@hookimpl
def run_finished(run_dir: Path, manifest: dict[str, Any]) -> None:
    """Any run's peft adapter (lora, qlora, instruction, dpo, ...) names its base by Hub id, not a local path."""
    from ftlora.adapter import name_base_in_adapter_config

    name_base_in_adapter_config(run_dir, manifest.get("base_model_provenance") or {})
