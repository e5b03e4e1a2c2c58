"""Rewards of a run: each entry of a method's ``rewards:`` list validated by its reward's options model, and each
reward set up once per run (``setup_reward``), scored with its state (``compute_reward``) and torn down at the end
(``teardown_reward``). Methods that learn from rewards (ftrl's ``grpo``) use :class:`RewardEntry` in their options
and :class:`RunRewards` in their trainer. Imports pydantic only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator


class OptionsError(ValueError):
    """A nested options model's validation error, raised inside a validator so that
    :func:`ftcore.config.schema.format_errors` shows each of its keys under the entry's key, with did-you-mean."""

    def __init__(self, error: ValidationError, model: type[BaseModel]) -> None:
        super().__init__(str(error))
        self.error = error
        self.model = model


class RewardEntry(BaseModel):
    """One reward of a run: its registered ``name``, its ``weight`` and its own options (the other keys), validated
    by the reward's :attr:`~ftcore.RewardSpec.options` model."""

    model_config = ConfigDict(frozen=True, extra="allow")

    name: str = Field(description="A registered reward (ft plugins lists them).")
    weight: float = Field(1.0, description="Weight of this reward in the sum the method ranks completions by.")
    _validated: Any = PrivateAttr(default=None)

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        from ftcore.contract.plugins import get_registry
        from ftcore.errors import PluginError

        try:
            get_registry().reward(name)
        except PluginError as exc:  # lists the installed rewards, with did-you-mean
            raise ValueError(str(exc)) from None
        return name

    @model_validator(mode="after")
    def _validate_options(self) -> RewardEntry:
        from ftcore.contract.plugins import get_registry

        spec = get_registry().reward(self.name)
        if spec.options is None:
            if self.raw_options:
                raise ValueError(f"reward {self.name!r} takes no options, got {', '.join(self.raw_options)}")
            return self
        try:
            self._validated = spec.options.model_validate(self.raw_options)
        except ValidationError as exc:
            raise OptionsError(exc, spec.options) from None
        return self

    @property
    def options(self) -> Any:
        """The reward's options as its :attr:`~ftcore.RewardSpec.options` model validated them (defaults filled),
        or ``None`` for a reward that takes none."""
        return self._validated

    @property
    def raw_options(self) -> dict[str, Any]:
        """The reward's own keys as written: every key but name and weight."""
        return dict(self.model_extra or {})


@dataclass(frozen=True)
class RewardContext:
    """What :func:`~ftcore.contract.hookspecs.setup_reward` is told about the run.

    :param device: the ``torch.device`` the policy trains on (put a model the reward loads there).
    :param run_dir: the run's staging directory (files written there land with the run).
    :param tokenizer: the run's tokenizer (the policy's).
    :param config: the validated run config.
    """

    device: Any
    run_dir: Path
    tokenizer: Any
    config: Any


class RunRewards:
    """The rewards of one run, each set up once: :meth:`score` calls ``compute_reward`` with the entry's validated
    options and the state its ``setup_reward`` returned; :meth:`close` calls ``teardown_reward`` once each."""

    def __init__(self, entries: list[RewardEntry], context: RewardContext) -> None:
        from ftcore.contract.plugins import get_registry

        self.entries = list(entries)
        self.context = context
        self._registry = get_registry()
        self.states: list[Any] = []
        for entry in self.entries:
            self.states.append(self._registry.call("setup_reward", "reward", entry.name, name=entry.name,
                                                   options=entry.options, context=context))

    def score(self, index: int, prompts: list[str], completions: list[str], examples: list[dict[str, Any]]) -> Any:
        """What reward ``index`` answers for these completions (its plugin's ``compute_reward``), unchecked."""
        entry = self.entries[index]
        return self._registry.call("compute_reward", "reward", entry.name, name=entry.name, prompts=prompts,
                                   completions=completions, examples=examples, options=entry.options,
                                   state=self.states[index])

    def close(self) -> None:
        """Tear every reward down once (later calls do nothing), releasing what its setup loaded."""
        states, self.states = self.states, []
        for entry, state in zip(self.entries, states, strict=False):
            self._registry.call("teardown_reward", "reward", entry.name, name=entry.name, options=entry.options,
                                state=state)
