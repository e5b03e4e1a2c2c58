"""Per-example attention for flattened (padding-free or packed) batches on SDPA.

ft's flattening collator puts a micro-batch into one ``[1, total]`` row whose ``position_ids`` restart at 0
for every example. transformers' SDPA path then builds a ``total × total`` block-diagonal mask and runs the
kernel over the whole row, so attention costs grow with the square of the *row* length, most of it masked
away. The ``ft_segments`` implementation registered here runs causal SDPA on each example's own slice
instead (the cost of attention on unpadded examples, with the linear layers still running on the whole
row at once), and tells transformers to build no mask when there is no padding mask to honour. Anything
else (a padding mask, a KV cache, a batch of several rows) goes to transformers' own SDPA unchanged.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

NAME = "ft_segments"


def segment_bounds(position_ids: Any) -> list[int]:
    """Start of every example in a flattened row (where positions restart at 0), then the row length."""
    starts = (position_ids[0] == 0).nonzero().flatten().tolist()
    return [*starts, int(position_ids.shape[-1])]


def segment_attention(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, dropout: float = 0.0,
                      scaling: float | None = None, is_causal: bool | None = None, **kwargs: Any) -> tuple[Any, None]:
    """Causal SDPA within each example of a flattened row; transformers' SDPA for everything else."""
    import torch
    from torch.nn.functional import scaled_dot_product_attention
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    positions = kwargs.get("position_ids")
    flat = attention_mask is None and positions is not None and query.shape[0] == 1
    if flat and query.shape[2] == key.shape[2] and positions.shape[-1] == query.shape[2]:
        bounds = segment_bounds(positions)
        if len(bounds) > 2 or bounds[0] != 0:
            return _per_segment(query, key, value, bounds, dropout if module.training else 0.0, scaling,
                                scaled_dot_product_attention, torch.cat, module.training), None
    return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                  is_causal=is_causal, **kwargs)


def padded_length(n: int) -> int:
    """``n`` rounded up to one of a few lengths: a power of two up to 64 (at least 8), then multiples of 128 up to
    1,024, then eight lengths per doubling (at most an eighth more). Under bf16 on a CPU, ft pads flattened rows
    and loss chunks to these.

    oneDNN keeps about 0.5 MB, for the life of the process, for every bf16 matmul shape it has run (in PyTorch's
    primitive cache and in oneDNN's, the same again): 80 row counts through one linear layer, forward and
    backward, kept 90 MB. A training step has about fifteen kinds of matmul (each projection forward and
    backward, LoRA's, the head's), so each row count a run meets costs it about 15 MB. With eight lengths per
    doubling from 64 to 1,024 (40 in all), a 28M-parameter model's LoRA run still grew by 4 MB a step, to 321 MB
    of live memory at step 30; with these 12 it had 239 MB at step 30 and 246 MB from step 50 to 80, at the same
    speed: fewer matmuls to build pay for the padded rows (docs/performance.md, "It still crept").
    """
    if n <= 64:
        return max(8, 1 << max(n - 1, 1).bit_length())
    step = max(128, 1 << ((n - 1).bit_length() - 4))
    return -(-n // step) * step


def _per_segment(query: Any, key: Any, value: Any, bounds: list[int], dropout: float, scaling: float | None,
                 sdpa: Any, cat: Any, training: bool = True) -> Any:
    import torch

    gqa = query.shape[1] != key.shape[1]
    if bounds[0] != 0:  # tokens before the first reset form an example of their own
        bounds = [0, *bounds]
    # PyTorch's CPU attention kernel in bf16/fp16 keeps kernels and buffers for every new sequence length and
    # never gives that memory back: 40 lengths from 64 to 1,000 grew a process by 359 MB in bf16 and 40 MB in
    # fp32 (one layer's shapes, forward and backward). In fp32 it is also as fast up to 512 tokens (1.2 against
    # 2.4 ms at 128, 16 against 15 ms at 512; 38 against 30 ms at 1,024), where most examples are. So training
    # on a CPU under bf16/fp16 runs each example's attention in fp32; evaluation keeps the model's dtype, so an
    # evaluation's loss matches ft evaluate's.
    dtype, upcast = query.dtype, training and low_precision_cpu(query)
    if upcast:
        query, key, value = query.float(), key.float(), value.float()
    with torch.autocast("cpu", enabled=False) if upcast else nullcontext():
        outputs = [sdpa(query[:, :, a:b], key[:, :, a:b], value[:, :, a:b], is_causal=True, dropout_p=dropout,
                        scale=scaling, enable_gqa=gqa) for a, b in zip(bounds, bounds[1:], strict=False)]
    return cat(outputs, dim=2).to(dtype).transpose(1, 2).contiguous()


def low_precision_cpu(tensor: Any) -> bool:
    """True for a CPU tensor that bf16/fp16 kernels will take: in that dtype, or under CPU autocast to it."""
    import torch

    if tensor.device.type != "cpu":
        return False
    low = (torch.bfloat16, torch.float16)
    return tensor.dtype in low or (torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") in low)


def segment_mask(*args: Any, attention_mask: Any = None, **kwargs: Any) -> Any:
    """No mask for an unpadded batch (each segment is attended causally); SDPA's mask when padding is present."""
    from transformers.masking_utils import sdpa_mask

    if attention_mask is None:
        return None
    return sdpa_mask(*args, attention_mask=attention_mask, **kwargs)


def register() -> None:
    """Make ``ft_segments`` known to transformers (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS

    AttentionInterface.register(NAME, segment_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, segment_mask)


def use_segment_attention(model: Any) -> bool:
    """Switch a model that runs SDPA to ``ft_segments`` for training; False (unchanged) for any other kernel."""
    if getattr(model.config, "_attn_implementation", None) != "sdpa":
        return False
    register()
    model.set_attn_implementation(NAME)
    return True


def restore_sdpa(model: Any) -> None:
    """Put SDPA back before the model is saved or handed on, so no saved config names ``ft_segments``."""
    if getattr(model.config, "_attn_implementation", None) == NAME:
        model.set_attn_implementation("sdpa")
