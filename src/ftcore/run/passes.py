"""Token-budgeted passes: each micro-batch's forward and backward run in slices of whole examples.

ft's default micro-batch flattens 8 examples into one padding-free row, which is fast (few large
matmuls, no padding) but holds the activations of all 8 examples at once. With
``training.micro_batch_tokens`` the host's trainer runs the micro-batch in slices of at most that many
tokens instead (an example longer than the budget runs alone), calling ``Trainer.training_step`` once
per slice. The gradients are the same: the trainer hands every slice the token count of the whole
optimizer step (``num_items_in_batch``), so each slice's loss is its share of the step's per-token sum
and the slices' gradients add up to the unsliced ones. Memory then follows the budget, not the
micro-batch.

A slice is a run of whole examples: in a flattened row they end where ``position_ids`` restart at 0;
in a padded batch they are rows, and a slice drops the right-padding columns none of its rows need.
A micro-batch runs unsliced when the trainer passes no token count (the per-slice means would not add
up), under DeepSpeed or FSDP (their own accumulation and sharded gradients), or when its tensors are not
of a shape ft knows how to split.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

#: ``training.micro_batch_tokens: auto`` on a CPU when no memory estimate can be made, and the smallest budget
#: ``auto`` chooses: the memory of one or two examples.
AUTO_TOKENS = 256
#: The smallest cap on ``auto``'s passes on a CPU: there, ``auto`` runs passes of at most ``data.max_seq_len``
#: tokens, or this many when ``max_seq_len`` is shorter, however much memory is free. A pass that size needs the
#: activation memory of one longest example (which a micro-batch-1 loop needs too), and a CPU's matmuls run at
#: their full rate well below it. On the 2-core benchmark machine (bf16 autocast, max_seq_len 1024), whole
#: micro-batches of 8 alpaca examples (about 3,800 tokens on SmolLM2-135M) peaked at 2.1x the memory of 1024-token
#: passes, which ran as fast or faster (docs/performance.md). On a GPU, where large matmuls do pay, ``auto``
#: takes whole micro-batches when they fit.
CPU_PASS_TOKENS = 512
#: The share of the free memory (RAM on a CPU, the device's on a GPU) that ``auto`` plans a run to fill; the rest
#: is slack for the estimate's error and for the machine's other processes.
MEMORY_SHARE = 0.8


def budget_for(setting: int | str | None, cuda: bool = False) -> int | None:
    """The token budget of one pass for ``training.micro_batch_tokens`` without a memory estimate (None: whole
    micro-batches).

    ``auto`` is :data:`AUTO_TOKENS` on a CPU and whole micro-batches on a GPU; a run chooses ``auto``'s budget from
    its memory estimate and the free memory instead (:func:`choose_pass_tokens`), this is its fallback.
    """
    if setting is None:
        return None
    if setting == "auto":
        return None if cuda else AUTO_TOKENS
    return int(setting)


@dataclass(frozen=True)
class PassChoice:
    """The token budget of one pass a run uses (``tokens``; None: whole micro-batches) and why."""

    tokens: int | None
    reason: str
    setting: int | str | None = "auto"
    #: Estimated peak bytes of the chosen passes and the free bytes they were weighed against (None when unknown).
    needed: int | None = None
    available: int | None = None

    def record(self) -> dict[str, Any]:
        """What the run manifest keeps of the choice."""
        return {"micro_batch_tokens": self.tokens, "setting": self.setting, "reason": self.reason,
                "estimated_bytes": self.needed, "available_bytes": self.available}


def choose_pass_tokens(needed: Callable[[int | None], int], available: int, whole_tokens: int,
                       floor: int = AUTO_TOKENS, share: float = MEMORY_SHARE, cap: int | None = None) -> PassChoice:
    """``auto``'s budget: whole micro-batches when their estimate fits ``share`` of ``available`` bytes, else the
    largest power-of-two budget below ``whole_tokens`` whose estimate fits, else ``floor`` tokens.

    :param needed: the estimated peak bytes of the run with passes of at most that many tokens (None: whole).
    :param whole_tokens: the tokens of the largest micro-batch (micro-batch × sequence length).
    :param cap: the largest budget to choose (on a CPU, ``data.max_seq_len`` or :data:`CPU_PASS_TOKENS`): micro-batches
        of more tokens run in passes of at most ``cap`` tokens even when they would fit whole.
    """
    limit = int(available * share)
    room = f"{_gb(limit)} ({share:.0%} of {_gb(available)} free)"
    whole = needed(None)
    if cap is not None and whole_tokens > cap:
        if (bytes_ := needed(cap)) <= limit:
            return PassChoice(cap, f"passes of {cap} tokens, the most auto takes on a CPU (one longest example's "
                                   f"memory), are estimated at {_gb(bytes_)}, within {room}",
                              needed=bytes_, available=available)
        tokens = cap // 2
    elif whole <= limit:
        return PassChoice(None, f"whole micro-batches (up to {whole_tokens} tokens) are estimated at {_gb(whole)}, "
                                f"within {room}", needed=whole, available=available)
    else:
        tokens = 1 << max(whole_tokens - 1, 1).bit_length() - 1
    while tokens >= floor:
        if (bytes_ := needed(tokens)) <= limit:
            return PassChoice(tokens, f"whole micro-batches (up to {whole_tokens} tokens) are estimated at "
                                      f"{_gb(whole)}, over {room}; passes of {tokens} tokens at {_gb(bytes_)}",
                              needed=bytes_, available=available)
        tokens //= 2
    least = needed(floor)
    return PassChoice(floor, f"even passes of {floor} tokens are estimated at {_gb(least)}, over {room}: the "
                             "smallest budget auto chooses", needed=least, available=available)


def _gb(n: int) -> str:
    return f"{n / 1024**3:.1f} GB"


def split_batch(inputs: dict[str, Any], budget: int) -> list[dict[str, Any]] | None:
    """``inputs`` cut into slices of whole examples of at most ``budget`` tokens; None when it stays whole.

    A flattened row (one row with ``position_ids``, no ``attention_mask``) is cut at its position resets; a
    batch of rows is cut between rows. None when one slice would hold everything, or when a tensor of the
    batch is not ``[rows, length]`` like ``input_ids``.
    """
    ids = inputs.get("input_ids")
    if ids is None or ids.dim() != 2 or not _all_row_shaped(inputs, tuple(ids.shape)):
        return None
    positions = inputs.get("position_ids")
    if ids.shape[0] == 1 and positions is not None and inputs.get("attention_mask") is None:
        spans = _group(_segment_lengths(positions[0]), budget)
        if len(spans) < 2:
            return None
        return [_columns(inputs, a, b) for a, b in spans]
    mask = inputs.get("attention_mask")
    lengths = _real_lengths(mask) if mask is not None else [int(ids.shape[1])] * int(ids.shape[0])
    groups = _row_groups(lengths, budget)
    if len(groups) < 2:
        return None
    return [_rows(inputs, a, b, width) for a, b, width in groups]


def _all_row_shaped(inputs: dict[str, Any], shape: tuple[int, ...]) -> bool:
    return all(tuple(value.shape) == shape for value in inputs.values() if hasattr(value, "shape"))


def _segment_lengths(positions: Any) -> list[int]:
    """Lengths of the examples of a flattened row (tokens before the first reset count as one)."""
    starts = (positions == 0).nonzero().flatten().tolist()
    total = int(positions.shape[-1])
    if not starts or starts[0] != 0:
        starts = [0, *starts]
    return [b - a for a, b in zip(starts, [*starts[1:], total], strict=True)]


def _group(lengths: list[int], budget: int) -> list[tuple[int, int]]:
    """Column spans of consecutive examples, each span at most ``budget`` tokens unless one example is longer."""
    spans: list[tuple[int, int]] = []
    start = end = 0
    for length in lengths:
        if end > start and end - start + length > budget:
            spans.append((start, end))
            start = end
        end += length
    if end > start:
        spans.append((start, end))
    return spans


def _real_lengths(mask: Any) -> list[int]:
    """Columns each row needs: up to its last attended position (right padding after it can be dropped)."""
    width = int(mask.shape[1])
    last = width - mask.flip(1).int().argmax(1)
    return [int(n) if bool(row.any()) else 1 for n, row in zip(last.tolist(), mask, strict=True)]


def _row_groups(lengths: list[int], budget: int) -> list[tuple[int, int, int]]:
    """``(first row, end row, width)`` of consecutive rows whose padded size (rows × width) fits ``budget``."""
    groups: list[tuple[int, int, int]] = []
    start, width = 0, 0
    for row, length in enumerate(lengths):
        wider = max(width, length)
        if row > start and (row - start + 1) * wider > budget:
            groups.append((start, row, width))
            start, wider = row, length
        width = wider
    groups.append((start, len(lengths), width))
    return groups


def _columns(inputs: dict[str, Any], a: int, b: int) -> dict[str, Any]:
    return {key: value[:, a:b] if hasattr(value, "shape") else value for key, value in inputs.items()}


def _rows(inputs: dict[str, Any], a: int, b: int, width: int) -> dict[str, Any]:
    return {key: value[a:b, :width] if hasattr(value, "shape") else value for key, value in inputs.items()}


def pad_flat_row(inputs: dict[str, Any], pad_id: int) -> dict[str, Any]:
    """A flattened row (one row with ``position_ids``, no ``attention_mask``) lengthened to one of a few lengths
    (:func:`ftcore.models.attention.padded_length`) by one more segment of ``pad_id`` tokens, unlabelled; anything
    else as it is.

    On a CPU, oneDNN builds a bf16 matmul for every new number of rows, and with padding-free rows (whose length
    is the sum of their examples') almost every pass brings a new one: 10 steps of a 28M-parameter model grew the
    process by 700 MB, and never gave it back. A handful of lengths keeps the memory flat. The extra segment
    starts at position 0, so it attends only to itself; its labels are ignored, so the loss and the gradients
    are those of the row without it.
    """
    ids, positions = inputs.get("input_ids"), inputs.get("position_ids")
    if ids is None or positions is None or "attention_mask" in inputs or ids.dim() != 2 or ids.shape[0] != 1:
        return inputs
    from ftcore.models.attention import padded_length

    length = int(ids.shape[1])
    extra = padded_length(length) - length
    if not extra or not _all_row_shaped(inputs, tuple(ids.shape)) or set(inputs) - {"input_ids", "labels",
                                                                                    "position_ids", "use_cache"}:
        return inputs
    import torch

    fill = {"input_ids": torch.full((1, extra), pad_id, dtype=ids.dtype, device=ids.device),
            "labels": torch.full((1, extra), -100, dtype=ids.dtype, device=ids.device),
            "position_ids": torch.arange(extra, dtype=positions.dtype, device=positions.device)[None]}
    return {key: torch.cat([value, fill[key]], dim=1) if key in fill else value for key, value in inputs.items()}


@functools.cache
def trainer_class() -> type:
    """``transformers.Trainer`` with token-budgeted passes (built on first use: importing transformers is slow)."""
    from transformers import Trainer

    class FtTrainer(Trainer):
        """The host's trainer: ``Trainer`` that runs each micro-batch in passes of at most ``micro_batch_tokens``."""

        def __init__(self, *args: Any, micro_batch_tokens: int | None = None, pad_rows: bool = False,
                     pad_id: int = 0, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.micro_batch_tokens = micro_batch_tokens
            #: Flattened rows are padded to one of a few lengths (:func:`pad_flat_row`).
            self.pad_rows, self.pad_id = pad_rows, pad_id
            #: Micro-batches trained and the forward+backward passes they took.
            self.micro_batches = self.passes = 0

        def training_step(self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> Any:
            slices = self._slices(inputs, num_items_in_batch)
            self.micro_batches += 1
            if slices is None:
                self.passes += 1
                return super().training_step(model, self._shaped(inputs), num_items_in_batch)
            total = None
            for index, part in enumerate(slices):
                # Gradients are reduced across processes once per micro-batch, after its last slice (under DDP;
                # the trainer itself already skips the reduction for all but the last micro-batch of a step).
                last = index == len(slices) - 1
                with nullcontext() if last else self.accelerator.no_sync(model):
                    loss = super().training_step(model, self._shaped(part), num_items_in_batch)
                total = loss if total is None else total + loss
            self.passes += len(slices)
            return total

        def _shaped(self, inputs: dict[str, Any]) -> dict[str, Any]:
            return pad_flat_row(inputs, self.pad_id) if self.pad_rows else inputs

        def _slices(self, inputs: dict[str, Any], num_items_in_batch: Any) -> list[dict[str, Any]] | None:
            if self.micro_batch_tokens is None or num_items_in_batch is None or not self._loss_sums_over_step():
                return None
            if self.is_deepspeed_enabled or self.is_fsdp_enabled:
                return None
            return split_batch(inputs, self.micro_batch_tokens)

        def _loss_sums_over_step(self) -> bool:
            # Trainer.training_step's own test: the loss was divided by the step's token count, not averaged.
            scaled = self.loss_is_scaled_for_ga
            if scaled is None:
                scaled = self.model_accepts_loss_kwargs or self.compute_loss_func is not None
            return bool(scaled)

    return FtTrainer
