"""The training-curve picture of a run: ``loss.png`` in every run directory, and the loss panel of ``report.png``.

The curves come from the Trainer's log history (``metrics.jsonl``): train and eval loss on one panel and,
when the method logged them, its reward or preference metrics on a second one: the mean reward of a method
that learns from rewards (GRPO's ``reward``), and the reward margin and accuracy of preference methods
(``rewards/margins``, ``rewards/accuracies`` as TRL's DPO-family trainers log them), with their eval values.
matplotlib is imported inside the functions, and a bare ``Figure`` is drawn (Agg), so pyplot's global
state is never touched.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: File name of the training-curve picture in a run directory.
LOSS_CURVE = "loss.png"

#: Logged keys shown on the second panel, with their labels, when a run logged them.
METHOD_CURVES = {
    "reward": "mean reward",
    "rewards/margins": "reward margin",
    "rewards/accuracies": "preference accuracy",
}


def series(history: list[dict[str, Any]], key: str) -> list[tuple[float, float]]:
    """``(step, value)`` of every logged row that has a numeric ``key``."""
    return [(row["step"], row[key]) for row in history
            if "step" in row and isinstance(row.get(key), (int, float)) and not isinstance(row.get(key), bool)]


def method_curves(history: list[dict[str, Any]]) -> dict[str, list[tuple[float, float]]]:
    """The reward and preference series a run logged (train and eval), labelled; empty for plain SFT."""
    found = {}
    for key, label in METHOD_CURVES.items():
        for prefix, kind in (("", "train"), ("eval_", "eval")):
            points = series(history, prefix + key)
            if points:
                found[f"{kind} {label}"] = points
    return found


def plot_loss(axes: Any, history: list[dict[str, Any]]) -> None:
    """Train loss (line) and eval loss (dots) against the optimizer step on ``axes``."""
    train, evals = series(history, "loss"), series(history, "eval_loss")
    if train:
        axes.plot(*zip(*train, strict=True), label="train loss", color="#2f7ed8")
    if evals:
        axes.plot(*zip(*evals, strict=True), "o--", label="eval loss", color="#d8572f")
    if train or evals:
        axes.legend(loc="upper right")
    else:
        axes.text(0.5, 0.5, "no loss logged (metrics.jsonl)", ha="center", va="center", transform=axes.transAxes)
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.set_title("training loss")
    axes.grid(alpha=0.3)


def plot_method_curves(axes: Any, curves: dict[str, list[tuple[float, float]]]) -> None:
    """The method's reward / preference series on ``axes``."""
    for label, points in curves.items():
        axes.plot(*zip(*points, strict=True), "o--" if label.startswith("eval") else "-", label=label)
    axes.legend(loc="best", fontsize=8)
    axes.set_xlabel("step")
    axes.set_title("rewards and preferences")
    axes.grid(alpha=0.3)


def write_loss_curve(history: list[dict[str, Any]], path: str | Path, title: str | None = None) -> Path:
    """Draw the run's curves into the PNG ``path``: loss, and the method's metrics beside it when it logged any."""
    from matplotlib.figure import Figure

    curves = method_curves(history)
    figure = Figure(figsize=(11.0 if curves else 7.0, 4.2), layout="constrained")
    panels = figure.subplots(1, 2 if curves else 1, squeeze=False)[0]
    plot_loss(panels[0], history)
    if curves:
        plot_method_curves(panels[1], curves)
    if title:
        figure.suptitle(title)
    figure.savefig(path, dpi=100, format="png")
    return Path(path)
