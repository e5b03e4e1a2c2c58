"""The progress of a training run: a bar with loss and tokens/s, or log lines when not on a terminal."""

from __future__ import annotations

import logging
import time
from typing import Any

log = logging.getLogger(__name__)


def progress_callback() -> Any:
    """A ``TrainerCallback`` showing a progress bar with loss and tokens/s (log lines when not on a terminal)."""
    from transformers import TrainerCallback

    class FtProgressCallback(_ProgressMixin, TrainerCallback):
        pass

    return FtProgressCallback()


#: Logged numbers shown on the console (key in the trainer's logs -> name shown).
CONSOLE_KEYS = {"loss": "loss", "eval_loss": "eval_loss", "reward": "reward", "rewards/accuracies": "reward_acc",
                "rewards/margins": "margin"}


class _ProgressMixin:
    bar: Any = None
    start_time: float = 0.0
    start_tokens: int = 0

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        import sys

        from tqdm.auto import tqdm

        if not state.is_world_process_zero:
            return
        self.start_time, self.start_tokens = time.time(), state.num_input_tokens_seen
        self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc="training", unit="step",
                        disable=not sys.stderr.isatty(), dynamic_ncols=True)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def tokens_per_second(self, state: Any) -> float:
        elapsed = time.time() - self.start_time
        return (state.num_input_tokens_seen - self.start_tokens) / elapsed if elapsed > 0 else 0.0

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if self.bar is None or not logs:
            return
        # Each method's key numbers beside its loss: GRPO's mean reward, a preference method's reward accuracy and
        # margin (the share of pairs whose chosen answer it rewards more, and by how much).
        shown = {name: logs[k] for k, name in CONSOLE_KEYS.items() if k in logs}
        if not shown:
            return
        shown["tok/s"] = self.tokens_per_second(state)
        text = {k: f"{v:.4g}" for k, v in shown.items()}
        if self.bar.disable:
            log.info("step %d/%d %s", state.global_step, state.max_steps, " ".join(f"{k} {v}" for k, v in text.items()))
        else:
            self.bar.set_postfix(text, refresh=False)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.close()
