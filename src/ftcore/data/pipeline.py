"""``prepare_data``: config + tokenizer -> tokenized, masked, truncated, packed and cached datasets.

Call it before loading the model: every data problem (bad file, missing field, all examples dropped) is
reported first, as one :class:`ftcore.DataError` line.
"""

from __future__ import annotations

import functools
import logging
import random
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftcore.contract.specs import CORE_SHAPES
from ftcore.data import cache
from ftcore.data.audit import AUDIT_COLUMNS, Auditor, audit_batch
from ftcore.data.collate import PackedCollator, PaddingCollator, pack_rows
from ftcore.data.encode import (
    EMPTY,
    IGNORE,
    KEPT,
    SPLIT,
    TRAINED_STATUSES,
    TRUNCATED,
    EncodeOptions,
    check_chat_features,
    encode_batch,
    require_fast,
    split_rows,
)
from ftcore.data.formats import canonical_examples, check_method_shape, shape_of
from ftcore.data.progress import encode_table, tokenize_processes
from ftcore.data.sources import DataSource, data_files, expand, skipped_files
from ftcore.data.templates import render_chat, resolve_chat_template, with_system_prompt
from ftcore.errors import DataError, PluginError

if TYPE_CHECKING:
    from datasets import Dataset

    from ftcore.config.schema import DataConfig, DataFile, FtConfig

log = logging.getLogger(__name__)

#: Reading a Hub dataset or local files of this size or more is announced (it takes a moment).
LARGE_BYTES = 1 << 20


@dataclass
class PreparedData:
    """What training needs from the data: datasets, the collator, and what happened on the way.

    :param train: tokenized training rows (``input_ids``, ``labels``; ``position_ids`` when packed), or, for a
        plugin's shape, what its ``encode_examples`` returned.
    :param eval: the evaluation rows, likewise, or ``None``.
    :param collator: the ``data_collator`` for ``transformers.Trainer`` (``None`` for a plugin's shape).
    :param stats: counts for the log and the run manifest (kept, truncated, dropped by reason, tokens,
        lengths, ``cache_hit``, ``shape``, and the data ``audit``: see :mod:`ftcore.data.audit`).
    :param fingerprint: the cache key of these datasets (inputs, tokenizer, template, settings).
    :param shape: the shape of the examples (``messages``, ``completion``, ``text``, ``tokens``, a plugin's).
    """

    train: Dataset
    eval: Dataset | None
    collator: Any
    stats: dict[str, Any] = field(default_factory=dict)
    fingerprint: str = ""
    shape: str = "completion"


def prepare_data(config: FtConfig, tokenizer: Any) -> PreparedData:
    """Read, validate, tokenize, mask, truncate/drop, pack and cache the run's data.

    A second call with the same inputs loads the cached result (``stats["cache_hit"]`` is ``True``).
    """
    with datasets_progress_bars():
        return _prepare(config, tokenizer)


def _prepare(config: FtConfig, tokenizer: Any) -> PreparedData:
    data = config.data
    require_fast(tokenizer)
    options = encode_options(data, tokenizer)
    train_entries, eval_entries = entries(data.train), entries(data.eval)
    read_cache: dict[int, list[DataSource]] = {}
    key = cache.fingerprint(_fingerprint_parts(config, tokenizer, options, train_entries + eval_entries, read_cache))
    root = cache.cache_root(data.cache_dir)
    cached = cache.load_cached(root, key)
    if cached is not None:
        train, evaluation, stats = cached
        stats["cache_hit"] = True
        shape = stats.get("shape", "completion")
        check_method_shape(config.method, shape, stats.get("shape_source", str(root / key)))
        log.info("data: cache hit %s (%s)", key, root / key)
        return PreparedData(train, evaluation, make_collator(data, tokenizer, shape), stats, key, shape)
    prepared = _build(config, tokenizer, options, train_entries, eval_entries, read_cache)
    prepared.fingerprint = prepared.stats["fingerprint"] = key
    prepared.stats["cache_written"] = cache.save_cached(root, key, prepared.train, prepared.eval, prepared.stats)
    log.info("data: %s", summary_line(prepared.stats))
    return prepared


