"""Which transformers architectures ``ft export`` writes as GGUF, and how each differs from plain Llama.

One row per transformers ``model_type``, following llama.cpp's ``convert_hf_to_gguf.py``: the architecture
name llama.cpp reads, whether q/k rows are reordered (llama.cpp's Llama family), whether norm weights are
stored as ``1 + w`` (Gemma), whether experts are stacked into ``ffn_*_exps`` tensors (mixture of experts),
and the extra hyperparameters llama.cpp reads. Tensor names come from the ``gguf`` package's own map.

``unreadable`` says why transformers' GGUF loader, which the parity check uses, cannot read a model back:
Mixtral always (llama.cpp writes it as ``llama`` with experts, which transformers' loader does not know), and
models whose settings the loader does not read from the file but takes at its defaults (Qwen3's head size,
Qwen3-MoE's expert size, Gemma's ``query_pre_attn_scalar``). Such an export is written and its parity report says it was not
checked, and why.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ftcore import FtError

#: ``--type`` values and the GGML storage of 2-D weights they mean (1-D tensors stay float32).
GGUF_TYPES = ("f16", "q8_0")


def _head_dim(config: Any) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def _attention_lengths(config: Any) -> dict[str, Any]:
    return {"attention.key_length": _head_dim(config), "attention.value_length": _head_dim(config)}


def _experts(config: Any) -> dict[str, Any]:
    count = getattr(config, "num_local_experts", None) or config.num_experts
    keys: dict[str, Any] = {"expert_count": count, "expert_used_count": config.num_experts_per_tok}
    if getattr(config, "moe_intermediate_size", None):
        keys["expert_feed_forward_length"] = config.moe_intermediate_size
    return keys


def _gemma2(config: Any) -> dict[str, Any]:
    keys = {**_attention_lengths(config), "attention.sliding_window": config.sliding_window}
    for name in ("attn_logit_softcapping", "final_logit_softcapping"):
        if getattr(config, name, None) is not None:
            keys[name] = float(getattr(config, name))
    return keys


def _gemma3(config: Any) -> dict[str, Any]:
    return {**_attention_lengths(config), "attention.sliding_window": config.sliding_window}


def _qwen3_moe(config: Any) -> dict[str, Any]:
    return {**_attention_lengths(config), **_experts(config)}


def _readable(**defaults: Any) -> Callable[[dict[str, Any]], str | None]:
    """A check that transformers' loader reads the model back: settings it takes at these defaults must hold them."""

    def check(config: dict[str, Any]) -> str | None:
        wrong = {k: config.get(k) for k, v in defaults.items() if config.get(k, v) != v}
        if not wrong:
            return None
        said = ", ".join(f"{k} {v!r} (it assumes {defaults[k]!r})" for k, v in wrong.items())
        return f"transformers' GGUF loader does not read {said} from the file"

    return check


def _never(reason: str) -> Callable[[dict[str, Any]], str | None]:
    return lambda config: reason


@dataclass(frozen=True)
class Architecture:
    """How one transformers ``model_type`` is written as GGUF (see the module doc)."""

    gguf_name: str
    permute_qk: bool = False
    norm_offset: float = 0.0
    experts: bool = False
    keys: Callable[[Any], dict[str, Any]] = field(default=lambda config: {})
    #: why transformers cannot read the model back (so the parity check cannot run), or None
    unreadable: Callable[[dict[str, Any]], str | None] = field(default=lambda config: None)
    #: config attributes that must hold these values, since llama.cpp assumes them
    requires: tuple[tuple[str, Any], ...] = ()


#: transformers ``model_type`` → how it is written.
ARCHITECTURES = {
    "llama": Architecture("llama", permute_qk=True),
    "mistral": Architecture("llama", permute_qk=True),
    "mixtral": Architecture("llama", permute_qk=True, experts=True, keys=_experts, unreadable=_never(
        "transformers' GGUF loader cannot read mixtral back (llama.cpp writes it as llama with experts)")),
    "qwen2": Architecture("qwen2"),
    "qwen3": Architecture("qwen3", keys=_attention_lengths, unreadable=_readable(head_dim=128)),
    "qwen3_moe": Architecture("qwen3moe", experts=True, keys=_qwen3_moe, requires=(("norm_topk_prob", True),),
                              unreadable=_readable(moe_intermediate_size=768)),
    "gemma2": Architecture("gemma2", norm_offset=1.0, keys=_gemma2, unreadable=_readable(
        query_pre_attn_scalar=256, attn_logit_softcapping=50.0, final_logit_softcapping=30.0)),
    "gemma3_text": Architecture("gemma3", norm_offset=1.0, keys=_gemma3, unreadable=_readable(
        query_pre_attn_scalar=256)),
    "phi3": Architecture("phi3"),
}

#: Names for messages and docs.
DISPLAY = "Llama, Mistral, Mixtral, Qwen2, Qwen3, Qwen3-MoE, Gemma 2, Gemma 3 (text), Phi-3"


def check_supported(model_type: str, gguf_type: str, config: dict[str, Any] | None = None) -> Architecture:
    """The :class:`Architecture` for ``model_type``; an FtError naming what is supported otherwise.

    ``config`` (the model's config as a mapping) is checked for what llama.cpp cannot express: RoPE
    scaling, and an architecture's fixed assumptions (``requires``).
    """
    if gguf_type not in GGUF_TYPES:
        raise FtError(f"--type {gguf_type!r} is not supported; supported: {', '.join(GGUF_TYPES)}")
    arch = ARCHITECTURES.get(model_type)
    if arch is None:
        raise FtError(f"GGUF export does not support architecture {model_type!r}; supported: {DISPLAY} "
                      f"(model_type {', '.join(sorted(ARCHITECTURES))})")
    config = config or {}
    for rope in _rope_settings(config):
        rope_type = rope.get("rope_type") or rope.get("type") or "default"
        if rope_type != "default":
            raise FtError(f"GGUF export does not support rope scaling {rope_type!r} (model_type {model_type!r}); "
                          "supported: models without rope scaling")
    for name, value in arch.requires:
        if name in config and config[name] != value:
            raise FtError(f"GGUF export of {model_type!r} needs {name}: {value} (llama.cpp assumes it); "
                          f"this model has {config[name]!r}")
    return arch


def _rope_settings(config: dict[str, Any]) -> list[dict[str, Any]]:
    """Every RoPE settings mapping of a config: transformers 5's ``rope_parameters`` (per layer type for
    Gemma 3), or 4.x's ``rope_scaling``."""
    found = []
    for key in ("rope_parameters", "rope_scaling"):
        value = config.get(key)
        if isinstance(value, dict):
            nested = [v for v in value.values() if isinstance(v, dict)]
            found += nested or [value]
    return found


def rope_theta(config: Any) -> float:
    """The (global) RoPE base frequency: transformers 5's ``rope_parameters`` (Gemma 3: its full-attention
    layers') or 4.x's ``rope_theta``."""
    params = getattr(config, "rope_parameters", None) or {}
    params = params.get("full_attention", params) if isinstance(params, dict) else {}
    return float(params.get("rope_theta") or getattr(config, "rope_theta", None) or 10000.0)


def rope_dimensions(config: Any) -> int:
    """How many dimensions of each head RoPE rotates (Phi-3's ``partial_rotary_factor``)."""
    factor = getattr(config, "partial_rotary_factor", None) or 1.0
    return int(_head_dim(config) * factor)
