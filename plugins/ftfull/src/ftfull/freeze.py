"""Which parameters of a fully fine-tuned model train (imported only when a run starts)."""

from __future__ import annotations

from typing import Any

from ftcore import ConfigError


def prepare_full(model: Any, options: Any, config: Any) -> Any:
    """``model`` with every parameter trainable except those ``options`` freezes."""
    for param in model.parameters():
        param.requires_grad_(True)
    if options.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    if options.freeze_layers:
        layers = decoder_layers(model)
        if options.freeze_layers > len(layers):
            raise ConfigError(
                f"method_options.freeze_layers: {options.freeze_layers} is more than the model's {len(layers)} layers"
            )
        for layer in layers[: options.freeze_layers]:
            layer.requires_grad_(False)
    if config is not None and config.training.gradient_checkpointing:
        from ftcore import enable_gradient_checkpointing

        enable_gradient_checkpointing(model)
    return model


def decoder_layers(model: Any) -> Any:
    """The model's stack of decoder layers: the longest ``ModuleList`` matching ``num_hidden_layers``."""
    import torch

    expected = getattr(model.config, "num_hidden_layers", None)
    candidates = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList) and len(m) > 0]
    matching = [m for m in candidates if len(m) == expected] or candidates
    if not matching:
        raise ConfigError(f"method_options.freeze_layers: cannot find the decoder layers of {type(model).__name__}")
    return max(matching, key=len)
