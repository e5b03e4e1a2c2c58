"""Merging a QLoRA adapter: the 4-bit base is dequantized first, so the adapter folds into the weights it trained on.

Every bitsandbytes ``Linear4bit`` is replaced by a plain ``nn.Linear`` holding its dequantized weight (exactly
what the 4-bit layer multiplies by), the model forgets its quantization, then LoRA's merge folds the adapter in.
The result saves and loads with plain transformers, without bitsandbytes. Imported only by ``ft merge``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def dequantize_linear4bit(model: Any) -> int:
    """Replace every bitsandbytes ``Linear4bit`` by an ``nn.Linear`` with its dequantized weight; the count.

    On CPU, bitsandbytes repacks a layer's weight for its bf16 kernel after an inference forward;
    that layout is undone first, so the weight read back is the NF4/FP4 one the adapter trained on.
    """
    import bitsandbytes as bnb

    replaced = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, bnb.nn.Linear4bit):
                setattr(module, name, _dequantized(child))
                replaced += 1
            elif isinstance(child, bnb.nn.Linear8bitLt):
                setattr(module, name, _dequantized_int8(child))
                replaced += 1
    return replaced


def _dequantized_int8(layer: Any) -> Any:
    """The plain float32 ``nn.Linear`` equal to the LLM.int8 ``layer``: int8 rows times their scales / 127."""
    import torch

    weight = layer.weight
    scales = getattr(weight, "SCB", None)
    if scales is None:
        scales = layer.state.SCB
    return _plain_linear(layer, weight.data.to(torch.float32) * scales.to(torch.float32).unsqueeze(1) / 127.0)


def _dequantized(layer: Any) -> Any:
    """The plain float32 ``nn.Linear`` equal to the 4-bit ``layer``."""
    import bitsandbytes as bnb
    import torch
    from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse

    data, state = layer.weight.data, layer.weight.quant_state
    if getattr(state, "packing_format_for_cpu", False):
        data, state = _convert_weight_packed_for_cpu_inverse(data, state)
    return _plain_linear(layer, bnb.functional.dequantize_4bit(data, state).to(torch.float32))


def _plain_linear(layer: Any, weight: Any) -> Any:
    """A float32 ``nn.Linear`` of ``layer``'s shape holding ``weight`` (dequantized) and ``layer``'s bias."""
    import torch

    linear = torch.nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None,
                             device=weight.device, dtype=torch.float32)
    linear.weight.data = weight
    if layer.bias is not None:
        linear.bias.data = layer.bias.data.to(torch.float32)
    return linear


def forget_quantization(model: Any) -> None:
    """Make a dequantized model a plain one (transformers' own cleanup), so it saves without bitsandbytes."""
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)
    for flag in ("is_loaded_in_4bit", "is_loaded_in_8bit"):
        if getattr(model, flag, False):
            setattr(model, flag, False)
    model.float()


def merge_qlora(model: Any, path: str | Path) -> Any:
    """The 4-bit ``model`` dequantized to float32, with the LoRA adapter saved in ``path`` folded in."""
    from ftlora import merge_lora

    count = dequantize_linear4bit(model)
    log.info("dequantized %d quantized layers before merging", count)
    forget_quantization(model)
    return merge_lora(model, path)
