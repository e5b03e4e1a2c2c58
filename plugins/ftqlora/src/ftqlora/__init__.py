"""ftqlora: the ``qlora`` method for ft — LoRA on a base model quantized to 4-bit NF4 by bitsandbytes.

QLoRA is LoRA on a 4-bit base, so this plugin builds on ftlora (a declared dependency). The base is quantized
while it loads (``model_load_kwargs`` returns a ``BitsAndBytesConfig``), made trainable with
``peft.prepare_model_for_kbit_training``, then given a LoRA adapter; ``ft merge`` dequantizes it before
folding the adapter in. The entry module imports nothing heavy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from ftlora import LoraOptions
from ftlora.kit import load_adapter, trained_tensor_shapes  # noqa: F401  (ftlora's: a qlora adapter is LoRA's)
from pydantic import Field

from ftcore import MethodSpec, hookimpl

__version__ = "0.1.0"

#: Needs plugin API 3 (memory_profile; API 2: load_adapter, merge_adapter, trained_tensor_shapes, MethodSpec.base_bits).
FTCORE_PLUGIN_API = 3


class QLoraOptions(LoraOptions):
    """LoRA options plus how the base model is quantized."""

    bits: Literal[4, 8] = Field(
        4, description="Bits per base weight: 4 (NF4/FP4, QLoRA) or 8 (LLM.int8, closer to the full-precision base).")
    quant_type: Literal["nf4", "fp4"] = Field("nf4", description="4-bit data type of the base weights.")
    double_quant: bool = Field(True, description="Also quantize the quantization constants (saves ~0.4 bit/weight).")
    compute_dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Dtype of the matmuls on dequantized weights; auto: bfloat16 on GPUs that support it, else float32."
    )

    @property
    def base_bits(self) -> int:
        """Bits per weight of the base while training (for the memory estimate)."""
        return self.bits


METHOD = MethodSpec(
    "qlora",
    "LoRA on a 4-bit NF4 (or 8-bit) base (bitsandbytes); options: LoRA's plus bits, quant_type, double_quant, compute_dtype",
    options=QLoraOptions,
    output="adapter",
    base_bits=4,
    recommend=20,
    peer_keys={"load_in_4bit": "method: qlora", "quantization_bit": "method: qlora"},
)


@hookimpl
def register_methods() -> list[MethodSpec]:
    """The ``qlora`` method."""
    return [METHOD]


@hookimpl
def model_load_kwargs(config: Any, options: QLoraOptions | None) -> dict[str, Any]:
    """Load the base in 4 bits (stored FSDP-shardable when the run uses FSDP)."""
    from ftqlora.quant import quantization_kwargs

    return quantization_kwargs(options or QLoraOptions(), config)


@hookimpl
def setup_peft(model: Any, config: Any, options: QLoraOptions | None) -> Any:
    """Prepare the 4-bit base for training and attach LoRA."""
    from ftqlora.quant import prepare_qlora

    return prepare_qlora(model, options or QLoraOptions(), config)


@hookimpl
def merge_adapter(model: Any, path: Path) -> Any:
    """Dequantize the 4-bit (or 8-bit) base, then fold the adapter in."""
    from ftqlora.dequant import merge_qlora

    return merge_qlora(model, path)



@hookimpl
def memory_profile(shape: Any, setup: Any) -> Any:
    """LoRA's adapter on the 4-bit (or 8-bit) base, for the memory estimate."""
    from ftqlora.memory import qlora_memory

    return qlora_memory(shape, setup)
