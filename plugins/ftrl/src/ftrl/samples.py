"""What GRPO's policy writes and whether a step could learn from it (imported only when a run starts).

Each reward function is wrapped to record the prompts, completions and scores it sees. At the end of each step
the recorded completions are grouped by prompt: a step in which every group's completions got the same total
reward has all advantages zero, so nothing to learn from (its loss and gradient are 0 when ``beta`` is 0); it is
warned about, and the end of the run says how many steps learned nothing. Every ``sample_every`` steps the
step's completions, with each reward and the weighted total, are appended to ``samples.jsonl`` in the run.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("ftrl")

#: Where the run being trained is built (set by the ``run_started`` hook; samples go there).
RUN_DIR: list[Path] = []
SAMPLES = "samples.jsonl"


def _text(value: Any) -> str:
    """A prompt or completion as text (conversational ones are lists of messages)."""
    if isinstance(value, str):
        return value
    return "".join(m.get("content") or "" for m in value if isinstance(m, dict)) if isinstance(value, list) else str(value)


class Recorder:
    """Collects what the reward functions see during one step."""

    def __init__(self, weights: dict[str, float]) -> None:
        self.weights = weights
        self.calls: dict[str, list[tuple[list[Any], list[Any], list[float]]]] = {name: [] for name in weights}

    def wrap(self, function: Any) -> Any:
        """``function`` (a TRL reward function) recording each call's prompts, completions and scores."""
        name = function.__name__

        def recorded(prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float]:
            scores = function(prompts, completions, **kwargs)
            self.calls[name].append((prompts, completions, scores))
            return scores

        recorded.__name__ = name
        return recorded

    def take(self) -> list[dict[str, Any]]:
        """The step's completions as rows (prompt, completion, each reward, weighted total); then forget them."""
        names = list(self.calls)
        batches = list(zip(*(self.calls[n] for n in names), strict=False))
        self.calls = {name: [] for name in names}
        rows = []
        for calls in batches:
            prompts, completions, _ = calls[0]
            for j, (prompt, completion) in enumerate(zip(prompts, completions, strict=True)):
                rewards = {name: calls[k][2][j] for k, name in enumerate(names)}
                total = sum(self.weights[n] * r for n, r in rewards.items() if r is not None)
                rows.append({"prompt": _text(prompt), "completion": _text(completion), "rewards": rewards,
                             "reward": total})
        return rows


def groups_without_variance(rows: list[dict[str, Any]]) -> tuple[int, int]:
    """``(groups whose completions all got the same total reward, groups)``, a group being one prompt's
    completions in the step."""
    groups: dict[str, list[float]] = {}
    for row in rows:
        groups.setdefault(row["prompt"], []).append(row["reward"])
    flat = sum(1 for rewards in groups.values() if max(rewards) - min(rewards) <= 1e-12)
    return flat, len(groups)


def samples_callback(recorder: Recorder, sample_every: int) -> Any:
    """A ``TrainerCallback``: the zero-variance warning and count, and ``samples.jsonl`` every ``sample_every``
    steps (0: never)."""
    from transformers import TrainerCallback

    class GrpoSamples(TrainerCallback):
        def __init__(self) -> None:
            self.flat_steps = 0
            self.steps = 0

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            rows = recorder.take()
            if not rows:  # the step reused earlier completions (num_iterations > 1)
                return
            self.steps += 1
            flat, groups = groups_without_variance(rows)
            if flat == groups:
                self.flat_steps += 1
                log.warning("grpo: step %d learned nothing: in each of its %d groups every completion got the same "
                            "reward (%.4g)", state.global_step, groups, rows[0]["reward"])
            if sample_every and state.global_step % sample_every == 0 and state.is_world_process_zero and RUN_DIR:
                with (RUN_DIR[-1] / SAMPLES).open("a", encoding="utf-8") as handle:
                    for row in rows:
                        handle.write(json.dumps({"step": state.global_step, **row}, ensure_ascii=False) + "\n")

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if not state.is_world_process_zero or not self.steps:
                return
            if self.flat_steps:
                log.warning("grpo: %d of %d steps learned nothing (every completion of each prompt got the same "
                            "reward); make the task easier for the model, the rewards finer-grained, or "
                            "num_generations or temperature higher", self.flat_steps, self.steps)
            else:
                log.info("grpo: every step had completions with different rewards to learn from")

    return GrpoSamples()
