"""The examples of docs/reference/hooks.md: one plugin module, ``ftdpolora``, implementing every hook.

``ftdpolora`` would provide the data shape ``answer_pair`` (a prompt with a chosen and a rejected answer), the
format ``pairs`` that reads it, the method ``dpo-lora`` (DPO with TRL's trainer on a LoRA adapter, built on the
``ftlora`` distribution, which it declares as a dependency), the metric ``length_ratio`` and the reward
``brevity`` (for methods that learn from rewards, such as ftrl's ``grpo``), and a config importer ``pairtool``.

``docs/gen_reference.py`` copies the code below into the reference, each implementation under its hook, after
registering this module with a plugin manager that holds ftcore's hookspecs: an implementation that names an
argument its hook does not offer makes the generation fail. ft itself never imports this file.

ftcore calls each work hook only on the plugin that registered the name concerned, so no implementation checks the
method, format, shape, metric or reward name. (A real LoRA-based method would import ``load_adapter``,
``merge_adapter``, ``trained_tensor_shapes`` and ``memory_profile`` ready-made from ``ftlora.kit``; they are
written out here to show each hook.)
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

from ftlora import LoraOptions
from pydantic import Field

from ftcore import (
    ConfigError,
    FormatSpec,
    ImportedConfig,
    ImporterSpec,
    ImportRow,
    MemoryProfile,
    MethodSpec,
    MetricResult,
    MetricSpec,
    RewardSpec,
    ShapeSpec,
    hookimpl,
)

FTCORE_PLUGIN_API = 3  # uses register_config_importers, memory_profile (plugin API 3); register_shapes, encode_examples... (API 2)
METHOD = "dpo-lora"


class DpoLoraOptions(LoraOptions):
    """``method_options`` of ``dpo-lora``: LoRA's (r, alpha, target_modules...) plus DPO's."""

    beta: float = Field(0.1, gt=0, description="How strongly the tuned model is held to the reference model.")
    attention: Literal["sdpa", "eager", "flash_attention_2"] | None = Field(
        None, description="Attention kernel of the base model; None keeps the model's default."
    )


@hookimpl
def register_methods() -> list[MethodSpec]:
    return [MethodSpec(METHOD, "DPO (TRL) on a LoRA adapter; options: LoRA's plus beta, attention",
                       options=DpoLoraOptions, output="adapter", shapes=("answer_pair",))]


@hookimpl
def register_dataset_formats() -> list[FormatSpec]:
    return [FormatSpec("pairs", "question, good and bad answer (strings)", columns=("question", "good", "bad"),
                       shape="answer_pair", packing=False)]


@hookimpl
def register_metrics() -> list[MetricSpec]:
    return [MetricSpec("length_ratio", "words in the prediction per word of the reference", higher_is_better=False)]


@hookimpl
def register_shapes() -> list[ShapeSpec]:
    return [ShapeSpec("answer_pair", "a prompt with a chosen and a rejected answer",
                      columns=("prompt", "chosen", "rejected"), packing=False)]


@hookimpl
def model_load_kwargs(options: DpoLoraOptions) -> dict[str, Any] | None:
    if options.attention is None:
        return None  # nothing to add to from_pretrained
    if options.attention == "flash_attention_2":
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("method_options.attention: flash_attention_2 needs a CUDA GPU")
    return {"attn_implementation": options.attention}


@hookimpl
def setup_peft(model: Any, config: Any, options: DpoLoraOptions) -> Any:
    from ftlora import attach_lora

    return attach_lora(model, options, config)  # only the adapter trains; gradient checkpointing as configured


@hookimpl
def make_trainer(model: Any, tokenizer: Any, args: Any, train_dataset: Any, eval_dataset: Any,
                 callbacks: list[Any], options: DpoLoraOptions) -> Any:
    from transformers import TrainingArguments
    from trl import DPOConfig, DPOTrainer

    # Every setting ftcore derived from the config (steps, learning rate, precision, checkpoints, distributed).
    fields = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainingArguments) if f.init}
    # With a LoRA model and no ref_model, TRL uses the base (adapter disabled) as the reference model.
    return DPOTrainer(model=model, args=DPOConfig(**fields, beta=options.beta), train_dataset=train_dataset,
                      eval_dataset=eval_dataset, processing_class=tokenizer, callbacks=callbacks)


@hookimpl
def load_adapter(model: Any, path: Path) -> Any:
    from ftlora import load_lora

    return load_lora(model, path)


@hookimpl
def merge_adapter(model: Any, path: Path) -> Any:
    from ftlora import merge_lora

    return merge_lora(model, path)


@hookimpl
def trained_tensor_shapes(model: Any) -> dict[str, list[int]] | None:
    from ftlora import lora_tensor_shapes

    return lora_tensor_shapes(model)


@hookimpl
def memory_profile(shape: Any, setup: Any) -> MemoryProfile | None:
    if setup.rank is None:
        return None  # every weight trains: ftcore counts full fine-tuning itself
    # LoRA's rank x (in + out) parameters on every Linear of the decoder blocks (ftlora.lora_memory does the same).
    return MemoryProfile(trained=setup.rank * shape.linear_in_out)


@hookimpl(specname="load_dataset")  # not `def load_dataset`: the name would shadow datasets.load_dataset
def load_pairs(source: Any) -> Any:
    from ftcore import get_str, map_records

    # map_records applies the user's data.columns, checks the shape's columns, and names file:line on errors.
    return map_records(source, ("question", "good", "bad"), lambda record: {
        "prompt": get_str(record, "question"), "chosen": get_str(record, "good"), "rejected": get_str(record, "bad"),
    })


@hookimpl
def encode_examples(examples: Any, tokenizer: Any, settings: Any) -> Any:
    from ftcore import render_chat, with_system_prompt

    def render(example: dict[str, str]) -> dict[str, str]:
        turns = with_system_prompt([{"role": "user", "content": example["prompt"]}], settings.system_prompt)
        # The run's chat template (data.chat_template, else the tokenizer's, else ChatML), as ftcore renders chats.
        prompt = render_chat(turns, tokenizer, settings.template, generation_prompt=True)
        return {"prompt": prompt, "chosen": example["chosen"], "rejected": example["rejected"]}

    # The columns TRL's DPOTrainer reads; it tokenizes them itself.
    return examples.map(render, remove_columns=examples.column_names)


@hookimpl
def compute_metric(predictions: list[str], references: list[str]) -> MetricResult:
    ratios = [len(p.split()) / max(len(r.split()), 1) for p, r in zip(predictions, references, strict=True)]
    return MetricResult({"length_ratio": sum(ratios) / max(len(ratios), 1)}, details={"unit": "words"})


@hookimpl
def register_rewards() -> list[RewardSpec]:
    return [RewardSpec("brevity", "1 for a completion of at most 20 words, less for longer ones")]


@hookimpl
def register_config_importers() -> list[ImporterSpec]:
    def convert(source: dict[str, Any], base_dir: Path) -> ImportedConfig:
        """A made-up tool's ``{base: MODEL, pairs: FILE}`` as a dpo-lora run, one row per source key."""
        config = {"model": source.get("base"), "method": METHOD, "data": {"train": source.get("pairs"), "format": "pairs"}}
        rows = [ImportRow(key, "mapped", {"base": "model", "pairs": "data.train"}[key]) if key in ("base", "pairs")
                else ImportRow(key, "unsupported", note="not a pairtool key dpo-lora knows") for key in source]
        return ImportedConfig(config, rows)

    return [ImporterSpec("pairtool", "pairtool's YAML (base, pairs) as a dpo-lora run", convert, frozenset({"pairs"}))]


@hookimpl
def setup_reward(options: Any, context: Any) -> Any:
    """Once per run: what scoring needs (a reward model would load here, on ``context.device``)."""
    return {"limit": 20, "tokenizer": context.tokenizer}


@hookimpl
def compute_reward(completions: list[str], state: Any) -> list[float]:
    return [min(1.0, state["limit"] / max(len(c.split()), 1)) for c in completions]


@hookimpl
def teardown_reward(state: Any) -> None:
    if state:
        state.clear()
