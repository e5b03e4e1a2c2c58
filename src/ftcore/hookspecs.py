"""The plugin contract of ft: every hook a plugin can implement.

Plugins are found through the ``ftcore`` entry-point group and implement these hooks with the
:data:`ftcore.hookimpl` marker. An implementation may accept fewer arguments than the spec names
(pluggy passes only those it asks for), so a hook can gain an argument without breaking anyone.
Published hooks are never changed or removed, only added: see ``ftcore.PLUGIN_API_VERSION``.

Dispatch: the registration hooks call every plugin. The work hooks are *firstresult*: each
implementation returns ``None`` for a name that is not its own, and the first non-``None``
result wins (as pytest's collection hooks).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ftcore.config import FtConfig
    from ftcore.data.sources import DataSource
    from ftcore.specs import FormatSpec, MethodSpec, MetricSpec

hookspec = pluggy.HookspecMarker("ftcore")


# -------------------------------------------------------------------------
# Registration: what a plugin provides. Called once per plugin when the
# plugin manager is built; must be cheap (no torch, no model loading).
# -------------------------------------------------------------------------


@hookspec
def register_methods() -> Sequence[MethodSpec]:
    """Declare the training methods this plugin provides.

    Called for every plugin when the host builds its registry (for ``ft plugins``, ``--help``, config
    validation and error messages). Must not import heavy libraries.

    :returns: a sequence of :class:`ftcore.MethodSpec`; names must be unique across all plugins.
    """


@hookspec
def register_dataset_formats() -> Sequence[FormatSpec]:
    """Declare the dataset formats this plugin can map into canonical examples.

    Called for every plugin when the host builds its registry.

    :returns: a sequence of :class:`ftcore.FormatSpec`; names must be unique across all plugins.
    """


@hookspec
def register_metrics() -> Sequence[MetricSpec]:
    """Declare the evaluation metrics this plugin computes.

    Called for every plugin when the host builds its registry.

    :returns: a sequence of :class:`ftcore.MetricSpec`; names must be unique across all plugins.
    """


# -------------------------------------------------------------------------
# Model: before and after the base model is loaded.
# -------------------------------------------------------------------------


@hookspec(firstresult=True)
def model_load_kwargs(method: str, config: FtConfig, options: Any) -> dict[str, Any] | None:
    """Extra keyword arguments for ``AutoModelForCausalLM.from_pretrained`` of the base model.

    Called once per run, before the model is loaded, for the run's method. QLoRA returns a
    ``quantization_config`` here. Raise :class:`ftcore.FtError` if the method cannot run on this
    machine (say, 4-bit without a supported device), before anything heavy is loaded.

    Stops at the first non-None result.

    :param method: the method name of the run (``config.method``).
    :param config: the validated run config.
    :param options: the method's options, validated by its :attr:`MethodSpec.options` model (or ``None``).
    :returns: keyword arguments to merge into ``from_pretrained``, or ``None`` when ``method`` is not yours.
    """


@hookspec(firstresult=True)
def setup_peft(model: Any, method: str, config: FtConfig, options: Any) -> Any | None:
    """Prepare the loaded base model for training with ``method``.

    Called once per run after the base model is loaded. Attach adapters, choose which parameters
    are trainable, enable gradient checkpointing if the method wants it.

    Stops at the first non-None result.

    :param model: the ``transformers`` causal LM as loaded (with :func:`model_load_kwargs` applied).
    :param method: the method name of the run.
    :param config: the validated run config.
    :param options: the method's validated options (or ``None``).
    :returns: the model to train (a ``peft.PeftModel`` or the model itself), or ``None`` when
        ``method`` is not yours.
    """


@hookspec(firstresult=True)
def make_trainer(
    model: Any,
    tokenizer: Any,
    args: Any,
    train_dataset: Any,
    eval_dataset: Any,
    data_collator: Any,
    callbacks: list[Any],
    method: str,
    config: FtConfig,
) -> Any | None:
    """Build the trainer for the run, when the method brings its own training loop (DPO, say).

    Called once per run, after the data is prepared. ftcore uses ``transformers.Trainer`` when no
    plugin answers. The returned object must behave like a ``transformers.Trainer``
    (``train(resume_from_checkpoint=...)``, ``save_model``, ``state.log_history``).

    Stops at the first non-None result.

    :param model: the prepared model (output of :func:`setup_peft`).
    :param tokenizer: the tokenizer (pass it as ``processing_class``).
    :param args: the ``transformers.TrainingArguments`` built from the config.
    :param train_dataset: the tokenized training dataset.
    :param eval_dataset: the tokenized evaluation dataset, or ``None``.
    :param data_collator: ftcore's collator for these datasets.
    :param callbacks: ftcore's callbacks (progress, metrics log); keep them.
    :param method: the method name of the run.
    :param config: the validated run config.
    :returns: a trainer, or ``None`` to use ftcore's default.
    """


# -------------------------------------------------------------------------
# Data
# -------------------------------------------------------------------------


@hookspec(firstresult=True)
def load_dataset(source: DataSource, config: FtConfig) -> Any | None:
    """Map a data source in this plugin's format into canonical examples.

    Called once per data source of the run (train, eval), after ftcore has read the file(s) and
    resolved the format (given in ``data.format`` or detected from the columns).

    Canonical examples have one of three shapes: ``messages`` (a list of ``{"role", "content"}``,
    roles ``system``/``user``/``assistant``), ``prompt`` + ``completion``, or ``text``. ftcore alone
    renders chat templates, tokenizes, masks, truncates, packs and caches. A plugin that must
    tokenize itself may instead return ``input_ids`` + ``labels`` columns.

    Raise :class:`ftcore.DataError` naming the file, line/record and field when a record does not
    fit the format (``source.where(i)`` gives ``"file:line"`` for record ``i``).

    Stops at the first non-None result.

    :param source: the source: its resolved ``format``, the raw ``records`` (a ``datasets.Dataset``
        read by ftcore, or ``None`` for a source only the plugin understands), ``path`` and ``columns``
        mapping.
    :param config: the validated run config.
    :returns: a ``datasets.Dataset`` of canonical examples, or ``None`` when the format is not yours.
    """


# -------------------------------------------------------------------------
# Evaluation
# -------------------------------------------------------------------------


@hookspec(firstresult=True)
def compute_metric(
    name: str, predictions: list[str], references: list[str], context: dict[str, Any]
) -> dict[str, float] | None:
    """Score predictions against references with the metric ``name``.

    Called by ``ft evaluate`` and ``ft benchmark`` once per requested metric.

    Stops at the first non-None result.

    :param name: the metric name the user asked for (``rouge``, ``evaluate:bertscore``...).
    :param predictions: generated texts (empty for ``needs="loss"`` metrics).
    :param references: reference texts, aligned with ``predictions``.
    :param context: extra inputs: ``token_nll`` (sum of token negative log-likelihoods) and
        ``token_count`` for loss-based metrics, ``options`` (the user's metric options). It also holds a
        ``details`` dict the metric may fill with non-numeric provenance (a sacrebleu signature, the
        implementing library's version); ft records it in ``eval.json``.
    :returns: ``{score_name: value}``, or ``None`` when ``name`` is not yours.
    """
