"""The plugin contract of ft: every hook a plugin can implement.

Plugins are found through the ``ftcore`` entry-point group and implement these hooks with the
:data:`ftcore.hookimpl` marker. An implementation may accept fewer arguments than the spec names
(pluggy passes only those it asks for), so a hook can gain an argument without breaking anyone.
Published hooks are never changed or removed, only added: see ``ftcore.PLUGIN_API_VERSION``.

Dispatch: the registration hooks are called on every plugin. The host remembers which plugin
registered each method, format, shape and metric, and calls a work hook for a name on that plugin
*only* (``setup_peft`` for method ``lora`` goes to the plugin that registered ``lora``, never to
another), so an implementation needs no check of the name: a plugin that registers one method serves it,
and one that registers several tells them apart by the name it receives. Two plugins registering one name
make the name unusable until one is removed: every use of it fails with one line naming both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    import click

    from ftcore.config.schema import DataConfig, FtConfig
    from ftcore.contract.rewards import RewardContext
    from ftcore.contract.specs import (
        FormatSpec,
        ImporterSpec,
        MemoryProfile,
        MethodSpec,
        MetricResult,
        MetricSpec,
        RewardSpec,
        ShapeSpec,
    )
    from ftcore.data.encode import EncodeOptions
    from ftcore.data.sources import DataSource
    from ftcore.models.estimate import ModelShape, Setup

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

    A method's ``options`` model validates the config's ``method_options`` with the whole config as pydantic's
    validation context: a validator taking ``info: pydantic.ValidationInfo`` finds the :class:`ftcore.FtConfig` at
    ``info.context["config"]`` (absent when the options are validated on their own) and may refuse options that do
    not fit the rest of the config (ftrl: ``num_generations`` against ``training.batch_size``), at
    ``ft config validate`` and before any model loads.
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


@hookspec
def register_shapes() -> Sequence[ShapeSpec]:
    """Declare the data shapes this plugin renders and tokenizes (plugin API 2).

    Called for every plugin when the host builds its registry. ftcore registers ``messages``,
    ``completion`` and ``text`` itself. A plugin that registers a shape implements
    :func:`encode_examples` for it, and its methods list it in :attr:`ftcore.MethodSpec.shapes`.

    :returns: a sequence of :class:`ftcore.ShapeSpec`; names must be unique across all plugins.
    """


@hookspec
def register_rewards() -> Sequence[RewardSpec]:
    """Declare the reward functions this plugin computes, for methods that learn from rewards (plugin API 2).

    Called for every plugin when the host builds its registry. A method such as ``grpo`` names rewards in its
    options (``rewards: [{name: answer_match, weight: 1.0}]``) and asks for them through :func:`compute_reward`.

    :returns: a sequence of :class:`ftcore.RewardSpec`; names must be unique across all plugins.
    """


@hookspec
def register_config_importers() -> Sequence[ImporterSpec]:
    """Declare the tools whose configs ``ft config import`` converts into ft configs (plugin API 3).

    Called for every plugin when the host builds its registry. ``ft config import FILE [--from NAME]`` reads FILE
    (YAML, or the importer's own ``parse`` for other text), picks the importer named by ``--from`` or the one whose
    ``signature`` keys FILE uses most, calls its ``convert`` and prints one row per source key; the host checks
    the result with ft's validation and writes it. An importer must never turn a kind of training ft cannot run
    into another: it reports such a key as a ``blocking`` row, and the host then writes nothing and exits non-zero.

    :returns: a sequence of :class:`ftcore.ImporterSpec`; names must be unique across all plugins.
    """

# -------------------------------------------------------------------------
# Commands and run events (plugin API 3): product features that are not the
# host's job (export, publishing, importers) add their command here.
# -------------------------------------------------------------------------


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add subcommands to ``ft`` (plugin API 3), as ``llm`` and ``tox`` plugins do.

    Called once per plugin, the first time a command that is not one of ftcore's own is looked up or
    ``ft --help`` lists the commands. ``cli`` is a click group of the plugin's own: add commands to it with
    ``@cli.command()`` or ``cli.add_command(...)``; each becomes ``ft NAME``. Keep this cheap: the command
    module imports click only and the command body imports torch and the rest. A name that ftcore or another
    plugin already has is refused with a warning naming both; ftcore's own commands cannot be replaced.

    :param cli: a click group whose commands ``ft`` adds under the same names.
    :returns: nothing.
    """


@hookspec
def run_started(config: FtConfig, run_dir: Path) -> None:
    """A training run has begun (plugin API 3): called on every plugin, on the main process only.

    Called once the run's staging directory exists and before the model trains (also when a run resumes).
    Files written into ``run_dir`` become part of the run when it finishes, and vanish with it if it fails.
    An exception here stops the run with one line naming the plugin.

    :param config: the validated run config.
    :param run_dir: the run's staging directory (renamed to ``config.output_dir`` when the run finishes).
    :returns: nothing.
    """


@hookspec
def run_finished(config: FtConfig, run_dir: Path, manifest: dict[str, Any]) -> None:
    """A training run has written its outputs (plugin API 3): called on every plugin, on the main process only.

    Called after the weights, tokenizer, config, metrics and manifest are in ``run_dir`` and before the
    directory is moved to ``config.output_dir`` in one step, so an artifact a plugin writes here (a report,
    a converted file, a fix-up of a library's file) lands with the run, atomically. An exception here fails
    the run with one line naming the plugin, and nothing is left at the output path.

    :param config: the validated run config.
    :param run_dir: the run's staging directory, complete.
    :param manifest: the run's manifest as written to ``manifest.json``.
    :returns: nothing.
    """


# -------------------------------------------------------------------------
# Model: before and after the base model is loaded.
# -------------------------------------------------------------------------


@hookspec(firstresult=True)
def model_load_kwargs(method: str, config: FtConfig, options: Any) -> dict[str, Any] | None:
    """Extra keyword arguments for ``AutoModelForCausalLM.from_pretrained`` of the base model.

    Called on the plugin that registered ``method``: once per run before the model is loaded, and again
    when ``ft merge`` and ``ft evaluate`` load the base of an adapter run. QLoRA returns a
    ``quantization_config`` here (and, under FSDP, the storage dtype FSDP needs). Raise
    :class:`ftcore.FtError` if the method cannot run on this machine (say, 4-bit without a supported
    device), before anything heavy is loaded.

    Stops at the first non-None result.

    :param method: the method name of the run (``config.method``).
    :param config: the validated run config.
    :param options: the method's options, validated by its :attr:`MethodSpec.options` model (or ``None``).
    :returns: keyword arguments to merge into ``from_pretrained``, or ``None`` for none.
    """


@hookspec(firstresult=True)
def setup_peft(model: Any, method: str, config: FtConfig, options: Any) -> Any | None:
    """Prepare the loaded base model for training with ``method``.

    Called on the plugin that registered ``method``, once per run after the base model is loaded.
    Attach adapters, choose which parameters are trainable, enable gradient checkpointing if
    ``config.training.gradient_checkpointing`` asks for it. When the run added tokens (``added_tokens``,
    ``special_tokens``), ftcore has already grown the embeddings, and :func:`ftcore.added_token_ids` gives the
    new rows, which start untrained: an adapter method should train them too.

    Stops at the first non-None result.

    :param model: the ``transformers`` causal LM as loaded (with :func:`model_load_kwargs` applied).
    :param method: the method name of the run.
    :param config: the validated run config.
    :param options: the method's validated options (or ``None``).
    :returns: the model to train (a ``peft.PeftModel`` or the model itself; ``None`` fails the run, naming the
        plugin).
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
    options: Any,
    shape: str,
) -> Any | None:
    """Build the trainer for the run, when the method brings its own training loop (DPO, say).

    Called on the plugin that registered ``method``, once per run, after the data is prepared and the
    model set up. ftcore uses ``transformers.Trainer`` when the plugin does not answer, which only works
    for data of ftcore's shapes. The returned object must behave like a ``transformers.Trainer``
    (``train(resume_from_checkpoint=...)``, ``add_callback``, ``save_model``, ``model``, ``state.log_history``);
    a ``Trainer`` subclass (TRL's trainers are) does.

    To use a ``TrainingArguments`` subclass (TRL's ``DPOConfig``, say), build it from ``args``, which
    holds every setting of the run (output directory, steps, learning rate, precision, checkpointing,
    distributed settings)::

        fields = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainingArguments) if f.init}
        dpo_args = DPOConfig(**fields, beta=options.beta)

    Stops at the first non-None result.

    :param model: the prepared model (output of :func:`setup_peft`).
    :param tokenizer: the tokenizer (pass it as ``processing_class``).
    :param args: the ``transformers.TrainingArguments`` built from the config.
    :param train_dataset: the training examples in the method's shape: tokenized rows for ftcore's shapes,
        what the shape's :func:`encode_examples` returned for a plugin's shape.
    :param eval_dataset: the evaluation examples, likewise, or ``None``.
    :param data_collator: ftcore's collator for ftcore's shapes; ``None`` for a plugin's shape (bring yours).
    :param callbacks: ftcore's callbacks (progress, metrics log); keep them.
    :param method: the method name of the run.
    :param config: the validated run config.
    :param options: the method's options, validated by its :attr:`MethodSpec.options` model (or ``None``).
    :param shape: the shape of the run's data (``messages``, ``completion``, ``text``, ``tokens`` or a
        plugin's shape).
    :returns: a trainer, or ``None`` to use ftcore's default.
    """


@hookspec(firstresult=True)
def load_adapter(model: Any, path: Path, method: str, options: Any) -> Any | None:
    """Apply a trained adapter, as the method saved it, to its freshly loaded base model (plugin API 2).

    Called on the plugin that registered ``method`` when ``ft evaluate``, ``ft benchmark``,
    ``ft generate`` and ``ft chat`` load a run whose method's ``output`` is ``"adapter"``. The base was
    loaded unquantized, in the dtype asked for.

    Stops at the first non-None result.

    :param model: the base model.
    :param path: the run directory (or checkpoint) holding the adapter files.
    :param method: the run's method.
    :param options: the run's validated method options (or ``None``).
    :returns: a model ready for inference (``None`` fails the command, naming the plugin).
    """


@hookspec(firstresult=True)
def merge_adapter(model: Any, path: Path, method: str, options: Any) -> Any | None:
    """Fold a trained adapter into its base and return a plain ``transformers`` model (plugin API 2).

    Called on the plugin that registered ``method`` by ``ft merge`` (and ``ft upload --merged``). The base
    was loaded in float32 with the method's :func:`model_load_kwargs`; a quantized base must come back
    dequantized, so the result saves and loads without the quantization library.

    Stops at the first non-None result.

    :param model: the base model.
    :param path: the run directory holding the adapter files.
    :param method: the run's method.
    :param options: the run's validated method options (or ``None``).
    :returns: the merged model (``None`` fails the command, naming the plugin).
    """


@hookspec(firstresult=True)
def trained_tensor_shapes(model: Any, method: str) -> dict[str, list[int]] | None:
    """Names and shapes of the tensors the method saves in a checkpoint, as they appear in its files (plugin API 2).

    Called on the plugin that registered ``method`` before ``ft train --resume`` loads a checkpoint, so a
    checkpoint of another base model or other options fails with one line instead of a page of size
    mismatches. When no plugin answers, ftcore uses ``model.state_dict()``.

    Stops at the first non-None result.

    :param model: the prepared model (output of :func:`setup_peft`).
    :param method: the run's method.
    :returns: ``{tensor_name: shape}``, or ``None``.
    """


@hookspec(firstresult=True)
def memory_profile(method: str, shape: ModelShape, setup: Setup, options: Any) -> MemoryProfile | None:
    """How a run of ``method`` holds its weights, for the memory estimate (plugin API 3).

    Called on the plugin that registered ``method`` by ``ft recommend`` (for each setup it tries) and by the
    preflight check of ``ft train``; no model is loaded. ftcore adds gradients, optimizer moments, activations and
    the rest from ``setup``. When no plugin answers, a method that trains every weight is counted as full
    fine-tuning and an adapter method as its base (the linear layers at :attr:`MethodSpec.base_bits`) with no
    adapter.

    Stops at the first non-None result.

    :param method: the method's name.
    :param shape: the model's geometry, counted on the meta device: ``params`` (all parameters),
        ``linear_params`` and ``linear_in_out`` (the weights, and the sum of ``in_features + out_features``, of
        the Linear layers inside the decoder blocks), ``layers``, ``hidden``, ``intermediate``, ``vocab``.
    :param setup: the setup estimated: ``rank`` (the adapter's rank, from the option named by
        :attr:`MethodSpec.adapter_rank_option`, or ``ft recommend --rank``; ``None`` when every weight trains),
        ``base_bits``, ``dtype``, ``micro_batch``, ``seq_len``.
    :param options: the method's validated options, or ``None`` (``ft recommend`` estimates the defaults).
    :returns: a :class:`ftcore.MemoryProfile`, or ``None`` for ftcore's default.
    """


# -------------------------------------------------------------------------
# Data
# -------------------------------------------------------------------------


@hookspec(firstresult=True)
def load_dataset(source: DataSource, data: DataConfig, config: FtConfig | None) -> Any | None:
    """Map a data source in this plugin's format into examples of the format's shape.

    Called on the plugin that registered ``source.format``, once per data source (file, or Hub dataset)
    whose tokenized form is *not* in ftcore's data cache: by ``ft train`` and ``ft data preview`` when the
    cache misses (the cache key covers the files' contents, the data settings, the tokenizer and the
    version and code of every plugin that registers a format or shape, so a changed plugin is called
    again), and by ``ft evaluate`` / ``ft benchmark`` every time (they do not cache). Before the call
    ftcore has read the file(s) and resolved the format (given in ``data.format`` or detected).

    The examples have the format's :attr:`~ftcore.FormatSpec.shape`: ftcore's own are ``messages`` (a list
    of ``{"role", "content"}``, roles ``system``/``user``/``assistant``/``tool``, with the optional message keys
    and ``tools`` column of :mod:`ftcore.data.messages`; :func:`ftcore.chat_message` reads the spellings real
    data uses), ``prompt`` + ``completion``, or
    ``text``, which ftcore alone renders, tokenizes, masks, truncates, packs and caches. A plugin that must
    tokenize itself may return ``input_ids`` + ``labels`` columns. Examples of a plugin's shape keep every
    column the plugin returns and go to the shape's :func:`encode_examples`.

    Raise :class:`ftcore.DataError` naming the file, line/record and field when a record does not
    fit the format (``source.where(i)`` gives ``"file:line"`` for record ``i``;
    :func:`ftcore.map_records` does this for you).

    Stops at the first non-None result.

    :param source: the source: its resolved ``format``, the raw ``records`` (a ``datasets.Dataset``
        read by ftcore, or ``None`` for a source only the plugin understands), ``path`` and ``columns``
        mapping.
    :param data: the run's data settings (the config's ``data:`` section).
    :param config: the whole run config during ``ft train``; ``None`` elsewhere. Deprecated (plugin API 1
        passed it): use ``data``.
    :returns: a ``datasets.Dataset`` of examples (``None`` fails the run, naming the plugin).
    """


@hookspec(firstresult=True)
def encode_examples(shape: str, examples: Any, tokenizer: Any, settings: EncodeOptions, method: str) -> Any | None:
    """Render and tokenize examples of a shape this plugin registered (plugin API 2).

    Called on the plugin that registered ``shape``, once per data source whose result is not cached,
    after :func:`load_dataset`. Examples of ftcore's shapes never reach it. The result goes, mixed,
    split, shuffled and cached by ftcore, to the method's :func:`make_trainer`; return whatever columns
    that trainer wants (prompt/chosen/rejected text rendered with the chat template for TRL, say, or
    token ids). Rows with ``input_ids`` and ``labels`` get ftcore's length statistics; the method's trainer
    always brings its own collator for a plugin's shape. A plugin that measures its examples as its trainer will
    tokenize them returns one row per example, in order, with ``status`` (``"kept"``, ``"truncated"``, or why the
    example is dropped), ``full_length`` (its tokens before truncation) and ``length_<part>`` columns (``prompt``,
    ``chosen``, ...): ftcore counts and warns about them like its own examples, reports each part's lengths,
    drops the rows not kept or truncated and removes those columns before the trainer sees the data.

    Stops at the first non-None result.

    :param shape: the examples' shape.
    :param examples: a ``datasets.Dataset`` of examples of that shape, as :func:`load_dataset` returned them.
    :param tokenizer: the run's tokenizer.
    :param settings: the run's :class:`ftcore.EncodeOptions`: the resolved chat ``template`` (a Jinja
        string: ``data.chat_template``, else the tokenizer's, else ChatML), ``train_on_inputs``, ``system_prompt``,
        ``max_seq_len`` and ``overflow`` (``None``: ftcore's default, see ``EncodeOptions.overflow_for``).
    :param method: the run's method.
    :returns: a ``datasets.Dataset`` (``None`` fails the run, naming the plugin).
    """


# -------------------------------------------------------------------------
# Evaluation
# -------------------------------------------------------------------------


@hookspec(firstresult=True)
def compute_metric(
    name: str, predictions: list[str], references: list[str], context: dict[str, Any]
) -> MetricResult | dict[str, float] | None:
    """Score predictions against references with the metric ``name``.

    Called on the plugin that registered ``name``, by ``ft evaluate`` and ``ft benchmark``, once per
    requested metric.

    Stops at the first non-None result.

    :param name: the metric name the user asked for (``rouge``, ``bleu``...).
    :param predictions: generated texts (empty for ``needs="loss"`` metrics).
    :param references: reference texts, aligned with ``predictions``.
    :param context: extra inputs, read-only: ``token_nll`` (sum of token negative log-likelihoods) and
        ``token_count`` for loss-based metrics, ``options`` (the user's metric options); for ``needs="model"``
        metrics the loaded ``model`` and ``tokenizer``, the ``examples`` and what :class:`ftcore.MetricSpec` lists
        (``examples`` is empty for a metric with ``own_data=True``, which scores data of its own: lm-eval's tasks,
        say).
    :returns: a :class:`ftcore.MetricResult` (scores plus non-numeric ``details`` such as a sacrebleu
        signature, recorded in ``eval.json``) or a plain ``{score_name: value}``. (Plugin API 1 wrote details into ``context["details"]``; that still works.)
    """


# -------------------------------------------------------------------------
# Rewards
# -------------------------------------------------------------------------


@hookspec(firstresult=True)
def setup_reward(name: str, options: Any, context: RewardContext) -> Any | None:
    """Prepare the reward ``name`` for a run (plugin API 3): load what it needs once, not once per batch.

    Called on the plugin that registered ``name``, once per run and process, before the first batch is scored
    (a run that names a reward twice sets it up twice, once per entry). ft keeps what this returns and passes
    it to every :func:`compute_reward` and, at the end of the run, to :func:`teardown_reward`; the plugin keeps
    nothing in globals. A reward that needs no set-up does not implement this hook (its state is ``None``).

    Stops at the first non-None result.

    :param name: the reward's name.
    :param options: the reward's options, validated by its :attr:`RewardSpec.options` model (or ``None``).
    :param context: the run: ``device`` (the ``torch.device`` the policy trains on), ``run_dir`` (the staging
        directory), ``tokenizer`` (the policy's) and ``config``, a :class:`ftcore.RewardContext`.
    :returns: the reward's state (a loaded model, a client...), or ``None``.
    """


@hookspec
def teardown_reward(name: str, options: Any, state: Any) -> None:
    """Release what :func:`setup_reward` loaded (plugin API 3).

    Called on the plugin that registered ``name``, once per run and process, when training ends.

    :param name: the reward's name.
    :param options: the reward's validated options (or ``None``).
    :param state: what :func:`setup_reward` returned (``None`` when it was not implemented).
    :returns: nothing.
    """


@hookspec(firstresult=True)
def compute_reward(
    name: str, prompts: list[str], completions: list[str], examples: list[dict[str, Any]], options: Any,
    state: Any,
) -> list[float] | None:
    """Score sampled completions with the reward ``name`` (plugin API 2).

    Called on the plugin that registered ``name``, by a method that learns from rewards, once per batch of
    completions (several per prompt).

    Stops at the first non-None result.

    :param name: the reward's name.
    :param prompts: the prompt of each completion, as the model saw it (rendered with the chat template).
    :param completions: the generated texts.
    :param examples: for each completion, the other columns of its example (a reference ``answer``, say).
    :param options: the reward's options, validated by its :attr:`RewardSpec.options` model, defaults filled
        (or ``None`` for a reward without an options model).
    :param state: what the reward's :func:`setup_reward` returned for this run (plugin API 3; ``None`` without one).
    :returns: one finite float per completion (``None`` for "no opinion" is not allowed; NaN, inf, a string or
        the wrong count stops the run with one line naming the reward and its plugin).
    """
