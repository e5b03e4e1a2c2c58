"""The state of one training run, handed from step to step of :func:`ftcore.jobs.train.run_training`.

The steps that build the trainer (:mod:`ftcore.run.trainer`) and write the outputs (:mod:`ftcore.run.outputs`,
:mod:`ftcore.run.manifest`) read it; only the orchestration fills it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ftcore.artifacts.rundir import RunPlan
    from ftcore.config.schema import FtConfig


@dataclass
class RunState:
    """The pieces of one run, passed between the steps below."""

    config: FtConfig
    spec: Any
    options: Any
    plan: RunPlan
    started: float
    model: Any = None
    tokenizer: Any = None
    data: Any = None
    params: tuple[int, int] = (0, 0)
    train_metrics: dict[str, Any] = field(default_factory=dict)
    progress: Any = None
    #: ``{key: [old, new]}`` of a resumed run whose config or data changed (allowed ones only).
    config_changes: dict[str, list[Any]] = field(default_factory=dict)
    allow_config_change: bool = False
    #: The floating dtype the base's weights loaded in, and the one a sharded (FSDP, ZeRO-3) model was saved in.
    load_dtype: str | None = None
    saved_dtype: str | None = None
    #: Ids of the tokens this run added to the vocabulary (``added_tokens``, new ``special_tokens``).
    added_token_ids: list[int] = field(default_factory=list)
    #: Where the base model came from (:func:`ftcore.artifacts.provenance.base_provenance`), found once at the end.
    provenance: dict[str, Any] | None = None
    #: The token budget of one pass and why (:func:`ftcore.run.preflight.choose_passes`).
    passes: Any = None
