"""ftlmeval: lm-eval-harness tasks scored by ``ft evaluate`` and ``ft benchmark`` on the model ft loaded.

The plugin registers one metric, ``lm_eval``, that brings its own examples (``MetricSpec.own_data``): ft loads the
model (a run's adapter applied, a merged model, or a base) and hands it over; lm-eval scores its tasks with it.
``lm_eval:<task>`` names a task of lm-eval (its data comes from the Hub) or a task ``.yaml`` file (offline with
local data). lm-eval is imported only when the metric is computed.
"""

from __future__ import annotations

from typing import Any

from ftcore import MetricSpec, hookimpl

METRIC = MetricSpec(
    "lm_eval",
    "lm-eval-harness tasks as lm_eval:<task or task.yaml> (no --data needed); options: tasks, include_path, "
    "num_fewshot, limit, batch_size, apply_chat_template",
    needs="model",
    own_data=True,
)


@hookimpl
def register_metrics() -> list[MetricSpec]:
    """The one metric, ``lm_eval`` (``lm_eval:<task>`` resolves to it)."""
    return [METRIC]


@hookimpl
def compute_metric(name: str, predictions: list[str], references: list[str], context: dict[str, Any]) -> Any:
    """Run the tasks named by ``name`` and the options with the model in ``context``: a :class:`ftcore.MetricResult`."""
    from ftlmeval.harness import evaluate_tasks

    return evaluate_tasks(name, context)
