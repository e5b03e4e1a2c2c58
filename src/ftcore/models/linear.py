"""Linear layers under bf16/fp16 autocast on a CPU that keep no low-precision copy of their weight.

Under autocast a linear layer with float32 weights casts the weight for its matmul and autograd keeps that
copy until the backward pass needs it. A training step therefore holds a second, half-size copy of every
linear weight from its forward pass to its backward pass: for full fine-tuning the weights autocast caches,
for LoRA the frozen base weights (autocast caches only the casts of weights that train, so each forward pass
casts those anew). That is half the size of the float32 linear weights: 46 MB of the benchmark's 28M-parameter
Llama, against about 230 MB for all the other tensors a 1,024-token LoRA pass keeps.

:func:`install` gives each plain ``nn.Linear`` of a model a forward that, while it trains on a CPU under
autocast on a pass of at least :data:`MIN_ROWS` tokens, casts the weight for the matmul, frees the copy at once,
and casts it again in the backward pass (a cast of every weight per pass: a few percent of a long pass's
matmuls). The values are those of autocast's
own linear: the same casts and the same bf16 matmuls. Anywhere else (evaluation, generation, GPUs, float32)
the layer runs its own forward.
"""

from __future__ import annotations

import functools
import types
from typing import Any

_ATTRIBUTE = "_ft_recast"
#: Inputs of fewer rows (tokens) keep autocast's own linear. The second cast costs the same time at any number of
#: tokens: on the demo's passes of about 100 tokens (SmolLM2-135M, LoRA) it slowed training from 171 to 135-144
#: tokens/s, while such short passes keep little else, so a run's peak comes with its long passes, where the
#: second cast is a few percent of the matmuls.
MIN_ROWS = 512


def install(model: Any) -> int:
    """Give every plain ``torch.nn.Linear`` in ``model`` (peft's base layers and adapters included, subclasses
    such as bitsandbytes' quantized layers not) the recasting forward; the number of layers changed."""
    import torch

    changed = 0
    for module in model.modules():
        if type(module) is torch.nn.Linear and _ATTRIBUTE not in vars(module):
            setattr(module, _ATTRIBUTE, True)
            module.forward = types.MethodType(_forward, module)
            changed += 1
    return changed


def uninstall(model: Any) -> None:
    """Give every layer :func:`install` changed its own forward back."""
    for module in model.modules():
        if vars(module).pop(_ATTRIBUTE, None):
            del module.forward


def applies(x: Any, weight: Any, training: bool) -> bool:
    """True when a linear layer's call would take the recasting path: training, on a CPU, under bf16/fp16
    autocast, with float32 weights and an input of at least :data:`MIN_ROWS` rows in float32 or the autocast
    dtype."""
    import torch

    if not (training and x.device.type == "cpu" and torch.is_autocast_enabled("cpu") and torch.is_grad_enabled()):
        return False
    if x.dim() == 0 or x.numel() < MIN_ROWS * x.shape[-1]:
        return False
    return weight.dtype == torch.float32 and x.dtype in (torch.float32, torch.get_autocast_dtype("cpu"))


def _forward(self: Any, x: Any) -> Any:
    from torch.nn import functional

    if not applies(x, self.weight, self.training):
        return functional.linear(x, self.weight, self.bias)
    return _recast_linear().apply(x, self.weight, self.bias)


@functools.cache
def _recast_linear() -> type:
    import torch

    class RecastLinear(torch.autograd.Function):
        """``linear(x, weight, bias)`` as CPU autocast computes it, keeping the float32 weight (a parameter, no new
        memory) instead of its low-precision copy for the backward pass."""

        @staticmethod
        def forward(ctx: Any, x: Any, weight: Any, bias: Any) -> Any:
            dtype = torch.get_autocast_dtype("cpu")
            low_x = x.to(dtype)
            with torch.autocast("cpu", enabled=False):
                out = torch.nn.functional.linear(low_x, weight.to(dtype), bias.to(dtype) if bias is not None else None)
            ctx.dtype, ctx.x_dtype = dtype, x.dtype
            ctx.has_bias = bias is not None
            ctx.save_for_backward(low_x if ctx.needs_input_grad[1] else None, weight if ctx.needs_input_grad[0] else None)
            return out

        @staticmethod
        def backward(ctx: Any, grad: Any) -> Any:
            low_x, weight = ctx.saved_tensors
            grad = grad.to(ctx.dtype)
            flat = grad.reshape(-1, grad.shape[-1])
            grad_x = grad_weight = grad_bias = None
            with torch.autocast("cpu", enabled=False):
                if ctx.needs_input_grad[0]:
                    grad_x = (grad @ weight.to(ctx.dtype)).to(ctx.x_dtype)
                if ctx.needs_input_grad[1]:
                    grad_weight = (flat.T @ low_x.reshape(-1, low_x.shape[-1])).to(torch.float32)
                if ctx.has_bias and ctx.needs_input_grad[2]:
                    grad_bias = flat.sum(0).to(torch.float32)
            return grad_x, grad_weight, grad_bias

    return RecastLinear
