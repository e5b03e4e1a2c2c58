"""ftpref: preference tuning for ft — methods ``dpo``, ``orpo``, ``simpo`` and ``kto`` through TRL, and (in the
plugin module :mod:`ftpref.rm`) ``rm``, a reward model trained on preference pairs that ftrl's ``reward_model`` uses.

Registers the data shapes ``preference`` (prompt, chosen, rejected) and ``unpaired_preference`` (prompt,
completion, label), formats for the layouts preference data comes in (TRL's, LLaMA-Factory's, Anthropic HH's),
and the four methods, each on a LoRA adapter (default), a 4-bit QLoRA base or full weights. Built only on
ftcore's public contract and on ftlora/ftqlora (declared dependencies). Nothing heavy is imported here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ftlora.kit import load_adapter  # noqa: F401  (ftlora's: the adapter is LoRA's)

from ftcore import FormatSpec, MethodSpec, MetricSpec, ShapeSpec, hookimpl
from ftpref.options import DpoOptions, KtoOptions, OrpoOptions, SimpoOptions

__version__ = "0.1.0"
#: Needs plugin API 3 (memory_profile).
FTCORE_PLUGIN_API = 3

SHAPES = {
    "preference": ShapeSpec("preference", "a prompt with a chosen and a rejected answer (text or conversation)",
                            columns=("prompt", "chosen", "rejected"), packing=False, reference="chosen"),
    "unpaired_preference": ShapeSpec("unpaired_preference", "a prompt, one answer and a good/bad label",
                                     columns=("prompt", "completion", "label"), packing=False),
}

METRICS = (
    MetricSpec("preference_accuracy", "share of pairs whose chosen answer the model finds likelier than the rejected",
               needs="model", shapes=("preference",)),
    MetricSpec("reward_margin", "mean log-probability of the chosen answer minus the rejected one (nats)",
               needs="model", shapes=("preference",)),
)

#: format name -> (spec, required fields, converter name in ftpref.formats)
FORMATS = {
    "preference": (FormatSpec("preference", "TRL preference: prompt, chosen, rejected (text or messages)",
                              columns=("prompt", "chosen", "rejected"), shape="preference", packing=False),
                   ("prompt", "chosen", "rejected"), "preference"),
    "preference_implicit": (FormatSpec("preference_implicit", "whole chosen/rejected texts or chats sharing the "
                                       "prompt as their beginning (Anthropic HH)", columns=("chosen", "rejected"),
                                       shape="preference", packing=False),
                            ("chosen", "rejected"), "implicit_preference"),
    "sharegpt_preference": (FormatSpec("sharegpt_preference", "LLaMA-Factory: sharegpt conversations plus chosen and "
                                       "rejected turns", columns=("conversations", "chosen", "rejected"),
                                       shape="preference", packing=False),
                            ("conversations", "chosen", "rejected"), "sharegpt_preference"),
    "unpaired": (FormatSpec("unpaired", "TRL unpaired preference (KTO): prompt, completion, label",
                            columns=("prompt", "completion", "label"), shape="unpaired_preference", packing=False),
                 ("prompt", "completion", "label"), "unpaired"),
    "messages_unpaired": (FormatSpec("messages_unpaired", "LLaMA-Factory KTO: messages ending in the judged answer, "
                                     "label", columns=("messages", "label"), shape="unpaired_preference", packing=False),
                          ("messages", "label"), "messages_unpaired"),
}

_PAIRED = ("preference",)
METHODS = {
    "dpo": MethodSpec("dpo", "Direct Preference Optimization (options: base, beta, loss_type, LoRA's)",
                      options=DpoOptions, shapes=_PAIRED),
    "orpo": MethodSpec("orpo", "Odds Ratio Preference Optimization: SFT plus odds-ratio term, no reference "
                       "(options: base, beta, LoRA's)", options=OrpoOptions, shapes=_PAIRED),
    "simpo": MethodSpec("simpo", "SimPO: length-normalised, reference-free (options: base, beta, gamma, LoRA's)",
                        options=SimpoOptions, shapes=_PAIRED),
    "kto": MethodSpec("kto", "Kahneman-Tversky Optimization on good/bad answers (options: base, beta, "
                      "desirable_weight, undesirable_weight, LoRA's)", options=KtoOptions,
                      shapes=("unpaired_preference",)),
}


@hookimpl
def register_shapes() -> list[ShapeSpec]:
    return list(SHAPES.values())


@hookimpl
def register_dataset_formats() -> list[FormatSpec]:
    return [spec for spec, _, _ in FORMATS.values()]


@hookimpl
def register_methods() -> list[MethodSpec]:
    return list(METHODS.values())


@hookimpl
def register_metrics() -> list[MetricSpec]:
    return list(METRICS)


@hookimpl
def compute_metric(name: str, context: dict[str, Any]) -> Any:
    """Preference accuracy and reward margin of the model in ``context`` on its preference pairs."""
    from ftpref.metrics import compute

    return compute(name, context)


@hookimpl(specname="load_dataset")
def load_preference_dataset(source: Any) -> Any:
    """Map records of one of ftpref's formats into preference examples (errors name file, line and field)."""
    from ftcore import map_records
    from ftpref import formats

    _, fields, converter = FORMATS[source.format]
    return map_records(source, fields, getattr(formats, converter))


@hookimpl
def encode_examples(shape: str, examples: Any, tokenizer: Any, settings: Any) -> Any:
    """Render conversations with the run's chat template into the text columns TRL's trainers tokenize."""
    from ftpref.encode import encode_preference

    return encode_preference(examples, shape, tokenizer, settings)


@hookimpl
def model_load_kwargs(method: str, config: Any, options: Any) -> dict[str, Any]:
    """A 4-bit base for ``base: qlora`` (ftqlora's loading)."""
    from ftqlora.choice import load_kwargs

    return load_kwargs(options or METHODS[method].options(), config)


@hookimpl
def setup_peft(model: Any, method: str, config: Any, options: Any) -> Any:
    """Freeze the base for an adapter (the trainer attaches LoRA), or let every weight train."""
    from ftqlora.choice import prepare_base

    return prepare_base(model, options or METHODS[method].options(), config)


@hookimpl
def make_trainer(model: Any, tokenizer: Any, args: Any, train_dataset: Any, eval_dataset: Any, callbacks: list[Any],
                 method: str, config: Any, options: Any) -> Any:
    """TRL's trainer for the method."""
    from ftpref.trainers import build_trainer

    return build_trainer(method, model, tokenizer, args, train_dataset, eval_dataset, callbacks, config,
                         options or METHODS[method].options())


@hookimpl
def merge_adapter(model: Any, path: Path, options: Any) -> Any:
    """Fold the adapter in: LoRA's merge, or QLoRA's (dequantize first) for ``base: qlora``."""
    from ftqlora.choice import merge

    return merge(model, path, options)


@hookimpl
def memory_profile(shape: Any, setup: Any) -> Any:
    """The adapter on a plain or quantized base (ftqlora's numbers); ftcore's own for ``base: full``."""
    from ftqlora.memory import qlora_memory

    return qlora_memory(shape, setup)