@contextmanager
def datasets_progress_bars(enabled: bool | None = None) -> Iterator[None]:
    """Show datasets' progress bars only to a person watching a terminal (``enabled`` forces the choice); also
    around a method's trainer, which may map the datasets again (TRL's tokenize theirs)."""
    import datasets

    if enabled is None:
        enabled = sys.stderr.isatty() and log.getEffectiveLevel() <= logging.INFO
    was_enabled = datasets.is_progress_bar_enabled()
    (datasets.enable_progress_bars if enabled else datasets.disable_progress_bars)()
    try:
        yield
    finally:
        (datasets.enable_progress_bars if was_enabled else datasets.disable_progress_bars)()


def encode_options(data: DataConfig, tokenizer: Any) -> EncodeOptions:
    """The settings that turn one example into tokens."""
    return EncodeOptions(
        template=resolve_chat_template(data.chat_template, tokenizer),
        train_on_inputs=data.train_on_inputs,
        system_prompt=data.system_prompt,
        max_seq_len=data.max_seq_len,
        overflow=data.overflow,
    )


def entries(value: Any) -> list[str | DataFile]:
    """The configured sources as a list (a single path or id becomes a one-element list)."""
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def make_collator(data: DataConfig, tokenizer: Any, shape: str = "completion") -> Any:
    """The collator for these datasets: flattening when packed or padding-free, dynamic padding otherwise;
    ``None`` for a plugin's shape, whose method brings its own."""
    if not tokenized_shape(shape):
        return None
    if data.packing or data.padding_free:
        return PackedCollator()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return PaddingCollator(pad if pad is not None else 0)


# ----------------------------------------------------------------------------- fingerprint


def _fingerprint_parts(
    config: FtConfig, tokenizer: Any, options: EncodeOptions, all_entries: list[Any], read_cache: dict[int, list[DataSource]]
) -> dict[str, Any]:
    from ftcore.contract.plugins import get_registry

    data = config.data
    inputs = []
    for i, entry in enumerate(all_entries):
        files = data_files(entry)
        if files is None:  # a Hub dataset: read it now (datasets caches it) and use its own fingerprint
            read_cache[i] = expand(entry, data.columns, data.format, data.text_split, _entry_key(data, i))
            inputs.append([getattr(s.records, "_fingerprint", s.path) for s in read_cache[i]])
        else:
            inputs.append([cache.file_digest(p) for p in files])
    registry = get_registry()
    readers = {info.name: info for kind in ("format", "shape") for _, info in registry.table(kind).values()}
    return {
        "inputs": inputs,
        "entries": [e if isinstance(e, str) else e.model_dump() for e in all_entries],
        "n_train": len(entries(data.train)),
        "tokenizer": cache.tokenizer_digest(tokenizer),
        "options": options.__dict__,
        "data": data.model_dump(exclude={"cache_dir", "num_proc", "group_by_length", "padding_free", "train", "eval"}),
        "seed": config.seed,
        "chat_method": _chat_method(config.method),
        # A plugin's shape is encoded for the run's method (encode_examples gets its name).
        "method": config.method,
        # The plugins that read, map and render the data: their versions and, for edited installs, their code.
        "data_plugins": sorted(f"{info.dist}=={info.version}:{cache.plugin_code_digest(info.plugin)}"
                               for info in readers.values()),
    }


def _entry_key(data: DataConfig, i: int) -> str:
    """Where the ``i``-th entry of train + eval sits in the config: ``data.train``, ``data.eval[1]``."""
    n_train = len(entries(data.train))
    split, index, value = ("train", i, data.train) if i < n_train else ("eval", i - n_train, data.eval)
    return f"data.{split}" if isinstance(value, str) else f"data.{split}[{index}]"


def _chat_method(method: str) -> bool:
    from ftcore.contract.plugins import get_registry

    found = get_registry().methods.get(method)
    return bool(found and found[0].chat)


def tokenized_shape(shape: str) -> bool:
    """Whether examples of ``shape`` become ftcore's token rows (``input_ids`` + ``labels``)."""
    return shape in CORE_SHAPES or shape == "tokens"


