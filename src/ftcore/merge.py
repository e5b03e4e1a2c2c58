"""Merge a run's adapter into its base model and save a standalone model.

The base is loaded the way the run loaded it (the method's ``model_load_kwargs``), so a QLoRA adapter
is merged into the *same* 4-bit weights it was trained against: every bitsandbytes ``Linear4bit`` is
first replaced by a plain ``nn.Linear`` holding its dequantized weight (exactly what the 4-bit layer
multiplies by), then peft folds the adapter in (``merge_and_unload``; DoRA's magnitude included).
The merge is computed in float32 and cast to the output dtype at the end. The result is safetensors
(sharded above ``max_shard_size``), ``config.json``, ``generation_config.json`` and the run's tokenizer:
loadable with plain ``transformers``, no peft or ft needed.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from ftcore.errors import FtError, RunDirError

log = logging.getLogger(__name__)


def adapter_dir_of(run_dir: str | Path) -> Any:
    """The run of ``run_dir`` when it holds an adapter; a RunDirError saying so otherwise."""
    from ftcore.rundir import load_run

    run = load_run(run_dir)
    if not (run.path / "adapter_config.json").is_file():
        kind = "full model weights" if run.output == "model" or (run.path / "config.json").is_file() else "no weights"
        raise RunDirError(
            f"{run.path} has no adapter to merge (no adapter_config.json; the run saved {kind}); "
            "merge applies to adapter methods such as lora and qlora, a full fine-tune is already standalone"
        )
    return run


def base_load_kwargs(run: Any) -> dict[str, Any]:
    """``from_pretrained`` arguments of the run's method (QLoRA: its 4-bit config), else ``{}``.

    A method whose plugin is no longer installed is merged into an unquantized base, with a warning.
    """
    from ftcore.config import build_config, validate_method_options
    from ftcore.plugins import get_plugin_manager

    try:
        config = build_config(run.config, source=str(run.path / "ft_config.yaml"))
        _, options = validate_method_options(config)
    except FtError as exc:
        log.warning("cannot resolve the run's method (%s); merging into the unquantized base", exc)
        return {}
    hook = get_plugin_manager().hook
    return hook.model_load_kwargs(method=config.method, config=config, options=options) or {}


def dequantize_linear4bit(model: Any) -> int:
    """Replace every bitsandbytes ``Linear4bit`` by an ``nn.Linear`` with its dequantized weight; the count.

    On CPU, bitsandbytes repacks a layer's weight for its bf16 kernel after an inference forward;
    that layout is undone first, so the weight read back is the NF4/FP4 one the adapter trained on.
    """
    import torch

    try:
        import bitsandbytes as bnb
        from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse
    except ImportError:
        return 0
    replaced = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, bnb.nn.Linear4bit):
                data, state = child.weight.data, child.weight.quant_state
                if getattr(state, "packing_format_for_cpu", False):
                    data, state = _convert_weight_packed_for_cpu_inverse(data, state)
                weight = bnb.functional.dequantize_4bit(data, state).to(torch.float32)
                linear = torch.nn.Linear(child.in_features, child.out_features, bias=child.bias is not None,
                                         device=weight.device, dtype=torch.float32)
                linear.weight.data = weight
                if child.bias is not None:
                    linear.bias.data = child.bias.data.to(torch.float32)
                setattr(module, name, linear)
                replaced += 1
    return replaced


def _forget_quantization(model: Any) -> None:
    """Make a dequantized model a plain one (transformers' own cleanup), so it saves without bitsandbytes."""
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)
    for flag in ("is_loaded_in_4bit", "is_loaded_in_8bit"):
        if getattr(model, flag, False):
            setattr(model, flag, False)
    model.float()


def load_base_for_merge(run: Any, device: str | None = None) -> Any:
    """The run's base model in float32, dequantized when the run trained on a quantized base."""
    import torch

    from ftcore.models import LoadOptions, load_pretrained

    kwargs = base_load_kwargs(run)
    quantized = "quantization_config" in kwargs
    kwargs["dtype"] = kwargs.get("dtype", torch.float32) if quantized else torch.float32
    options = LoadOptions("float32", bool(run.config.get("trust_remote_code")), bool(run.config.get("allow_pickle")))
    model = load_pretrained(run.base_model, options, extra_kwargs=kwargs, device=device)
    if quantized:
        count = dequantize_linear4bit(model)
        log.info("dequantized %d 4-bit layers of %s before merging", count, run.base_model)
        _forget_quantization(model)
    return model


def merged_model(run_dir: str | Path, device: str | None = None) -> tuple[Any, Any]:
    """``(model, run)``: the run's base with its adapter folded in, float32, as a plain transformers model."""
    from peft import PeftModel

    run = adapter_dir_of(run_dir)
    base = load_base_for_merge(run, device=device)
    try:
        peft_model = PeftModel.from_pretrained(base, str(run.path))
    except Exception as exc:
        raise RunDirError(f"{run.path}: cannot apply the adapter to {run.base_model}: {type(exc).__name__}: {exc}") from exc
    return peft_model.merge_and_unload(), run


def _saved_dtype(base_model: str) -> Any:
    """The dtype the base model's weights are stored in (its config's ``dtype``), or None when unknown."""
    import torch
    from transformers import AutoConfig

    from ftcore.models import gguf_as_model_dir, is_gguf, resolve_source

    try:
        source = resolve_source(base_model)
        config = AutoConfig.from_pretrained(str(gguf_as_model_dir(source)) if is_gguf(source) else source)
    except Exception:  # an unreadable config only costs the default dtype
        return None
    saved = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    if isinstance(saved, str):
        saved = getattr(torch, saved, None)
    return saved if isinstance(saved, torch.dtype) else None


def output_dtype(run: Any, dtype: str | None) -> Any:
    """``dtype`` if given, else the dtype the base model was stored in, else float32."""
    import torch

    if dtype:
        return getattr(torch, dtype)
    return _saved_dtype(run.base_model) or torch.float32


def _check_output(output: Path, overwrite: bool) -> None:
    if output.exists() and not output.is_dir():
        raise FtError(f"--output {output} is a file; give a directory")
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise FtError(f"--output {output} exists and is not empty; choose another directory or pass --overwrite")


def merge_run(run_dir: str | Path, output: str | Path, *, dtype: str | None = None, max_shard_size: str = "5GB",
              overwrite: bool = False) -> Path:
    """Merge the adapter of ``run_dir`` into its base and save the standalone model + tokenizer to ``output``.

    The files are written to a sibling staging directory and moved into ``output`` when complete.
    """
    adapter_dir_of(run_dir)  # a wrong run directory fails before anything heavy is imported
    output = Path(output).expanduser().resolve()
    _check_output(output, overwrite)
    from transformers import AutoTokenizer

    model, run = merged_model(run_dir)
    model = model.to(output_dtype(run, dtype))
    staging = output.with_name(f".{output.name}.tmp-merge-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        model.save_pretrained(str(staging), max_shard_size=max_shard_size)
        AutoTokenizer.from_pretrained(str(run.path)).save_pretrained(str(staging))
        output.mkdir(parents=True, exist_ok=True)
        for item in staging.iterdir():
            target = output / item.name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(item, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output
