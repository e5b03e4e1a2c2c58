"""ftqlora: the ``qlora`` method for ft — LoRA on a base model quantized to 4-bit NF4 by bitsandbytes.

The base is quantized while it loads (``model_load_kwargs`` returns a ``BitsAndBytesConfig``), made
trainable with ``peft.prepare_model_for_kbit_training``, then given a LoRA adapter. The entry module
imports nothing heavy.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from ftcore import MethodSpec, hookimpl
from ftcore.adapters import LoraOptions

__version__ = "0.1.0"


class QLoraOptions(LoraOptions):
    """LoRA options plus how the base model is quantized."""

    quant_type: Literal["nf4", "fp4"] = Field("nf4", description="4-bit data type of the base weights.")
    double_quant: bool = Field(True, description="Also quantize the quantization constants (saves ~0.4 bit/weight).")
    compute_dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Dtype of the matmuls on dequantized weights; auto: bfloat16 on GPUs that support it, else float32."
    )


METHOD = MethodSpec(
    "qlora",
    "LoRA on a 4-bit NF4 base (bitsandbytes); options: LoRA's plus quant_type, double_quant, compute_dtype",
    options=QLoraOptions,
    output="adapter",
)


@hookimpl
def register_methods() -> list[MethodSpec]:
    return [METHOD]


@hookimpl
def model_load_kwargs(method: str, config: Any, options: QLoraOptions) -> dict[str, Any] | None:
    if method != METHOD.name:
        return None
    from ftqlora.quant import quantization_kwargs

    return quantization_kwargs(options)


@hookimpl
def setup_peft(model: Any, method: str, config: Any, options: QLoraOptions) -> Any:
    if method != METHOD.name:
        return None
    from ftqlora.quant import prepare_qlora

    return prepare_qlora(model, options, config)