# ----------------------------------------------------------------------------- building


def _build(
    config: FtConfig,
    tokenizer: Any,
    options: EncodeOptions,
    train_entries: list[Any],
    eval_entries: list[Any],
    read_cache: dict[int, list[DataSource]],
) -> PreparedData:
    data = config.data
    reading = _Reading(config, tokenizer, options, read_cache)
    train = _read_split("train", train_entries, 0, reading)
    evaluation = None
    if eval_entries:
        evaluation = _read_split("eval", eval_entries, len(train_entries), reading)
    elif data.eval_ratio > 0:
        train, evaluation = _split_off(train, data.eval_ratio, config.seed)
    if data.shuffle:
        train = train.shuffle(seed=config.seed)
    counts, full_lengths, shapes = reading.counts, reading.full_lengths, reading.shapes
    shape = shapes[0][0]
    train_stats, train = _finish_split(train, data, shape)
    eval_stats, evaluation = _finish_split(evaluation, data, shape) if evaluation is not None else (None, None)
    dropped = {reason: n for reason, n in counts.items() if reason not in TRAINED_STATUSES}
    stats = {
        "cache_hit": False,
        "sources": reading.sources_info,
        "examples": sum(counts.values()),
        "kept": sum(counts[s] for s in TRAINED_STATUSES),
        "truncated": counts[TRUNCATED],
        "split": counts[SPLIT],
        "dropped": dropped,
        "max_seq_len": data.max_seq_len,
        "full_lengths": length_summary(sorted(full_lengths), max(data.max_seq_len, max(full_lengths, default=0))),
        "packing": data.packing and tokenized_shape(shape),
        "shape": shape,
        "shape_source": shapes[0][1],
        "train": train_stats,
        "eval": eval_stats,
    }
    stats["audit"] = reading.auditor.finish(stats, full_lengths, _skipped(train_entries + eval_entries))
    return PreparedData(train, evaluation, make_collator(data, tokenizer, shape), stats, shape=shape)


def _skipped(all_entries: list[Any]) -> list[tuple[Path, list[str]]]:
    return [(Path(e if isinstance(e, str) else e.path), files) for e in all_entries if (files := skipped_files(e))]


@dataclass
class _Reading:
    """What reading the splits needs, and what it gathers across them for the statistics and the audit."""

    config: FtConfig
    tokenizer: Any
    options: EncodeOptions
    #: Sources already read (while fingerprinting), by entry index.
    read_cache: dict[int, list[DataSource]]
    counts: Counter[str] = field(default_factory=Counter)
    sources_info: list[dict[str, Any]] = field(default_factory=list)
    full_lengths: list[int] = field(default_factory=list)
    #: ``(shape, source path)`` of every source read, in order: all must be of one kind.
    shapes: list[tuple[str, str]] = field(default_factory=list)
    auditor: Auditor = field(default_factory=Auditor)


def _read_split(split: str, split_entries: list[Any], offset: int, reading: _Reading) -> Dataset:
    """One split's sources read, encoded and weighted into one dataset; counts and lengths go to ``reading``."""
    from datasets import concatenate_datasets

    config = reading.config
    data = config.data
    parts, split_counts = [], Counter()
    for i, entry in enumerate(split_entries):
        for source in reading.read_cache.get(offset + i) or _read_entry(entry, data, _entry_key(data, offset + i)):
            encoded, source_counts, lengths = _encode_source(source, config, reading.tokenizer, reading.options,
                                                             reading.shapes, reading.auditor, split)
            reading.full_lengths += lengths
            split_counts.update(source_counts)
            reading.sources_info.append({
                "split": split, "path": source.path, "format": source.format, "weight": source.weight,
                "examples": sum(source_counts.values()),
                "kept": sum(n for s, n in source_counts.items() if s in TRAINED_STATUSES), "rows": len(encoded),
            })
            if len(encoded):
                parts.append(_weighted(encoded, source.weight, config.seed))
    reading.counts.update(split_counts)
    if not parts:
        raise DataError(f"{split} data: every example was dropped: {_reasons(split_counts, data.max_seq_len)}",
                        hint="raise data.max_seq_len, set data.overflow: truncate, or fix the examples")
    return concatenate_datasets(parts) if len(parts) > 1 else parts[0]


