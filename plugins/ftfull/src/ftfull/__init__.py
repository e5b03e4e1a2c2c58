"""ftfull: the ``full`` method for ft — every weight of the model trains and is saved.

Options freeze the embeddings or the first N decoder layers, for memory or to keep early features.
The entry module imports nothing heavy.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ftcore import MethodSpec, hookimpl

__version__ = "0.1.0"

#: Needs plugin API 2 (MethodSpec.adapter_rank_option and recommend).
FTCORE_PLUGIN_API = 2


class FullOptions(BaseModel):
    """Options of the ``full`` method."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    freeze_embeddings: bool = Field(False, description="Keep the input embeddings (and a tied output head) fixed.")
    freeze_layers: int = Field(0, ge=0, description="Keep the first N decoder layers fixed.")


METHOD = MethodSpec(
    "full",
    "full fine-tuning: every parameter trains (options: freeze_embeddings, freeze_layers)",
    options=FullOptions,
    output="model",
    adapter_rank_option=None,
    recommend=30,
)


@hookimpl
def register_methods() -> list[MethodSpec]:
    return [METHOD]


@hookimpl
def setup_peft(model: Any, config: Any, options: FullOptions | None) -> Any:
    """Every parameter trains, except those the options freeze."""
    from ftfull.freeze import prepare_full

    return prepare_full(model, options or FullOptions(), config)
