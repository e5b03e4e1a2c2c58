"""Merge a run's adapter into its base model and save a standalone model.

The base is loaded the way the run loaded it (the method's ``model_load_kwargs``, so a QLoRA adapter meets the
same 4-bit weights it was trained against), in float32 unless the method asks for another dtype. The method's
plugin then folds the adapter in (``merge_adapter``: ftqlora dequantizes its 4-bit layers first, LoRA folds
DoRA's magnitude too) and returns a plain transformers model, cast to the output dtype at the end. The result is
safetensors (sharded above ``max_shard_size``), ``config.json``, ``generation_config.json`` and the run's
tokenizer: loadable with plain ``transformers`` (4.x as well as 5, see :mod:`ftcore.artifacts.portable`), no ft or method
plugin needed.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftcore.errors import FtError, PluginError, RunDirError

if TYPE_CHECKING:
    from ftcore.artifacts.rundir import RunInfo
    from ftcore.models.loading import RunMethod

log = logging.getLogger(__name__)


def adapter_dir_of(run_dir: str | Path) -> RunInfo:
    """The run of ``run_dir`` when it saved an adapter; a RunDirError saying so otherwise."""
    from ftcore.artifacts.rundir import load_run
    from ftcore.models.loading import require_causal_lm

    run = load_run(run_dir)
    require_causal_lm(run, "be merged")
    if run.output != "adapter":
        kind = "full model weights" if run.output == "model" or (run.path / "config.json").is_file() else "no weights"
        raise RunDirError(
            f"{run.path} has no adapter to merge (the run saved {kind}); merge applies to methods that save an "
            "adapter, a full fine-tune is already standalone"
        )
    return run


def base_load_kwargs(method: RunMethod) -> dict[str, Any]:
    """``from_pretrained`` arguments the run's method asks for (QLoRA: its 4-bit config), else ``{}``."""
    from ftcore.contract.plugins import get_registry

    kwargs = get_registry().call("model_load_kwargs", "method", method.name, method=method.name,
                                 config=method.config, options=method.options)
    return dict(kwargs or {})


def load_base_for_merge(run: RunInfo, method: RunMethod, device: str | None = None) -> Any:
    """The run's base model as the run loaded it, in float32 unless the method's load arguments say otherwise."""
    import torch

    from ftcore.models.loading import LoadOptions, fit_run_vocabulary, load_pretrained

    kwargs = base_load_kwargs(method)
    kwargs.setdefault("dtype", torch.float32)
    options = LoadOptions("float32", bool(run.config.get("trust_remote_code")), bool(run.config.get("allow_pickle")))
    base = load_pretrained(run.base_model, options, extra_kwargs=kwargs, device=device)
    fit_run_vocabulary(base, run)
    return base


def merged_model(run_dir: str | Path, device: str | None = None) -> tuple[Any, RunInfo]:
    """``(model, run)``: the run's base with its adapter folded in by the method's plugin, a plain transformers model."""
    from ftcore.contract.plugins import get_registry
    from ftcore.models.loading import run_method

    run = adapter_dir_of(run_dir)
    method = run_method(run)
    base = load_base_for_merge(run, method, device=device)
    merged = get_registry().call("merge_adapter", "method", method.name, model=base, path=run.path,
                                 method=method.name, options=method.options)
    if merged is None:
        raise PluginError(f"method {method.name!r}: its plugin did not merge the adapter of {run.path} "
                          "(merge_adapter returned None)")
    return merged, run


def _saved_dtype(base_model: str, trust_remote_code: bool = False) -> Any:
    """The dtype the base model's weights are stored in (its config's ``dtype``), or None when unknown."""
    import torch
    from transformers import AutoConfig

    from ftcore.models.loading import gguf_as_model_dir, is_gguf, resolve_source

    try:
        source = resolve_source(base_model)
        config = AutoConfig.from_pretrained(str(gguf_as_model_dir(source)) if is_gguf(source) else source,
                                            trust_remote_code=trust_remote_code)
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
    return _saved_dtype(run.base_model, bool(run.config.get("trust_remote_code"))) or torch.float32


def _check_output(output: Path, overwrite: bool) -> None:
    from ftcore.run.preflight import check_output_dir

    check_output_dir(output, "--output")
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise FtError(f"--output {output} exists and is not empty; choose another directory or pass --overwrite")


def merge_run(run_dir: str | Path, output: str | Path, *, dtype: str | None = None, max_shard_size: str = "5GB",
              overwrite: bool = False) -> Path:
    """Merge the adapter of ``run_dir`` into its base and save the standalone model + tokenizer to ``output``.

    The files are written to a sibling staging directory and moved into ``output`` when complete.
    """
    from ftcore.artifacts.portable import make_portable
    from ftcore.models.loading import run_method

    # A wrong run directory, or a method whose plugin is missing, fails before anything heavy is imported.
    run_method(adapter_dir_of(run_dir))
    output = Path(output).expanduser().resolve()
    _check_output(output, overwrite)
    from transformers import AutoTokenizer

    model, run = merged_model(run_dir)
    model = model.to(output_dtype(run, dtype))
    staging = output.with_name(f".{output.name}.tmp-merge-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        model.save_pretrained(str(staging), max_shard_size=max_shard_size)
        trust = bool(run.config.get("trust_remote_code"))
        AutoTokenizer.from_pretrained(str(run.path), trust_remote_code=trust).save_pretrained(str(staging))
        make_portable(staging)  # readable by transformers 4.x too
        output.mkdir(parents=True, exist_ok=True)
        for item in staging.iterdir():
            target = output / item.name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(item, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output
