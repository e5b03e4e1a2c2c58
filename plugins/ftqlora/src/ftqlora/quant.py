"""4-bit loading and preparation for QLoRA (imported only when a qlora run starts)."""

from __future__ import annotations

import importlib.util
import logging
from importlib import metadata
from pathlib import Path
from typing import Any

from ftcore import FtError

log = logging.getLogger(__name__)


def check_4bit_support() -> str:
    """The device 4-bit training will run on (``"cuda"`` or ``"cpu"``); raise FtError when there is none.

    Checked before the model loads, without importing bitsandbytes (which is slow and noisy).
    """
    import torch

    spec = importlib.util.find_spec("bitsandbytes")
    if spec is None or not spec.submodule_search_locations:
        raise FtError(
            "method qlora needs bitsandbytes, which is not installed (pip install bitsandbytes); "
            "or use method lora, which needs no quantization"
        )
    if torch.cuda.is_available():
        return "cuda"
    package = Path(next(iter(spec.submodule_search_locations)))
    if (package / "backends" / "cpu" / "ops.py").is_file():
        return "cpu"
    raise FtError(
        f"method qlora: bitsandbytes {metadata.version('bitsandbytes')} cannot run 4-bit layers without a CUDA GPU "
        "and no GPU is visible; upgrade bitsandbytes (0.48 or later has a CPU backend) or use method lora"
    )


def compute_dtype(name: str, device: str) -> Any:
    """The torch dtype of 4-bit matmuls: bf16 on GPUs that support it, float32 on CPU, unless set."""
    import torch

    if name != "auto":
        return getattr(torch, name)
    if device == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def quantization_kwargs(options: Any, config: Any = None) -> dict[str, Any]:
    """``from_pretrained`` keyword arguments that load the base in 4 bits (shardable when the run uses FSDP)."""
    from transformers import BitsAndBytesConfig

    device = check_4bit_support()
    dtype = compute_dtype(options.compute_dtype, device)
    if getattr(options, "bits", 4) == 8:
        # LLM.int8: int8 weights with outlier columns kept in 16 bits; its matmul runs in float16 on CPU too.
        quant = BitsAndBytesConfig(load_in_8bit=True)
        if config is not None and config.training.fsdp is not None:
            raise FtError("method_options.bits: 8-bit bases cannot be sharded with FSDP; use bits: 4 or drop training.fsdp")
    else:
        quant = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=options.quant_type,
            bnb_4bit_use_double_quant=options.double_quant,
            bnb_4bit_compute_dtype=dtype,
        )
    kwargs: dict[str, Any] = {"quantization_config": quant, "dtype": dtype}
    if device == "cpu":
        kwargs["device_map"] = {"": "cpu"}
    if config is not None and config.training.fsdp is not None:
        four_bit_for_fsdp(kwargs)
    return kwargs


def four_bit_for_fsdp(load_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Make a 4-bit base shardable: FSDP flattens parameters of one dtype, so the packed 4-bit weights must be
    stored in the dtype of the other parameters (``bnb_4bit_quant_storage``), not the default uint8."""
    import torch

    quant = load_kwargs["quantization_config"]
    dtype = load_kwargs.get("dtype") or torch.float32
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, torch.float32)
    quant.bnb_4bit_quant_storage = dtype
    log.info("fsdp: storing the 4-bit base weights as %s so FSDP can shard them", quant.bnb_4bit_quant_storage)
    return load_kwargs


def prepare_qlora(model: Any, options: Any, config: Any) -> Any:
    """Cast norms to fp32 and enable input gradients on the 4-bit base, then attach LoRA."""
    import warnings

    from ftlora import attach_lora
    from peft import prepare_model_for_kbit_training

    checkpointing = bool(config is not None and config.training.gradient_checkpointing)
    with warnings.catch_warnings():
        # peft asks transformers 5 for a deprecated attribute; the warning means nothing to users.
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    return attach_lora(model, options, None)
