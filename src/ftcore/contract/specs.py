"""What a plugin registers: methods, dataset formats, data shapes, metrics, rewards and config importers, as small frozen records.

A plugin returns these from the registration hooks (``register_methods``, ``register_dataset_formats``,
``register_shapes``, ``register_metrics``); the host checks names, remembers which plugin provided each
one (and calls that plugin's work hooks for it, and no other's), and reports two plugins claiming one
name, so ``ft plugins`` and error messages can list what is installed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

    from pydantic import BaseModel

_NAME = re.compile(r"^[a-z][a-z0-9_\-]{0,63}$")

#: The shapes ftcore itself renders and tokenizes (``tokens`` is an example a plugin tokenized itself).
CORE_SHAPES = ("messages", "completion", "text")


def check_name(kind: str, name: str) -> str:
    """Return ``name`` if it is a valid method/format/metric name, else raise ``ValueError``."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"invalid {kind} name {name!r}: use lowercase letters, digits, '-' or '_', starting with a letter"
        )
    return name


@dataclass(frozen=True)
class MethodSpec:
    """A training method such as ``lora``.

    :param name: what users write after ``--method``.
    :param summary: one line for ``ft plugins`` and ``--help``.
    :param options: pydantic model validating the config's ``method_options`` for this method
        (ftcore itself does not know them); ``None`` means the method takes no options.
    :param output: ``"adapter"`` when the run saves an adapter beside an untouched base (the method's plugin
        then answers :func:`~ftcore.contract.hookspecs.load_adapter` and :func:`~ftcore.contract.hookspecs.merge_adapter`),
        ``"model"`` when it saves full weights. Default ``"adapter"``. When the method's options decide (an adapter
        or full weights), give the options model an ``output`` property returning one of the two: see
        :meth:`output_for`.
    :param chat: ``True`` when the method expects instruction/chat data (masking and chat template on).
        Default ``False``.
    :param shapes: the data shapes the method trains on (see :class:`ShapeSpec`); data of any other shape
        is refused before the model loads. Default: ftcore's three, ``messages``, ``completion``, ``text``
        (``tokens``, an example a plugin tokenized itself, is accepted wherever ``completion`` is).
    :param base_bits: bits per weight of the base model's linear layers while training (``4`` for a
        QLoRA-style quantized base), for the memory estimator. Default ``16`` (the loaded dtype).
    :param adapter_rank_option: the name of the option holding the adapter's rank (``r`` for LoRA), for the
        memory estimator; ``None`` when the method trains no low-rank adapter. Default ``"r"``.
    :param recommend: position of the method in ``ft recommend``'s search (lowest first); ``None`` keeps the
        method out of it. Default ``None``.
    :param sequences_per_example: sequences each example becomes in a training forward pass, for the memory
        estimator (``2`` for preference pairs: chosen and rejected). Default ``1``.
    :param reference_pass: whether each step also runs a reference model without gradients (DPO, KTO), for the
        memory estimator. Default ``False``.
    :param generates: whether each step samples completions from the model being trained (GRPO), for the memory
        estimator (the key/value cache of generation). Default ``False``.
    :param model_kind: the kind of model the method trains, which ft loads directly (plugin API 3):
        ``"causal_lm"`` (the default; ``AutoModelForCausalLM``) or ``"sequence_classification"``
        (``AutoModelForSequenceClassification`` with one output, a scalar score: a reward model). The manifest
        records it; ``ft generate``, ``evaluate``, ``benchmark`` and ``merge`` refuse a run that is no causal LM.
    :param peer_keys: what other tools call this method's settings, and where each goes in ft
        (``{"lora_r": "method_options.r", "load_in_4bit": "method: qlora"}``): a config that uses such a name gets
        that hint in its error (plugin API 3). Default: none.

    Where the method's options decide these (an adapter or full weights, a 4-bit base or not, a reference pass
    or none), give the options model a property of the same name (``output``, ``base_bits``,
    ``sequences_per_example``, ``reference_pass``, ``generates``): :meth:`output_for` and its siblings read it
    first.
    """

    name: str
    summary: str = ""
    options: type[BaseModel] | None = None
    output: Literal["adapter", "model"] = "adapter"
    chat: bool = False
    shapes: tuple[str, ...] = CORE_SHAPES
    base_bits: int = 16
    adapter_rank_option: str | None = "r"
    recommend: int | None = None
    sequences_per_example: int = 1
    reference_pass: bool = False
    generates: bool = False
    model_kind: Literal["causal_lm", "sequence_classification"] = "causal_lm"
    peer_keys: Mapping[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        check_name("method", self.name)
        if self.model_kind not in MODEL_KINDS:
            raise ValueError(f"method {self.name!r}: model_kind {self.model_kind!r} is not one of {', '.join(MODEL_KINDS)}")
        object.__setattr__(self, "shapes", tuple(self.shapes))
        for shape in self.shapes:
            check_name("shape", shape)

    def output_for(self, options: Any) -> str:
        """What a run with these validated options saves: the options model's ``output`` property when it has one
        (a method whose options choose between an adapter and full weights), else :attr:`output`."""
        chosen = getattr(options, "output", None)
        return chosen if chosen in ("adapter", "model") else self.output

    def bits_for(self, options: Any) -> int:
        """:attr:`base_bits`, or the options model's ``base_bits`` property."""
        chosen = getattr(options, "base_bits", None)
        return chosen if isinstance(chosen, int) and not isinstance(chosen, bool) else self.base_bits

    def sequences_for(self, options: Any) -> int:
        """:attr:`sequences_per_example`, or the options model's property of that name."""
        chosen = getattr(options, "sequences_per_example", None)
        return chosen if isinstance(chosen, int) and not isinstance(chosen, bool) else self.sequences_per_example

    def generates_for(self, options: Any) -> bool:
        """:attr:`generates`, or the options model's property of that name."""
        chosen = getattr(options, "generates", None)
        return chosen if isinstance(chosen, bool) else self.generates

    def reference_for(self, options: Any) -> bool:
        """:attr:`reference_pass`, or the options model's property of that name."""
        chosen = getattr(options, "reference_pass", None)
        return chosen if isinstance(chosen, bool) else self.reference_pass

    def trains_on(self, shape: str) -> bool:
        """Whether data of ``shape`` is what this method trains on (``tokens`` counts as ``completion``)."""
        return shape in self.shapes or (shape == "tokens" and "completion" in self.shapes)


@dataclass(frozen=True)
class FormatSpec:
    """A dataset format such as ``alpaca``.

    :param name: what users write in ``data.format``.
    :param summary: one line for ``ft plugins``.
    :param columns: the columns that identify this format when ``format`` is not given; auto-detection
        picks the format with the most matching columns, all of which must be present.
    :param packing: ``False`` when examples of this format must never be packed together.
    :param shape: the shape of the examples its ``load_dataset`` returns; ``None`` (the default, and what
        plugins of API version 1 give) means one of ftcore's shapes, recognised from the columns.
    :param excludes: columns whose presence rules the format out of auto-detection (a ``messages`` file
        that also has ``chosen``/``rejected`` columns is preference data, not chat data). Default none.
    :param fields: every field the format reads, required and optional (alpaca: instruction, input, output,
        system), so that a misspelled ``data.columns`` key is an error with a did-you-mean. Default none:
        ``columns`` keys are not checked for this format.
    """

    name: str
    summary: str = ""
    columns: tuple[str, ...] = field(default_factory=tuple)
    packing: bool = True
    shape: str | None = None
    excludes: tuple[str, ...] = field(default_factory=tuple)
    fields: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        check_name("format", self.name)
        if self.shape is not None:
            check_name("shape", self.shape)


@dataclass(frozen=True)
class ShapeSpec:
    """A data shape: what one canonical example looks like after its format mapped it.

    ftcore registers ``messages``, ``completion`` and ``text`` and renders and tokenizes them itself. A plugin
    that registers another shape (preference pairs, prompts with a reference answer) renders and tokenizes
    examples of it in its :func:`~ftcore.contract.hookspecs.encode_examples` hook; ftcore still reads, maps columns,
    mixes, splits, shuffles and caches them.

    :param name: the shape's name, as methods list it in :attr:`MethodSpec.shapes`.
    :param summary: one line for ``ft plugins``.
    :param columns: the columns every example of this shape has; examples of a format that declares no
        shape are recognised by them (most columns wins). Extra columns are kept and handed on.
    :param packing: ``False`` when encoded examples of this shape must never be packed together. Default ``True``.
    :param reference: the column holding the answer that generation and loss metrics (``ft evaluate``, ``ft
        benchmark``) compare with, beside the ``prompt`` column (``chosen`` for preference pairs); each is text
        or a list of ``{role, content}`` messages. ``None`` (the default): those metrics cannot score the shape.
    """

    name: str
    summary: str = ""
    columns: tuple[str, ...] = field(default_factory=tuple)
    packing: bool = True
    reference: str | None = None

    def __post_init__(self) -> None:
        check_name("shape", self.name)


@dataclass(frozen=True)
class MetricSpec:
    """A metric such as ``rouge``.

    :param name: what users write in ``--metrics``.
    :param summary: one line for ``ft plugins``.
    :param needs: ``"generation"`` when it scores generated text against references, ``"loss"`` when it
        needs the model's token-level loss on the references (perplexity), handed over in ``context``;
        ``"model"`` when it scores the examples with the model itself (preference accuracy, say): ``context``
        then holds ``model``, ``tokenizer``, ``examples`` (the canonical examples as their format mapped them),
        ``shape``, ``template`` (the resolved chat template), ``system_prompt`` and ``batch_size``.
        Default ``"generation"``.
    :param higher_is_better: direction for reports (perplexity: ``False``). Default ``True``.
    :param shapes: the data shapes a ``needs="model"`` metric scores; ``None`` (the default) means any shape
        that has a reference answer.
    :param own_data: ``True`` for a ``needs="model"`` metric that brings its own examples (a benchmark harness's
        tasks, say) and never reads ft's: when every metric asked for has it, ``ft evaluate`` needs no ``--data``
        and ``ft benchmark`` reads none, and ``context["examples"]`` is empty. Default ``False``.
    """

    name: str
    summary: str = ""
    needs: Literal["generation", "loss", "model"] = "generation"
    higher_is_better: bool = True
    shapes: tuple[str, ...] | None = None
    own_data: bool = False

    def __post_init__(self) -> None:
        check_name("metric", self.name)
        if self.own_data and self.needs != "model":
            raise ValueError(f"metric {self.name!r}: own_data=True needs needs='model' (it scores with the model itself)")


@dataclass(frozen=True)
class MetricResult:
    """What a ``compute_metric`` implementation may return instead of a plain ``{name: score}`` mapping.

    :param scores: ``{score_name: value}``, every value a number.
    :param details: non-numeric provenance recorded in ``eval.json`` (a sacrebleu signature, a library version).
    """

    scores: dict[str, float]
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RewardSpec:
    """A reward function for reinforcement learning from rewards (GRPO, say), such as ``answer_match``.

    :param name: what users write in a method's ``rewards: [{name: ...}]``.
    :param summary: one line for ``ft plugins``.
    :param options: pydantic model validating the reward's options (the other keys of its entry); ``None`` means
        it takes none.
    """

    name: str
    summary: str = ""
    options: type[BaseModel] | None = None

    def __post_init__(self) -> None:
        check_name("reward", self.name)


#: What became of one source key in ``ft config import``: carried over, of no effect in ft, not offered, a training
#: kind ft cannot run (nothing is written), or carried over with a safety warning.
IMPORT_STATUSES = ("mapped", "ignored", "unsupported", "blocking", "warning")


@dataclass(frozen=True)
class ImportRow:
    """One row of ``ft config import``'s table.

    :param key: the source key (``datasets[0].type`` for a key inside a list entry).
    :param status: one of :data:`IMPORT_STATUSES`. ``blocking`` means the source asks for a kind of training ft
        cannot run: ft writes no config. ``warning`` means the key was carried over but weakens safety
        (``trust_remote_code``).
    :param target: the ft key it became (empty when none).
    :param note: why, or what to do instead; required for ``unsupported``, ``blocking`` and ``warning``.
    """

    key: str
    status: str
    target: str = ""
    note: str = ""

    def __post_init__(self) -> None:
        if self.status not in IMPORT_STATUSES:
            raise ValueError(f"import row {self.key!r}: status {self.status!r} is not one of {IMPORT_STATUSES}")


@dataclass
class ImportedConfig:
    """What an importer returns: the ft config as a mapping (``method``, ``data``, ``training``...) and one
    :class:`ImportRow` per source key, in the source's order."""

    config: dict[str, Any]
    rows: list[ImportRow] = field(default_factory=list)


@dataclass(frozen=True)
class ImporterSpec:
    """A tool whose configs ``ft config import`` converts (``axolotl``, say); registered by
    :func:`~ftcore.contract.hookspecs.register_config_importers`.

    :param name: what users write after ``--from``.
    :param summary: one line for ``ft plugins`` and ``--help``.
    :param convert: ``convert(source, base_dir) -> ImportedConfig``: the source config as a mapping and the folder
        of the source file (for files it names relative to itself). It raises :class:`ftcore.ConfigError` for a
        source it cannot read at all; anything else it raises is reported as the plugin's bug.
    :param signature: keys only this tool writes; detection without ``--from`` picks the importer whose signature
        shares the most keys with the source.
    :param parse: ``parse(text) -> mapping | None`` for a form of the tool's config that is not a YAML mapping
        (TRL's ``trl dpo --key value`` command line); ``None`` when the text is not one. Default: YAML only.
    """

    name: str
    summary: str
    convert: Callable[[dict[str, Any], Path], ImportedConfig]
    signature: frozenset[str] = frozenset()
    parse: Callable[[str], dict[str, Any] | None] | None = None

    def __post_init__(self) -> None:
        check_name("importer", self.name)


@dataclass(frozen=True)
class MemoryProfile:
    """What a method's run holds for its weights, for the memory estimate of ``ft recommend`` and the preflight
    check (returned by the :func:`~ftcore.contract.hookspecs.memory_profile` hook, plugin API 3).

    ftcore adds the rest from the setup: gradients and optimizer moments of the trained parameters, activations,
    the loss head, a reference pass, generation and the runtime.

    :param trained: parameters that receive gradients and optimizer moments (an adapter's, or every weight).
    :param adapter: ``True`` when the trained parameters are an adapter beside the base, kept in float32 (its
        weights, gradients and moments counted at 4 bytes each); ``False`` when they are the base's own weights
        (counted in the run's dtype).
    :param weights: bytes of the base's weights while training (a quantized base's codes and scales, say);
        ``None``: every parameter in the run's dtype.
    """

    trained: int
    adapter: bool = True
    weights: int | None = None


#: The kinds of model a method can train (:attr:`MethodSpec.model_kind`), each with the ``transformers`` class
#: ft loads for it.
MODEL_KINDS = {"causal_lm": "AutoModelForCausalLM", "sequence_classification": "AutoModelForSequenceClassification"}