def _read_entry(entry: Any, data: DataConfig, key: str) -> list[DataSource]:
    """Read one configured entry, saying so at once (a large file takes a while before tokenizing starts)."""
    path = entry if isinstance(entry, str) else entry.path
    files = data_files(entry)
    large = files is None or sum(f.stat().st_size for f in files) >= LARGE_BYTES
    if large:
        log.info("data: reading %s", path)
    start = time.monotonic()
    sources = expand(entry, data.columns, data.format, data.text_split, key)
    if large:
        records = sum(len(s.records) for s in sources if s.records is not None)
        log.info("data: read %d records from %s in %.1f s", records, path, time.monotonic() - start)
    return sources


def _encode_source(
    source: DataSource, config: FtConfig, tokenizer: Any, options: EncodeOptions, shapes: list[tuple[str, str]],
    auditor: Auditor | None = None, split: str = "train",
) -> tuple[Dataset, Counter[str], list[int]]:
    auditor = auditor or Auditor()
    examples, shape = canonical_examples(source, config.data, config)
    if config.data.max_samples is not None and len(examples) > config.data.max_samples:
        examples = examples.select(range(config.data.max_samples))
    check_method_shape(config.method, shape, f"{source.path} (format {source.format})")
    _check_same_kind(shapes, shape, source.path)
    if options.overflow == "split" and shape != "text":
        raise DataError(f"{source.path}: data.overflow: split cuts raw text into max_seq_len chunks, but these "
                        f"examples are {shape!r} data, whose answers would be cut from their prompts",
                        hint="set data.overflow: truncate or drop, or leave it out (the default truncates them)")
    import pyarrow as pa
    import pyarrow.compute as pc

    if not tokenized_shape(shape):
        encoded, measured = _encode_plugin_shape(examples, shape, source, config, tokenizer, options)
        # The record checks (duplicates, placeholders) run on the examples as without a tokenizer.
        records = encode_table(examples, functools.partial(audit_batch, shape=shape), 1, f"checking {source.path}")
        if measured is not None:
            for name in measured.column_names:
                records = records.append_column(name, measured.column(name))
        auditor.add_source(source, shape, split, records, len(examples))
        if measured is None:
            return encoded, Counter({KEPT: len(encoded)}), []
        statuses = measured.column("status")
        lengths = pc.filter(measured.column("full_length"), pc.not_equal(statuses, EMPTY)).to_pylist()
        return encoded, Counter(statuses.to_pylist()), lengths
    if shape == "text" and _chat_method(config.method):
        raise DataError(
            f"{source.path}: method {config.method!r} trains on instruction data, but format {source.format!r} "
            "is raw text",
            hint="use alpaca, sharegpt, messages or completion data, or a method that trains on raw text (see `ft plugins`)",
        )
    if shape == "messages":
        check_chat_features(examples, tokenizer, options, source.where)
    from datasets import Dataset
    from datasets.table import InMemoryTable

    function = functools.partial(encode_and_audit, tokenizer=tokenizer, shape=shape, options=options)
    processes = tokenize_processes(config.data.num_proc, len(examples))
    table = encode_table(examples, function, processes, f"tokenizing {source.path}")
    auditor.add_source(source, shape, split, table, len(examples))
    statuses = table.column("status")
    source_counts = Counter(statuses.to_pylist())
    lengths = pc.filter(table.column("full_length"), pc.not_equal(statuses, EMPTY)).to_pylist()
    kept = table.filter(pc.is_in(statuses, pa.array(list(TRAINED_STATUSES))))
    kept = split_rows(kept.drop_columns(["status", "full_length", "reasoning_dropped", *AUDIT_COLUMNS]), options.max_seq_len)
    return Dataset(InMemoryTable(kept)), source_counts, lengths


