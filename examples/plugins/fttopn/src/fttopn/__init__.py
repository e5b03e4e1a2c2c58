"""fttopn: train only the top N decoder layers (method ``topn``) and read Q&A records (format ``qa``).

Uses only ftcore's public API; heavy libraries are imported inside the hooks.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ftcore import DataError, FormatSpec, MethodSpec, hookimpl

__version__ = "0.1.0"

_LAYER = re.compile(r"\.layers\.(\d+)\.")


class TopNOptions(BaseModel):
    """Options of the ``topn`` method."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    layers: int = Field(1, ge=1, description="How many of the last decoder layers train.")
    train_head: bool = Field(True, description="Also train the output head (lm_head).")


@hookimpl
def register_methods() -> list[MethodSpec]:
    return [MethodSpec("topn", "train only the top N decoder layers (option: layers)", options=TopNOptions, output="model")]


@hookimpl
def register_dataset_formats() -> list[FormatSpec]:
    return [FormatSpec("qa", "question/answer records; loss on the answer", columns=("question", "answer"))]


@hookimpl
def setup_peft(model: Any, options: TopNOptions | None) -> Any:
    options = options or TopNOptions()
    depth = model.config.num_hidden_layers
    first_trained = max(0, depth - options.layers)
    for name, param in model.named_parameters():
        match = _LAYER.search(name)
        in_top = match is not None and int(match.group(1)) >= first_trained
        in_head = options.train_head and name.startswith("lm_head.")
        param.requires_grad_(in_top or in_head)
    return model


@hookimpl(specname="load_dataset")
def load_qa_dataset(source: Any) -> Any:
    from datasets import Dataset

    question = source.columns.get("question", "question")
    answer = source.columns.get("answer", "answer")
    rows = []
    for i, record in enumerate(source.records):
        for field in (question, answer):
            value = record.get(field)
            if not isinstance(value, str):
                problem = "is missing" if value is None else f"must be a string, got {type(value).__name__}"
                raise DataError(f"{source.where(i)}: field {field!r} {problem} (format 'qa')")
        rows.append({"prompt": record[question], "completion": record[answer]})
    return Dataset.from_list(rows)
