"""The guard around ``trainer.train()``: interruption, non-finite losses, and resuming the right checkpoint.

- :class:`TrainingGuard` wraps ``trainer.train()``: SIGINT/SIGTERM make the Trainer save a checkpoint at the
  end of the current optimizer step and stop (the caller then raises :class:`Interrupted`), and a NaN/inf
  training loss either stops the run with a :class:`~ftcore.errors.TrainingError` naming the step
  (``training.nan_policy: stop``) or drops that step's update (``skip``).
- :func:`check_resume_matches` refuses a checkpoint whose tensors do not fit the model (another base, other
  method options), comparing with the shapes the method's plugin says it saves (``trained_tensor_shapes``).

Nothing heavy is imported at module level.
"""

from __future__ import annotations

import logging
import math
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftcore.errors import ModelError, TrainingError

if TYPE_CHECKING:
    from ftcore.artifacts.rundir import RunPlan
    from ftcore.config.schema import FtConfig

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- resume


def check_resume_matches(checkpoint: Path, model: Any, method: str | None = None) -> None:
    """Raise :class:`ModelError` when ``checkpoint``'s saved tensors do not fit ``model``'s shapes.

    Without this, resuming a checkpoint of another base model fails deep inside the Trainer with a
    page of ``size mismatch`` lines. The expected shapes are those the plugin of ``method`` says its
    checkpoints hold (an adapter's), else the model's whole state dict.
    """
    from safetensors import safe_open

    adapter = checkpoint / "adapter_model.safetensors"
    weights = adapter if adapter.is_file() else checkpoint / "model.safetensors"
    if not weights.is_file():
        return
    expected = _expected_shapes(model, method)
    with safe_open(str(weights), framework="pt") as handle:
        for name in handle.keys():  # noqa: SIM118 (safe_open is not a mapping)
            shape = list(handle.get_slice(name).get_shape())
            want = expected.get(name)
            if want is not None and want != shape:
                base = _checkpoint_base(checkpoint)
                raise ModelError(
                    f"checkpoint {checkpoint} does not match the model: {name} has shape {shape} there but "
                    f"{want} in the model{f'; it was trained on {base}' if base else ''}; resume with the same "
                    "model and method options"
                )


def unsafe_checkpoint(exc: BaseException, plan: RunPlan) -> ModelError | None:
    """One line for a resumed checkpoint whose pickled state (``optimizer.pt``, ``scheduler.pt``, ``rng_state.pth``)
    holds more than tensors, which torch's safe loader refused; None for any other error.

    torch's own message advises its unsafe loader (``weights_only=False``), which ft never passes on.
    """
    import pickle

    if plan.resume_from is None or not (isinstance(exc, pickle.UnpicklingError) or "Weights only load failed" in str(exc)):
        return None
    checkpoint = plan.resume_from
    if plan.adopt and not checkpoint.exists():  # the run was given back to its place when the resume failed
        checkpoint = plan.output / checkpoint.relative_to(plan.staging)
    files = ", ".join(sorted(p.name for p in checkpoint.glob("*") if p.suffix in (".pt", ".pth", ".bin")))
    return ModelError(f"--resume: a state file of {checkpoint} ({files}) holds pickled objects beyond tensors, "
                      "which ft refuses to load (it could run code); resume from a checkpoint this run wrote itself, "
                      "or start again without --resume")


def _expected_shapes(model: Any, method: str | None) -> dict[str, list[int]]:
    """``{name: shape}`` as the method's checkpoint files name them (its plugin's answer, else the state dict)."""
    shapes = None
    if method is not None:
        from ftcore.contract.plugins import get_registry

        shapes = get_registry().call("trained_tensor_shapes", "method", method, model=model, method=method)
    if shapes is None:
        shapes = {name: list(tensor.shape) for name, tensor in model.state_dict().items()}
    return {name: list(shape) for name, shape in shapes.items()}


