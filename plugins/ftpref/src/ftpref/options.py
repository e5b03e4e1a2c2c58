"""``method_options`` of the preference methods: what trains (a LoRA adapter, LoRA on a 4-bit base, or every
weight), the LoRA/QLoRA settings, and each method's own loss settings."""

from __future__ import annotations

from typing import Literal

from ftqlora.choice import BaseChoiceOptions
from pydantic import BaseModel, ConfigDict, Field

#: The DPO losses TRL's ``DPOTrainer`` computes (checked against the installed TRL by the tests), so that a
#: misspelt one fails at ``ft config validate`` rather than after the model loads.
DpoLoss = Literal["sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
                  "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm"]


class PreferenceOptions(BaseChoiceOptions):
    """Options every preference method takes: ``base`` (a LoRA adapter, LoRA on a 4-bit base, or every weight;
    the reference of dpo/kto is the base with the adapter off, or log-probabilities computed once before training
    for full weights) plus the LoRA (and 4-bit) settings of the adapter and ``beta``."""

    beta: float = Field(0.1, gt=0, description="Strength of the preference loss (see each method).")

    @property
    def sequences_per_example(self) -> int:
        """Chosen and rejected (KTO: the answer and its KL counterpart) go through the model together."""
        return 2

    @property
    def reference_pass(self) -> bool:
        """Whether each step runs the reference without gradients: only DPO and KTO on an adapter."""
        return False


class DpoOptions(PreferenceOptions):
    """DPO: ``beta`` keeps the policy near the reference (higher: closer)."""

    loss_type: DpoLoss = Field("sigmoid", description="TRL's DPO loss (sigmoid: DPO itself; robust uses "
                               "label_smoothing).")
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="Assumed share of flipped labels (robust DPO).")

    @property
    def reference_pass(self) -> bool:
        """The base with the adapter off runs each step (full weights: its log-probabilities are precomputed)."""
        return self.base != "full"


class OrpoOptions(PreferenceOptions):
    """ORPO: supervised loss on the chosen answer plus ``beta`` times the odds-ratio term; no reference model."""


class SimpoOptions(PreferenceOptions):
    """SimPO: length-normalised, reference-free; ``beta`` scales the reward, ``gamma`` is the target margin."""

    beta: float = Field(2.0, gt=0, description="Reward scale (SimPO's beta).")
    gamma: float = Field(0.5, ge=0, description="Target reward margin between chosen and rejected.")


class KtoOptions(PreferenceOptions):
    """KTO: unpaired good/bad answers; the weights balance the two kinds."""

    desirable_weight: float = Field(1.0, gt=0, description="Weight of the loss on good answers.")
    undesirable_weight: float = Field(1.0, gt=0, description="Weight of the loss on bad answers.")

    @property
    def reference_pass(self) -> bool:
        """The base with the adapter off runs each step (full weights: its log-probabilities are precomputed)."""
        return self.base != "full"


class RmOptions(BaseModel):
    """Options of ``rm``: a reward model (a scalar head on the base, every weight trained) on preference pairs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    center_rewards_coefficient: float = Field(
        0.0, ge=0, description="Weight of a penalty on the squared scores, keeping them centred on 0 (0: none).")

    @property
    def sequences_per_example(self) -> int:
        """Chosen and rejected go through the model together."""
        return 2
