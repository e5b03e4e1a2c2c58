"""The causal-LM training loss without the full logits.

A causal LM's forward turns every position's hidden state into a vocabulary-sized row of logits and
then takes the cross-entropy of the positions that have a label. At real vocabularies (49k for
SmolLM2, 128k for Llama 3, 152k for Qwen) those fp32 logits, their softmax and their gradient are the
largest tensors of a fine-tuning step, and most rows belong to prompt tokens whose loss is masked.

:func:`install` replaces the training forward of a supported model so that it asks the base model for
hidden states only, keeps the positions that have a label, and computes the LM head and cross-entropy
in chunks of those rows (``training.kernels``):

- ``chunked`` (plain PyTorch, CPU and GPU): a plain ``nn.Linear`` head goes through
  :class:`LinearCrossEntropy`, which works out each chunk's gradients in the forward pass (the softmax
  minus the one-hot target, times the head) and frees the chunk's logits at once, so the step holds one
  chunk of logits at a time and does no extra matmul. Any other head (LoRA on ``lm_head``, peft's
  ``modules_to_save`` copy) is called once per chunk under ``torch.utils.checkpoint``: the chunk's
  logits are recomputed in the backward pass instead of kept.
- ``liger``: Liger-Kernel's fused linear cross-entropy (Triton, CUDA only) for a plain head.
- ``none``: the model's own forward (full logits).

The loss is the model's own: the sum of the token cross-entropies over ``num_items_in_batch`` when the
trainer passes it (gradient accumulation), else their mean. Evaluation and generation keep the model's
own forward (they may want the logits).
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

KERNELS = ("auto", "chunked", "liger", "none")
IGNORE = -100
#: Logit elements per chunk, at most: 8M fp32 values (32 MiB). The rows per chunk are a power of two (one of the
#: row counts that bf16 chunks on a CPU are padded to, so whole chunks need no padding): 128 rows at SmolLM2's 49k
#: vocabulary (24 MiB), 1,024 at 8k.
CHUNK_ELEMENTS = 8 * 2**20
MIN_ROWS = 64

#: Model types whose causal-LM forward is exactly ``lm_head(model(...).last_hidden_state)`` and the
#: standard causal-LM loss (no logit scaling or soft-capping, no auxiliary loss). Others keep their forward.
SUPPORTED = frozenset({"llama", "mistral", "qwen2", "qwen3", "phi3", "smollm3", "olmo2", "starcoder2"})
#: Config attributes that change the logits between the head and the loss in some architectures.
_LOGIT_CHANGES = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_router_logits")


def liger_installed() -> bool:
    """True when Liger-Kernel can be imported (checked without importing it)."""
    import importlib.util

    return importlib.util.find_spec("liger_kernel") is not None


def choose_kernel(setting: str, cuda: bool) -> str:
    """The loss kernel a run uses for ``training.kernels``: ``auto`` is chunked everywhere (Liger's kernel only when
    asked for by name: it has not yet been measured on a GPU against the chunked loss)."""
    from ftcore.errors import ConfigError

    if setting == "liger" and not cuda:
        raise ConfigError("training.kernels: liger runs on CUDA GPUs only; use chunked (the default)")
    if setting == "auto":
        return "chunked"
    return setting


def unsupported_reason(model: Any) -> str | None:
    """Why ``model`` keeps its own loss (None when the chunked loss can replace it)."""
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED:
        return f"model type {model_type!r} is not one ft computes the loss of (supported: {', '.join(sorted(SUPPORTED))})"
    for name in _LOGIT_CHANGES:
        if getattr(config, name, None):
            return f"its config sets {name}"
    if not hasattr(model, "model") or not hasattr(model, "lm_head"):
        return "it has no base model and lm_head attributes"
    return None


def causal_lm(model: Any) -> Any:
    """The transformers causal-LM module inside ``model`` (peft's wrappers unwrapped)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def install(model: Any, kernel: str) -> bool:
    """Make ``model`` compute its training loss with ``kernel``; False (unchanged) when it cannot."""
    if kernel == "none":
        return False
    lm = causal_lm(model)
    reason = unsupported_reason(lm)
    if reason is not None:
        log.info("training.kernels: the model's own loss is kept: %s", reason)
        return False
    lm.forward = _loss_forward(lm, lm.forward, kernel)
    lm._ft_loss_kernel = kernel
    return True


def uninstall(model: Any) -> None:
    """Give ``model`` its own forward back (before it is saved or handed on)."""
    lm = causal_lm(model)
    if "_ft_loss_kernel" in vars(lm):
        del lm.forward
        del lm._ft_loss_kernel


def _loss_forward(lm: Any, original: Any, kernel: str) -> Any:
    def forward(*args: Any, **kwargs: Any) -> Any:
        labels = kwargs.get("labels")
        plain = (args or labels is None or not lm.training or kwargs.get("shift_labels") is not None
                 or kwargs.get("return_dict") is False or kwargs.get("output_hidden_states"))
        if plain:
            return original(*args, **kwargs)
        from transformers.modeling_outputs import CausalLMOutputWithPast

        kwargs.pop("labels")
        kwargs.pop("logits_to_keep", None)
        num_items = kwargs.pop("num_items_in_batch", None)
        outputs = lm.model(**kwargs)
        loss = causal_lm_loss(outputs.last_hidden_state, labels, lm.lm_head, num_items, kernel)
        return CausalLMOutputWithPast(loss=loss, attentions=getattr(outputs, "attentions", None))

    forward.__wrapped__ = original  # type: ignore[attr-defined]
    return forward


def causal_lm_loss(hidden: Any, labels: Any, head: Any, num_items: Any = None, kernel: str = "chunked") -> Any:
    """The causal-LM loss of ``head(hidden)`` against ``labels`` shifted by one, without the full logits.

    :param hidden: ``[batch, seq, hidden]`` last hidden states.
    :param labels: ``[batch, seq]`` token ids, -100 where there is no loss (prompt, padding, segment starts).
    :param head: the LM head module (``nn.Linear`` for the fast path; any module otherwise).
    :param num_items: divide the summed loss by this (the trainer's token count over the accumulated
        micro-batches); None for the mean over this batch's labelled tokens.
    """
    import torch
    from torch.nn import functional

    shifted = functional.pad(labels, (0, 1), value=IGNORE)[..., 1:].to(hidden.device)
    keep = shifted != IGNORE
    rows, targets = hidden[keep], shifted[keep]
    if num_items is None:
        divisor: Any = keep.sum().clamp(min=1).to(torch.float32)
    else:
        divisor = num_items.to(hidden.device) if torch.is_tensor(num_items) else num_items
    vocab = _vocab_size(head)
    step = chunk_rows(vocab)
    plain = type(head) is torch.nn.Linear
    if kernel == "liger" and plain:
        total = _liger_sum(rows, targets, head)
    elif plain:
        total = LinearCrossEntropy.apply(rows, head.weight, head.bias, targets, step)
    else:
        total = _checkpointed_sum(rows, targets, head, step)
    return total / divisor


def chunk_rows(vocab: int) -> int:
    """Rows per chunk of the loss at a vocabulary of ``vocab``: the largest power of two whose logits fit
    :data:`CHUNK_ELEMENTS`, and at least :data:`MIN_ROWS`."""
    rows = max(MIN_ROWS, CHUNK_ELEMENTS // max(vocab, 1))
    return 1 << (rows.bit_length() - 1)


def _vocab_size(head: Any) -> int:
    weight = getattr(head, "weight", None)
    if weight is not None and weight.dim() == 2:
        return int(weight.shape[0])
    return int(getattr(head, "out_features", 0) or 0)


def _liger_sum(rows: Any, targets: Any, head: Any) -> Any:
    from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

    return LigerFusedLinearCrossEntropyLoss(ignore_index=IGNORE, reduction="sum")(head.weight, rows, targets, head.bias)


def _checkpointed_sum(rows: Any, targets: Any, head: Any, step: int) -> Any:
    """Chunked cross-entropy through any head module, each chunk's logits recomputed in the backward pass."""
    from torch.utils.checkpoint import checkpoint

    total = rows.new_zeros((), dtype=_float32())
    for start in range(0, rows.shape[0], step):
        total = total + checkpoint(_chunk_sum, rows[start:start + step], targets[start:start + step], head,
                                   use_reentrant=False)
    return total


def _chunk_sum(rows: Any, targets: Any, head: Any) -> Any:
    from torch.nn import functional

    return functional.cross_entropy(head(rows).float(), targets, reduction="sum")


def _float32() -> Any:
    import torch

    return torch.float32


def _linear_cross_entropy() -> type:
    import torch

    class _LinearCrossEntropy(torch.autograd.Function):
        """Summed cross-entropy of ``rows @ weight.T + bias``, one chunk of logits at a time.

        The forward pass also works out the gradients (d loss / d logits is the softmax minus the one-hot
        target), so no chunk's logits outlive its loop iteration and the backward pass only scales them.
        """

        @staticmethod
        def forward(ctx: Any, rows: Any, weight: Any, bias: Any, targets: Any, step: int) -> Any:
            need_rows, need_weight, need_bias = ctx.needs_input_grad[:3]
            grad_rows = torch.empty_like(rows) if need_rows else None
            grad_weight = torch.zeros_like(weight, dtype=torch.float32) if need_weight else None
            grad_bias = torch.zeros_like(bias, dtype=torch.float32) if need_bias else None
            total = torch.zeros((), dtype=torch.float32, device=rows.device)
            # Under autocast every chunk's matmuls would cast the head again (autocast caches the casts of trainable
            # weights only; a frozen head, LoRA's case, is 113 MB at SmolLM2's 49k x 576): cast it once, to the
            # same values. Its gradient, when it trains, is still taken against the float32 chunk below.
            head, head_bias = _autocast_once(weight, bias, rows.device.type)
            # In bf16 on a CPU, a matmul of a new number of rows keeps new memory (see ftcore.models.attention):
            # each chunk's logits are taken over padded_length() rows, the extra ones zeros, then dropped.
            from ftcore.models.attention import low_precision_cpu, padded_length

            pad = low_precision_cpu(rows)
            autocast = torch.is_autocast_enabled(rows.device.type)
            for start in range(0, rows.shape[0], step):
                chunk, target = rows[start:start + step], targets[start:start + step]
                extra = padded_length(chunk.shape[0]) - chunk.shape[0] if pad else 0
                padded = torch.nn.functional.pad(chunk, (0, 0, 0, extra)) if extra else chunk
                logits = torch.nn.functional.linear(padded, head, head_bias)[:chunk.shape[0]].float()
                picked = logits.gather(1, target[:, None]).squeeze(1)
                # logsumexp's own steps (max, exp of the difference, sum, log, add: the same values), but in place:
                # logsumexp would hold a second chunk-sized tensor (19 MiB at 612 rows of an 8k vocabulary).
                top = logits.amax(-1)
                top.masked_fill_(top.abs() == float("inf"), 0)
                grad = logits.sub_(top[:, None]).exp_()
                del logits
                sums = grad.sum(-1)
                total += (sums.log() + top - picked).sum()
                if not (need_rows or need_weight or need_bias):
                    continue
                grad.div_(sums[:, None])  # the softmax
                grad[torch.arange(grad.shape[0], device=grad.device), target] -= 1
                if need_bias:
                    grad_bias += grad.sum(0)
                if not (need_rows or need_weight):
                    continue
                # Under autocast both matmuls below take this gradient in the autocast dtype: cast it once, before
                # padding it, so the step never holds a padded float32 copy next to the chunk (20 MiB each at
                # 640 rows of an 8k vocabulary).
                if autocast:
                    grad = grad.to(head.dtype)
                if extra:
                    grad = torch.nn.functional.pad(grad, (0, 0, 0, extra))
                if need_rows:
                    grad_rows[start:start + step] = (grad.to(head.dtype) @ head)[:chunk.shape[0]]
                if need_weight:
                    grad_weight += grad.T @ padded.float()
            ctx.grads = (grad_rows, grad_weight, grad_bias)
            ctx.dtypes = (weight.dtype, bias.dtype if bias is not None else None)
            return total

        @staticmethod
        def backward(ctx: Any, grad_total: Any) -> Any:
            grad_rows, grad_weight, grad_bias = ctx.grads
            ctx.grads = None
            scale = grad_total.to(torch.float32)
            if grad_rows is not None:
                grad_rows = grad_rows * scale.to(grad_rows.dtype)
            if grad_weight is not None:
                grad_weight = (grad_weight * scale).to(ctx.dtypes[0])
            if grad_bias is not None:
                grad_bias = (grad_bias * scale).to(ctx.dtypes[1])
            return grad_rows, grad_weight, grad_bias, None, None

    def _autocast_once(weight: Any, bias: Any, device: str) -> tuple[Any, Any]:
        """``weight`` and ``bias`` in the autocast dtype when autocast is on for ``device`` (what each matmul would
        cast them to), else as they are."""
        if not torch.is_autocast_enabled(device):
            return weight, bias
        dtype = torch.get_autocast_dtype(device)
        return weight.to(dtype), bias.to(dtype) if bias is not None else None

    return _LinearCrossEntropy


class _Lazy:
    """Builds the autograd Function on first use, so importing this module does not import torch."""

    _cls: Any = None

    def apply(self, *args: Any) -> Any:
        if self._cls is None:
            type(self)._cls = _linear_cross_entropy()
        return self._cls.apply(*args)


LinearCrossEntropy = _Lazy()
