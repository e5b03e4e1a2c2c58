"""Run lm-eval-harness tasks with the model ft loaded and turn lm-eval's results into ft's scores.

ft hands the loaded model and tokenizer over in the metric's context (``needs="model"``); lm-eval's ``HFLM`` wraps
that object as it is (adapter applied or merged), so lm-eval never loads a model itself. Scores are named
``<task>/<metric>`` (``<task>/<metric>/<filter>`` for a filter other than lm-eval's ``none``).
"""

from __future__ import annotations

import contextlib
import difflib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ftcore import MetricResult, PluginError, UsageError

PREFIX = "lm_eval:"
OPTIONS = ("tasks", "include_path", "num_fewshot", "limit", "batch_size", "apply_chat_template")
INSTALL = "pip install ftlmeval (it brings lm-eval), or pip install 'lm-eval>=0.4.9,<0.5'"


def evaluate_tasks(name: str, context: dict[str, Any]) -> MetricResult:
    """Scores of the tasks that metric ``name`` and its options name, with lm-eval's details (versions, samples)."""
    options = dict(context.get("options") or {})
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise UsageError(f"metric {name!r}: unknown option {', '.join(unknown)} (options: {', '.join(OPTIONS)})")
    lm_eval = _import_lm_eval()
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    specs = task_specs(name, options)
    names = [spec for spec in specs if not _is_file(spec)]
    include = [str(Path(p).resolve()) for p in _as_list(options.get("include_path"))]
    # Indexing lm-eval's own thousands of task files takes seconds (a minute on a busy disk): only when a task
    # named is not a file and not in include_path.
    manager = TaskManager(include_path=include or None, include_defaults=False)
    if any(spec not in manager.all_tasks for spec in names):
        manager = TaskManager(include_path=include or None)
    for spec in names:
        check_task_name(spec, manager.all_tasks)
    with _quiet("lm_eval.models.huggingface"):  # its warnings that a loaded model is passed: ft means to
        model = HFLM(pretrained=context["model"], tokenizer=context["tokenizer"],
                     batch_size=int(options.get("batch_size") or context.get("batch_size") or 1))
    try:
        out = lm_eval.simple_evaluate(
            model=model, tasks=specs, task_manager=manager, num_fewshot=options.get("num_fewshot"),
            limit=options.get("limit"), apply_chat_template=bool(options.get("apply_chat_template", False)),
            log_samples=False,
        )
    except (OSError, ConnectionError) as error:  # the Hub unreachable, a data file missing
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise PluginError(f"metric {name!r}: lm-eval could not load a task's data ({first}); check the task's data "
                          "files, or, offline, use a task .yaml whose data is a local file") from None
    return MetricResult(scores(out["results"]), details(out))


def task_specs(name: str, options: dict[str, Any]) -> list[str]:
    """The tasks to run: the one in ``lm_eval:<task>`` and those of option ``tasks``; task files as absolute paths."""
    specs = ([name.removeprefix(PREFIX)] if name.startswith(PREFIX) else []) + _as_list(options.get("tasks"))
    if not specs:
        raise UsageError(f"metric {name!r} needs a task: write lm_eval:<task> (e.g. lm_eval:arc_easy) or "
                         "lm_eval:path/to/task.yaml")
    resolved = []
    for spec in specs:
        if _is_file(spec):
            path = Path(spec).expanduser().resolve()
            if not path.is_file():
                raise UsageError(f"metric {name!r}: task file not found: {spec}")
            spec = str(path)
        resolved.append(spec)
    return list(dict.fromkeys(resolved))


def check_task_name(task: str, known: list[str]) -> None:
    """Raise a one-line :class:`UsageError` with the closest names when lm-eval knows no task ``task``."""
    if task in known:
        return
    close = difflib.get_close_matches(task, known, n=3, cutoff=0.6)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise UsageError(f"lm_eval: unknown task {task!r}{hint}; `lm-eval ls tasks` lists lm-eval's tasks, or give a "
                     "task .yaml file (lm_eval:path/to/task.yaml)")


def scores(results: dict[str, dict[str, Any]]) -> dict[str, float]:
    """``{"<task>/<metric>[/<filter>]": value}`` of every metric lm-eval reports (its ``metric,filter`` keys), less
    the standard errors."""
    flat: dict[str, float] = {}
    for task, values in results.items():
        for key, value in values.items():
            metric, comma, filter_name = key.partition(",")  # a score is "metric,filter"; "sample_len" and the like are not
            if not comma or "_stderr" in metric or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            flat[score_name(task, metric, filter_name)] = float(value)
    return flat


def score_name(task: str, metric: str, filter_name: str) -> str:
    """``task/metric``, with ``/filter`` when the filter is not lm-eval's ``none``."""
    return f"{task}/{metric}" + (f"/{filter_name}" if filter_name and filter_name != "none" else "")


def details(out: dict[str, Any]) -> dict[str, Any]:
    """What ``eval.json`` records beside the scores: lm-eval's version, each task's version, shots, sample count,
    direction of each metric and standard errors."""
    import lm_eval

    tasks = {}
    for task, values in out["results"].items():
        stderr = {score_name(task, *key.replace("_stderr", "", 1).partition(",")[::2]): value
                  for key, value in values.items() if "_stderr" in key and isinstance(value, (int, float))}
        tasks[task] = {
            "version": out.get("versions", {}).get(task),
            "num_fewshot": out.get("n-shot", {}).get(task),
            "samples": out.get("n-samples", {}).get(task),
            "higher_is_better": out.get("higher_is_better", {}).get(task),
            "stderr": stderr,
        }
    return {"lm_eval_version": getattr(lm_eval, "__version__", "unknown"), "tasks": _jsonable(tasks)}


@contextlib.contextmanager
def _quiet(logger: str) -> Iterator[None]:
    """Only errors from ``logger`` while the block runs."""
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def _import_lm_eval() -> Any:
    try:
        import lm_eval
    except ImportError as error:
        raise PluginError(f"metric 'lm_eval' needs the lm-eval package ({error.name} is missing): {INSTALL}") from None
    return lm_eval


def _is_file(spec: str) -> bool:
    return spec.endswith((".yaml", ".yml")) or "/" in spec or "\\" in spec


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in (value if isinstance(value, (list, tuple)) else [value])]


def _jsonable(value: Any) -> Any:
    """``value`` with anything JSON cannot hold (numpy numbers, tuples) turned into what it can."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    return float(value) if hasattr(value, "__float__") else str(value)