def encode_and_audit(batch: dict[str, list[Any]], tokenizer: Any, shape: str, options: EncodeOptions) -> dict[str, list[Any]]:
    """A batch of canonical examples -> token rows (:func:`~ftcore.data.encode.encode_batch`) plus the
    audit's columns (:func:`~ftcore.data.audit.audit_batch`)."""
    return {**encode_batch(batch, tokenizer, shape, options), **audit_batch(batch, shape)}


def _check_same_kind(shapes: list[tuple[str, str]], shape: str, path: str) -> None:
    """Sources of a run are all of ftcore's shapes (mixed freely) or all of one plugin shape."""
    if shapes:
        first, first_path = shapes[0]
        if first != shape and not (tokenized_shape(first) and tokenized_shape(shape)):
            raise DataError(f"{path}: its examples are {shape!r} data but {first_path} gives {first!r} data; "
                            "the sources of one run must give examples of one shape")
    shapes.append((shape, path))


def _encode_plugin_shape(
    examples: Dataset, shape: str, source: DataSource, config: FtConfig, tokenizer: Any, options: EncodeOptions
) -> tuple[Dataset, Any]:
    """Examples of a plugin's shape, rendered and tokenized by the plugin that registered the shape, and the
    Arrow table of its measurements (``status``, ``full_length``, ``length_<part>``) when it gave them: the rows
    whose status is not kept or truncated are dropped and those columns removed."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from datasets import Dataset
    from datasets.table import InMemoryTable

    from ftcore.contract.plugins import get_registry

    registry = get_registry()
    encoded = registry.call("encode_examples", "shape", shape, shape=shape, examples=examples, tokenizer=tokenizer,
                            settings=options, method=config.method)
    if encoded is None:
        info = registry.owner("shape", shape)
        raise PluginError(f"shape {shape!r} is registered by {info.label} but its encode_examples returned None")
    if "status" not in encoded.column_names:
        return encoded, None
    table = _in_order(encoded).data.table
    if len(table) != len(examples):
        info = registry.owner("shape", shape)
        raise PluginError(f"{info.label}'s encode_examples gave {len(table)} rows with a status for "
                          f"{len(examples)} examples; measured rows must be one per example, in order")
    measured_columns = ["status", "full_length", *(c for c in table.column_names if c.startswith("length_"))]
    kept = table.filter(pc.is_in(table.column("status"), pa.array(list(TRAINED_STATUSES))))
    return Dataset(InMemoryTable(kept.drop_columns(measured_columns))), table.select(measured_columns)


def _reasons(counts: Counter[str], max_seq_len: int) -> str:
    parts = [f"{n} {reason}" + (f" ({max_seq_len})" if "max_seq_len" in reason else "") for reason, n in counts.most_common()]
    return ", ".join(parts) or "no examples"


def _weighted(dataset: Dataset, weight: float, seed: int) -> Dataset:
    """``weight`` times the examples: whole repeats plus a seeded sample for the fraction."""
    if weight == 1.0:
        return dataset
    n = len(dataset)
    target = max(1, round(weight * n))
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return dataset.select(order * (target // n) + order[: target % n])


def _split_off(train: Dataset, ratio: float, seed: int) -> tuple[Dataset, Dataset]:
    n_eval = max(1, round(len(train) * ratio))
    if n_eval >= len(train):
        raise DataError(
            f"data.eval_ratio: {ratio} of {len(train)} examples leaves nothing to train on",
            hint="lower eval_ratio or give an eval file",
        )
    parts = train.train_test_split(test_size=n_eval, seed=seed, shuffle=True)
    return parts["train"], parts["test"]


def _finish_split(dataset: Dataset, data: DataConfig, shape: str) -> tuple[dict[str, Any], Dataset]:
    """Summarise a split's lengths, then pack it if asked (token rows of ftcore's shapes only)."""
    from datasets import Dataset as HFDataset

    dataset = _in_order(dataset)
    if not {"input_ids", "labels"} <= set(dataset.column_names):
        return {"examples": len(dataset), "rows": len(dataset)}, dataset
    stats = split_stats(dataset, data.max_seq_len)
    if data.packing and tokenized_shape(shape):
        rows = pack_rows(list(zip(dataset["input_ids"], dataset["labels"], strict=True)), data.max_seq_len)
        dataset = HFDataset.from_dict(rows)
        stats["rows"] = len(dataset)
        stats["trained_tokens"] = _trained_tokens(dataset)  # each packed example's first label is masked
    return stats, dataset


def _in_order(dataset: Dataset) -> Dataset:
    """A shuffled or selected dataset's rows, copied into its order (``flatten_indices`` without the per-batch
    feature casting of ``datasets.map``, which made it the slowest step after tokenizing)."""
    if dataset._indices is None:
        return dataset
    from datasets import Dataset as HFDataset
    from datasets.table import InMemoryTable

    table = dataset.data.table.take(dataset._indices.column(0).combine_chunks())
    return HFDataset(InMemoryTable(table), info=dataset.info.copy(), split=dataset.split)


def split_stats(dataset: Dataset, max_seq_len: int) -> dict[str, Any]:
    """Example count, token counts and the token-length distribution of a tokenized split."""
    import pyarrow.compute as pc

    lengths = sorted(pc.list_value_length(dataset.data.column("input_ids")).to_pylist())
    return {
        "examples": len(dataset),
        "rows": len(dataset),
        "tokens": sum(lengths),
        "trained_tokens": _trained_tokens(dataset),
        "lengths": length_summary(lengths, max_seq_len),
    }


def _trained_tokens(dataset: Dataset) -> int:
    import pyarrow.compute as pc

    labels = pc.list_flatten(dataset.data.column("labels"))
    return int(pc.sum(pc.not_equal(labels, IGNORE)).as_py() or 0)


def length_summary(lengths: list[int], max_seq_len: int, bins: int = 8) -> dict[str, Any]:
    """Min/mean/percentiles/max and a fixed-width histogram (up to ``max_seq_len``) of sorted lengths.

    Lengths above ``max_seq_len`` are counted in the last bin.
    """
    if not lengths:
        return {}

    def pct(p: float) -> int:
        return lengths[min(len(lengths) - 1, int(p * len(lengths)))]

    width = max(1, -(-max_seq_len // bins))
    histogram = Counter(min(bins - 1, (n - 1) // width) for n in lengths)
    return {
        "min": lengths[0],
        "mean": round(sum(lengths) / len(lengths), 1),
        "p50": pct(0.5),
        "p90": pct(0.9),
        "p99": pct(0.99),
        "max": lengths[-1],
        "histogram": [[i * width + 1, (i + 1) * width, histogram.get(i, 0)] for i in range(bins)],
    }


def summary_line(stats: dict[str, Any]) -> str:
    """One log line: examples kept/truncated/dropped (by reason) and token counts."""
    dropped = ", ".join(f"{n} {reason}" for reason, n in stats["dropped"].items())
    train = stats["train"]
    split = f", {stats['split']} split into chunks" if stats.get("split") else ""
    line = (
        f"{stats['examples']} examples: {stats['kept']} kept ({stats['truncated']} truncated to "
        f"{stats['max_seq_len']} tokens{split}), {sum(stats['dropped'].values())} dropped"
        + (f" ({dropped})" if dropped else "")
        + f"; train {train['examples']} examples"
        + (f", {train['tokens']} tokens ({train['trained_tokens']} trained)" if "tokens" in train else "")
    )
    if stats["packing"]:
        line += f" packed into {train['rows']} rows"
    if stats.get("eval"):
        line += f"; eval {stats['eval']['examples']} examples"
    return line


def preview_data(config: FtConfig, tokenizer: Any) -> PreparedData:
    """The run's data as :func:`prepare_data` gives it, but unpacked and unshuffled, for looking at examples."""
    data = config.data.model_copy(update={"packing": False, "shuffle": False})
    return prepare_data(config.model_copy(update={"data": data}), tokenizer)


