"""LoRA with peft: find the layers to adapt, attach a fresh adapter, load, merge and describe a trained one.

Methods built on LoRA (``qlora``, ``instruction``, third-party ones) call these functions from their own
hooks. Importing this module is cheap: torch, transformers and peft are imported inside the functions.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftcore import MemoryProfile, ModelError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ftcore import FtConfig
    from ftlora.options import LoraOptions


@contextmanager
def _quiet_peft() -> Iterator[None]:
    """peft asks transformers 5 for a deprecated attribute; the warning means nothing to users."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def find_target_modules(model: Any) -> list[str]:
    """Names (last path component) of every linear layer LoRA should adapt: all but the output head.

    Works on plain models, ``PeftModel``s and bitsandbytes-quantized models (``Linear4bit`` is a
    ``torch.nn.Linear``). GPT-2 style ``Conv1D`` projections count as linear layers.
    """
    import torch
    from transformers.pytorch_utils import Conv1D

    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    names: set[str] = set()
    head_names: set[str] = set()
    for name, module in model.named_modules():
        if not isinstance(module, (torch.nn.Linear, Conv1D)) or "lora_" in name:
            continue
        suffix = name.rsplit(".", 1)[-1]
        (head_names if module is head else names).add(suffix)
    names -= head_names
    if not names:
        raise ModelError(f"{type(model).__name__} has no linear layers to adapt; set method_options.target_modules")
    return sorted(names)


def lora_config(model: Any, options: LoraOptions) -> Any:
    """The ``peft.LoraConfig`` for ``model`` described by ``options`` (target modules resolved)."""
    from peft import LoraConfig

    targets = options.target_modules
    if targets in ("auto", "all-linear"):
        targets = find_target_modules(model)
    return LoraConfig(
        task_type="CAUSAL_LM",
        r=options.r,
        lora_alpha=options.alpha,
        lora_dropout=options.dropout,
        target_modules=list(targets),
        use_dora=options.use_dora,
        use_rslora=options.use_rslora,
        modules_to_save=list(options.modules_to_save) or None,
        bias=options.bias,
        trainable_token_indices=new_token_rows(model, options),
    )


def new_token_rows(model: Any, options: LoraOptions) -> dict[str, list[int]] | None:
    """The embedding rows of the tokens the run added (``ftcore.added_token_ids``), to train beside the adapter:
    the input embeddings' and, when not tied to them, the output layer's. None when no token was added, or
    when ``modules_to_save`` already trains those layers whole."""
    from ftcore import added_token_ids

    ids = added_token_ids(model)
    if not ids:
        return None
    layers = {"input": model.get_input_embeddings(), "output": model.get_output_embeddings()}
    if layers["output"] is not None and layers["output"].weight is layers["input"].weight:
        del layers["output"]  # tied: peft follows the tie
    names = {id(module): name.rsplit(".", 1)[-1] for name, module in model.named_modules()}
    rows = {names[id(module)]: ids for module in layers.values() if module is not None and id(module) in names}
    rows = {name: ids for name, ids in rows.items() if name not in options.modules_to_save}
    return rows or None


def attach_lora(model: Any, options: LoraOptions, config: FtConfig | None = None) -> Any:
    """Wrap ``model`` in a ``peft.PeftModel`` with a fresh LoRA adapter; only the adapter trains.

    Turns on gradient checkpointing when ``config.training.gradient_checkpointing`` asks for it
    (with input gradients enabled, which a frozen base needs for checkpointing to reach the adapter). The
    adapter's dropout is :mod:`ftlora.dropout`'s (torch's own off the CPU).
    Raises :class:`ftcore.ModelError` when a named target module does not exist in the model.
    """
    from peft import get_peft_model

    from ftcore import enable_gradient_checkpointing
    from ftlora.dropout import use_cpu_dropout

    if config is not None and config.training.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    peft_config = lora_config(model, options)
    try:
        with _quiet_peft():
            peft_model = get_peft_model(model, peft_config)
    except ValueError as exc:
        if "not found in the base model" in str(exc) or "Target modules" in str(exc):
            raise ModelError(
                f"method_options.target_modules: {list(peft_config.target_modules)} do not match the model's "
                f"modules (linear layers here: {', '.join(find_target_modules(model))})"
            ) from exc
        raise
    use_cpu_dropout(peft_model)
    return peft_model


def load_lora(model: Any, path: str | Path) -> Any:
    """``model`` with the adapter saved in ``path`` applied (not merged), as a ``peft.PeftModel``."""
    from peft import PeftModel

    try:
        with _quiet_peft():
            return PeftModel.from_pretrained(model, str(path))
    except Exception as exc:
        raise ModelError(f"{path}: cannot apply the adapter to its base model: {_first_line(exc)}") from exc


def merge_lora(model: Any, path: str | Path) -> Any:
    """The adapter saved in ``path`` folded into ``model`` (DoRA's magnitude included): a plain transformers model."""
    return load_lora(model, path).merge_and_unload()


def lora_tensor_shapes(model: Any) -> dict[str, list[int]]:
    """``{name: shape}`` of the tensors a checkpoint of the LoRA model ``model`` holds, named as in its files."""
    from peft import get_peft_model_state_dict

    return {name: list(tensor.shape) for name, tensor in get_peft_model_state_dict(model).items()}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def name_base_in_adapter_config(run_dir: Path, provenance: dict[str, Any]) -> None:
    """An adapter names its base by Hub id (and commit) when it is known, never by a path of this machine.

    peft records where the base was loaded from: for a GGUF base that is ft's conversion cache. ft itself
    loads the base from the manifest's ``base_model``, so this only changes what other tools read.
    """
    import json

    path = run_dir / "adapter_config.json"
    if not provenance.get("hub_id") or not path.is_file():
        return
    adapter_config = json.loads(path.read_text(encoding="utf-8"))
    adapter_config["base_model_name_or_path"] = provenance["hub_id"]
    if provenance.get("commit") or provenance.get("revision"):
        adapter_config["revision"] = provenance.get("commit") or provenance.get("revision")
    path.write_text(json.dumps(adapter_config, indent=2) + "\n", encoding="utf-8")


def lora_memory(shape: Any, setup: Any) -> MemoryProfile | None:
    """What a LoRA run holds for the memory estimate: ``rank x (in + out)`` adapter parameters on every Linear of
    the decoder blocks (``shape.linear_in_out``), beside the base in the run's dtype; ``None`` when every weight
    trains (``setup.rank`` is ``None``: ftcore counts full fine-tuning itself)."""
    if setup.rank is None:
        return None
    return MemoryProfile(trained=setup.rank * shape.linear_in_out)