def _checkpoint_base(checkpoint: Path) -> str | None:
    import json

    try:
        return json.loads((checkpoint / "adapter_config.json").read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (OSError, ValueError):
        return None


# ----------------------------------------------------------------------------- interruption and NaN


class Interrupted(TrainingError):
    """Training was stopped by a signal after saving a checkpoint; ``--resume`` continues it."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        # The shell convention for "ended by signal N".
        self.exit_code = 128 + signum


class TrainingGuard:
    """Signal handling and the non-finite-loss check for one ``trainer.train()`` call.

    Use as a context manager around ``trainer.train()``; afterwards :attr:`signal` is the signal that
    stopped training (or None) and :attr:`skipped` the steps whose update was dropped.
    """

    def __init__(self, trainer: Any, config: FtConfig) -> None:
        self.trainer = trainer
        self.policy = config.training.nan_policy
        self.signal: int | None = None
        self.skipped: list[int] = []
        self.step = 0
        self._bad_step: int | None = None
        self._previous: dict[int, Any] = {}
        self._hook: Any = None
        trainer.add_callback(_guard_callback(self))

    # -- context manager
    def __enter__(self) -> TrainingGuard:
        model = getattr(self.trainer, "model", None)
        if model is not None:
            self._hook = model.register_forward_hook(self._check_loss)
        if _main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._on_signal)
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
        if self._hook is not None:
            self._hook.remove()

    # -- signals
    def _on_signal(self, signum: int, _frame: Any) -> None:
        if self.signal is not None:
            # A second signal: the user does not want to wait for the checkpoint.
            self.__exit__()
            raise KeyboardInterrupt
        self.signal = signum
        if os.environ.get("RANK", "0") == "0":  # every rank gets the signal and stops alike; rank 0 says so once
            log.warning("%s received: saving a checkpoint at the end of this step, then stopping "
                        "(send it again to stop at once, without a checkpoint)", signal.Signals(signum).name)

    def interruption(self, plan: RunPlan) -> Interrupted:
        """The error to raise after an interrupted ``train()`` (checkpoint saved in ``plan.staging``)."""
        from ftcore.artifacts.rundir import latest_checkpoint

        assert self.signal is not None
        checkpoint = latest_checkpoint(plan.checkpoints)
        name = signal.Signals(self.signal).name
        return Interrupted(
            f"training interrupted by {name} at step {self.trainer.state.global_step}; checkpoint saved in "
            f"{checkpoint or plan.checkpoints}; to continue, run the same ft train command with --resume "
            f"(same config and output directory {plan.output})",
            self.signal,
        )

    # -- non-finite loss
    def _check_loss(self, module: Any, _args: Any, output: Any) -> None:
        loss = getattr(output, "loss", None)
        if loss is None or not module.training:
            return
        value = float(loss.detach().float().sum())
        if math.isfinite(value):
            return
        if self.policy == "stop":
            raise TrainingError(
                f"training loss is {value} at step {self.step}: the run diverged or a batch is broken; lower "
                "training.learning_rate, check the data, or set training.nan_policy: skip to skip such steps"
            )
        self._bad_step = self.step

    def skip_update(self, model: Any, state: Any) -> None:
        """Drop every gradient of a step that saw a non-finite loss, so the optimizer leaves weights as they are."""
        if self._bad_step != self.step:
            return
        for param in model.parameters():
            param.grad = None
        self.skipped.append(self.step)
        state.log_history.append({"step": self.step, "nonfinite_loss": True, "update_skipped": True})
        log.warning("step %d: non-finite training loss; this step's update was skipped (training.nan_policy: skip)",
                    self.step)


class _Terminated(BaseException):
    """Raised by :class:`TerminateGuard`'s handler (which records the signal); turned into :class:`Interrupted`
    when the guard exits."""


class TerminateGuard:
    """SIGTERM outside the training loop (loading, preparing data, writing outputs) becomes :class:`Interrupted`.

    Python's default for SIGTERM ends the process at once: no message, no clean-up, an empty staging
    directory left behind. Raising instead lets the run clean up as after any failure and print one line.
    :class:`TrainingGuard` takes over while ``trainer.train()`` runs and hands back afterwards.
    :attr:`phase` and :attr:`plan` say what the message tells the user; setting :attr:`phase` (the run moving on)
    raises :class:`Interrupted` when a signal came and something on the way swallowed its exception.
    """

    def __init__(self) -> None:
        self._phase = "before training started"
        self.plan: RunPlan | None = None
        #: The signal received, if any. A library may catch the exception the handler raised and raise its own
        #: (transformers' lazy imports turn it into "Could not import module ..."), or swallow it (an exception
        #: raised inside a ``__del__`` is only printed): the run was still interrupted.
        self.received: int | None = None
        self._previous: Any = None

    @property
    def phase(self) -> str:
        return self._phase

    @phase.setter
    def phase(self, phase: str) -> None:
        if self.received is not None:
            raise Interrupted(self.message(self.received), self.received)
        self._phase = phase

    def __enter__(self) -> TerminateGuard:
        if _main_thread():
            # torch's import runs C++ (``torch._C._c10d_init``) that lets a Python exception out as a C++ one; an
            # exception raised by a signal handler there (this guard's, or Ctrl-C's KeyboardInterrupt) aborts the
            # process ("Rust cannot catch foreign exceptions" when safetensors imported torch). So torch is
            # imported first, with both signals at their default: they end the process at once, and nothing is
            # there yet to clean up.
            interrupt = signal.getsignal(signal.SIGINT)
            if interrupt is signal.default_int_handler:
                signal.signal(signal.SIGINT, signal.SIG_DFL)
            try:
                import torch  # noqa: F401
            finally:
                signal.signal(signal.SIGINT, interrupt)
            self._previous = signal.signal(signal.SIGTERM, self._on_signal)
        return self

    def __exit__(self, kind: Any, error: Any, _tb: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None
        # The handler's own exception, or whatever a library made of it.
        if error is not None and self.received is not None and not isinstance(error, Interrupted):
            raise Interrupted(self.message(self.received), self.received) from None

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.received = signum
        # A BaseException, like KeyboardInterrupt, so that no ``except Exception`` on the way swallows it.
        raise _Terminated(signum)

    def message(self, signum: int) -> str:
        """What was interrupted and what ``--resume`` (or running again) will do."""
        from ftcore.artifacts.rundir import latest_checkpoint

        name = signal.Signals(signum).name
        checkpoint = latest_checkpoint(self.plan.checkpoints) if self.plan is not None else None
        if checkpoint is None:
            return f"interrupted by {name} {self.phase}; nothing was saved; run the same ft train command again"
        return (f"interrupted by {name} {self.phase}; checkpoint saved in {checkpoint}; to continue, run the same "
                f"ft train command with --resume")


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _guard_callback(guard: TrainingGuard) -> Any:
    """A ``TrainerCallback`` that tracks the step and acts on the guard's flags at step boundaries."""
    from transformers import TrainerCallback

    class FtGuardCallback(TrainerCallback):
        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            guard.step = state.global_step + 1

        def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
            if model is not None:
                guard.skip_update(model, state)

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if guard.signal is not None:
                # Log, save and stop at this optimizer-step boundary: the checkpoint is consistent.
                control.should_log = True
                control.should_save = True
                control.should_training_stop = True
            return control

    return FtGuardCallback()