def inspect_records(config: FtConfig, count: int = 2) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The run's data without a tokenizer: its first ``count`` canonical examples and the audit of its records
    (formats, shapes, placeholders, duplicates, empty answers, preference columns; no token counts)."""
    data = config.data
    auditor, shown, total = Auditor(), [], 0
    all_entries = entries(data.train) + entries(data.eval)
    for i, entry in enumerate(all_entries):
        split = "train" if i < len(entries(data.train)) else "eval"
        for source in _read_entry(entry, data, _entry_key(data, i)):
            examples, shape = canonical_examples(source, data, config)
            if data.max_samples is not None and len(examples) > data.max_samples:
                examples = examples.select(range(data.max_samples))
            check_method_shape(config.method, shape, f"{source.path} (format {source.format})")
            table = encode_table(examples, functools.partial(audit_batch, shape=shape), 1, f"checking {source.path}")
            auditor.add_source(source, shape, split, table, len(examples))
            total += len(examples)
            shown += [examples[j] for j in range(min(count - len(shown), len(examples)))]
    stats = {"examples": total, "max_seq_len": data.max_seq_len, "dropped": {}}
    return shown, auditor.finish(stats, [], _skipped(all_entries))


# ----------------------------------------------------------------------------- evaluation helpers


def load_examples(path: str | DataFile, data_config: DataConfig) -> Dataset:
    """Canonical examples (``messages`` | ``prompt`` + ``completion`` | ``text``) of one file, directory or Hub id."""
    from datasets import concatenate_datasets

    sources = expand(path, data_config.columns, data_config.format, data_config.text_split)
    parts = [canonical_examples(source, data_config)[0] for source in sources]
    try:
        return concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    except ValueError as exc:
        raise DataError(f"{path}: its files give examples of different shapes ({exc})") from None


def prompt_and_reference(example: dict[str, Any], tokenizer: Any, data_config: DataConfig) -> tuple[str, str]:
    """The prompt text exactly as training renders it, and the reference answer.

    Chats render every message before the last assistant turn with the chat template and the generation
    prompt; the reference is that turn's content. Prompt/completion gives the prompt and the completion;
    raw text gives an empty prompt and the text. Tokenize the prompt with :func:`prompt_token_ids`.
    """
    shape = shape_of(example.keys())
    if shape == "messages":
        messages = with_system_prompt(example["messages"], data_config.system_prompt)
        last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
        if last is None:
            raise DataError("example has no assistant message to use as the reference")
        template = resolve_chat_template(data_config.chat_template, tokenizer)
        prompt = render_chat(messages[:last], tokenizer, template, generation_prompt=True, tools=example.get("tools"))
        return prompt, messages[last]["content"]
    if shape == "completion":
        return example["prompt"], example["completion"]
    return "", example["text"]


def as_supervised(example: dict[str, Any], tokenizer: Any, data_config: DataConfig) -> dict[str, Any]:
    """``example`` as ftcore's shapes have it: examples of ftcore's shapes unchanged, a plugin shape's as a
    ``prompt`` + ``completion`` pair of its prompt (a conversation rendered with the chat template and the
    generation prompt) and its :attr:`ftcore.ShapeSpec.reference` answer, for generation and loss metrics."""
    from ftcore.contract.plugins import get_registry

    shape = shape_of(example.keys())
    if tokenized_shape(shape):
        return example
    spec = get_registry().shape(shape)
    if spec.reference is None:
        raise DataError(f"examples of shape {shape!r} have no reference answer for generation or loss metrics; "
                        "choose metrics that score the shape itself")
    prompt, answer = example.get("prompt"), example.get(spec.reference)
    if isinstance(prompt, list):
        messages = with_system_prompt(prompt, data_config.system_prompt)
        template = resolve_chat_template(data_config.chat_template, tokenizer)
        prompt = render_chat(messages, tokenizer, template, generation_prompt=True)
    if isinstance(answer, list):
        answer = "".join(m.get("content", "") for m in answer if isinstance(m, dict))
    return {"prompt": prompt or "", "completion": answer or ""}


def prompt_token_ids(prompt: str, example: dict[str, Any], tokenizer: Any) -> list[int]:
    """Token ids of a prompt from :func:`prompt_and_reference`, with special tokens as training adds them."""
    chat = shape_of(example.keys()) == "messages"
    return tokenizer(prompt, add_special_tokens=not chat)["input_ids"]
