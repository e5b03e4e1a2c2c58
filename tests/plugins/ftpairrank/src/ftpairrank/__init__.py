"""ftpairrank: a plugin that is not ft's own, built only on ftcore's public contract.

It brings a data shape of its own (``ranked_pair``), a format that reads it, the shape's tokenization, and a
method with its own trainer: what a preference-tuning plugin needs, with no side channel. It also ships a
reward, ``few_words``, that any method learning from rewards (ftrl's ``grpo``) can name in its config. Nothing heavy is
imported here; torch, transformers and datasets load inside the hooks.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ftcore import FormatSpec, MethodSpec, RewardSpec, ShapeSpec, hookimpl, map_records

__version__ = "0.1.0"
FTCORE_PLUGIN_API = 2

FIELDS = ("query", "better", "worse")


class PairRankOptions(BaseModel):
    """``method_options`` of ``pairrank``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    beta: float = Field(1.0, gt=0, description="Sharpness of the pairwise logistic loss.")


@hookimpl
def register_shapes() -> list[ShapeSpec]:
    return [ShapeSpec("ranked_pair", "a query with a better and a worse answer", columns=FIELDS, packing=False)]


@hookimpl
def register_dataset_formats() -> list[FormatSpec]:
    return [FormatSpec("ranked", "query, better, worse (strings)", columns=FIELDS, shape="ranked_pair", packing=False)]


@hookimpl
def register_rewards() -> list[RewardSpec]:
    return [RewardSpec("few_words", "1 for an empty completion, 1/(1 + words) otherwise")]


@hookimpl
def compute_reward(completions: list[str]) -> list[float]:
    return [1.0 / (1 + len(completion.split())) for completion in completions]


@hookimpl
def register_methods() -> list[MethodSpec]:
    return [MethodSpec("pairrank", "rank the better answer above the worse one (full weights; option: beta)",
                       options=PairRankOptions, output="model", shapes=("ranked_pair",), adapter_rank_option=None)]


@hookimpl(specname="load_dataset")
def load_ranked(source: Any) -> Any:
    """Records of format ``ranked`` -> ``ranked_pair`` examples (errors name file, line and field); other
    columns of the records are kept for the trainer."""
    from ftcore import get_str

    return map_records(source, FIELDS, lambda record: {**record, **{name: get_str(record, name) for name in FIELDS}})


@hookimpl
def encode_examples(examples: Any, tokenizer: Any, settings: Any) -> Any:
    """Token ids of query+better and query+worse, with the query masked out of the labels."""
    from ftpairrank.encode import encode_pairs

    return encode_pairs(examples, tokenizer, settings.max_seq_len)


@hookimpl
def setup_peft(model: Any) -> Any:
    for param in model.parameters():
        param.requires_grad_(True)
    return model


@hookimpl
def make_trainer(model: Any, tokenizer: Any, args: Any, train_dataset: Any, eval_dataset: Any, callbacks: list[Any],
                 options: PairRankOptions) -> Any:
    from ftpairrank.trainer import PairRankTrainer, collate_pairs

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return PairRankTrainer(
        beta=options.beta, model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
        data_collator=lambda rows: collate_pairs(rows, pad), processing_class=tokenizer, callbacks=callbacks,
    )
