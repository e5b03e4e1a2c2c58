"""What a run on a quantized base holds, for ftcore's memory estimate (``ft recommend``, preflight)."""

from __future__ import annotations

from typing import Any

from ftlora import lora_memory

from ftcore import MemoryProfile

#: bitsandbytes stores one scale per block of 64 codes (and, double-quantized, scales of those scales): about
#: 1/16 more than the codes at 4 bits, 4.25 bits per weight in all.
SCALE_OVERHEAD = 1 / 16


def quantized_weight_bytes(shape: Any, bits: int) -> int:
    """The base's Linear layers in ``bits``-bit codes and their block scales, the other weights in float32
    (``prepare_model_for_kbit_training`` keeps them there)."""
    return int(shape.linear_params * bits / 8 * (1 + SCALE_OVERHEAD)) + (shape.params - shape.linear_params) * 4


def qlora_memory(shape: Any, setup: Any) -> MemoryProfile | None:
    """LoRA's adapter on a base quantized to ``setup.base_bits`` bits (a plain base at 16 bits and more);
    ``None`` when every weight trains."""
    lora = lora_memory(shape, setup)
    if lora is None or setup.base_bits >= 16:
        return lora
    return MemoryProfile(trained=lora.trained, weights=quantized_weight_bytes(shape, setup.base_bits))
