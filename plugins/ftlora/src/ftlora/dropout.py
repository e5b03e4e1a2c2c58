"""LoRA's dropout on a CPU: the distribution of ``torch.nn.Dropout`` for a quarter of its mask memory.

peft puts an ``nn.Dropout`` in front of each adapter's A matrix. On a CPU, torch's dropout draws one float per
element (``bernoulli_``) and keeps that float mask, 4 bytes per element, for the backward pass: with LoRA on the
four attention projections of SmolLM2-135M that is 276 KB per token of a pass. :class:`CpuDropout` draws 16
random bits per element from 64-bit integers (a quarter as many draws) and keeps a boolean mask, 1 byte per
element. On any other device it calls torch's own dropout, which is a fused kernel there.

An element is dropped with probability ``round(p * 65536) / 65536`` (0.0500030 for p = 0.05) and the kept ones
are scaled by the inverse of the keep probability, so the expected output is the input, as with ``nn.Dropout``.
The masks come from torch's default generator, so a seeded run draws the same masks again (and a resumed run,
whose checkpoint holds the generator's state, the masks the uninterrupted run drew); they are not the masks
``nn.Dropout`` would draw from the same seed.
"""

from __future__ import annotations

from typing import Any

#: Random values per element: 16 bits, so the drop probability is a multiple of 1/65536.
LEVELS = 1 << 16


def _keep_mask(x: Any, dropped: int) -> Any:
    """A boolean tensor shaped like ``x``: True with probability ``1 - dropped / LEVELS`` per element."""
    import torch

    n = x.numel()
    words = torch.randint(-(1 << 63), (1 << 63) - 1, ((n + 3) // 4,), dtype=torch.int64, device=x.device)
    return (words.view(torch.int16)[:n] >= dropped - (LEVELS >> 1)).view(x.shape)


_DROPOUT: Any = None


def cpu_dropout(p: float) -> Any:
    """A ``CpuDropout`` module for probability ``p`` (its class is built on first use, so importing ftlora stays
    free of torch)."""
    global _DROPOUT
    if _DROPOUT is None:
        _DROPOUT = _build()
    return _DROPOUT(p)


def _build() -> type:
    import torch

    class _Dropout(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Any, dropped: int, scale: float) -> Any:
            keep = _keep_mask(x, dropped)
            ctx.save_for_backward(keep)
            ctx.scale = scale
            return (x * keep).mul_(scale)

        @staticmethod
        def backward(ctx: Any, grad: Any) -> Any:
            (keep,) = ctx.saved_tensors
            return (grad * keep).mul_(ctx.scale), None, None

    class CpuDropout(torch.nn.Module):
        """Dropout with probability ``p``; on a CPU with a boolean mask from 16 random bits per element."""

        def __init__(self, p: float) -> None:
            super().__init__()
            self.p = p
            self.dropped = round(p * LEVELS)
            self.scale = LEVELS / (LEVELS - self.dropped) if self.dropped < LEVELS else 0.0

        def forward(self, x: Any) -> Any:
            if not self.training or x.device.type != "cpu" or not 0 < self.dropped < LEVELS:
                return torch.nn.functional.dropout(x, self.p, self.training)
            return _Dropout.apply(x, self.dropped, self.scale)

        def extra_repr(self) -> str:
            return f"p={self.p}"

    return CpuDropout


def use_cpu_dropout(model: Any) -> int:
    """Replace every ``nn.Dropout`` among ``model``'s LoRA dropouts (peft's ``lora_dropout`` dicts) by
    :func:`cpu_dropout` of the same probability; returns how many were replaced."""
    import torch

    replaced = 0
    for module in model.modules():
        dropouts = getattr(module, "lora_dropout", None)
        if not isinstance(dropouts, torch.nn.ModuleDict):
            continue
        for name, dropout in list(dropouts.items()):
            if type(dropout) is torch.nn.Dropout and dropout.p > 0:
                dropouts[name] = cpu_dropout(dropout.p)
                replaced += 1
    return replaced
