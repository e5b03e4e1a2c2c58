"""The run configuration: frozen pydantic models, YAML loading, ``--set`` overrides, did-you-mean.

ftcore validates its own keys; each method's ``method_options`` are validated by the model the
method's plugin registered (:attr:`ftcore.MethodSpec.options`), so ftcore never knows them.
Every problem is reported at once, as ``key.path: message`` lines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ftcore.config.keys import submodel
from ftcore.errors import ConfigError
from ftcore.util.suggest import did_you_mean

#: ``training.micro_batch_tokens``' default (the token budget of one pass: :mod:`ftcore.run.passes`).
DEFAULT_PASS_TOKENS = "auto"
#: The smallest budget ``training.micro_batch_tokens`` accepts: fewer tokens per pass only adds overhead.
MIN_PASS_TOKENS = 16

#: ``report_to`` name -> (module whose presence means installed, pip package to install).
TRACKERS = {
    "azure_ml": ("azureml", "azureml-core"), "clearml": ("clearml", "clearml"), "comet_ml": ("comet_ml", "comet-ml"),
    "dagshub": ("dagshub", "dagshub"), "dvclive": ("dvclive", "dvclive"), "mlflow": ("mlflow", "mlflow"),
    "neptune": ("neptune", "neptune"), "swanlab": ("swanlab", "swanlab"), "tensorboard": ("tensorboard", "tensorboard"),
    "trackio": ("trackio", "trackio"), "wandb": ("wandb", "wandb"),
}

#: transformers' scheduler and optimizer names (``SchedulerType``, ``OptimizerNames``); a test keeps these
#: in step with the installed transformers, which is asked only about a name not listed here.
SCHEDULERS = (
    "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup", "inverse_sqrt",
    "reduce_lr_on_plateau", "cosine_with_min_lr", "cosine_warmup_with_min_lr", "warmup_stable_decay", "greedy",
)
OPTIMIZERS = (
    "adamw_torch", "adamw_torch_fused", "adamw_torch_xla", "adamw_torch_npu_fused", "adafactor", "adamw_anyprecision",
    "adamw_torch_4bit", "adamw_torch_8bit", "ademamix", "sgd", "adagrad", "adamw_bnb_8bit", "adamw_8bit",
    "ademamix_8bit", "lion_8bit", "lion_32bit", "paged_adamw_32bit", "paged_adamw_8bit", "paged_ademamix_32bit",
    "paged_ademamix_8bit", "paged_lion_32bit", "paged_lion_8bit", "rmsprop", "rmsprop_bnb", "rmsprop_bnb_8bit",
    "rmsprop_bnb_32bit", "galore_adamw", "galore_adamw_8bit", "galore_adafactor", "galore_adamw_layerwise",
    "galore_adamw_8bit_layerwise", "galore_adafactor_layerwise", "lomo", "adalomo", "grokadamw",
    "schedule_free_radam", "schedule_free_adamw", "schedule_free_sgd", "apollo_adamw", "apollo_adamw_layerwise",
    "stable_adamw",
)


def _installed(module: str) -> bool:
    """True when ``module`` can be imported (found without importing it)."""
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def transformers_names(kind: str) -> list[str]:
    """The names the installed transformers accepts for ``kind`` (``scheduler`` or ``optimizer``); imports it."""
    if kind == "scheduler":
        from transformers.trainer_utils import SchedulerType as names
    else:
        from transformers.training_args import OptimizerNames as names
    return [member.value for member in names]


def _known_name(value: str, listed: tuple[str, ...], kind: str) -> str:
    """``value`` when transformers knows it as a ``kind`` name, else a ValueError with a did-you-mean."""
    if value in listed:
        return value
    try:
        known = transformers_names(kind)
    except ImportError:
        known = list(listed)
    if value not in known:
        listed_names = ", ".join(known) if len(known) <= 12 else f"{len(known)} names, e.g. {', '.join(known[:6])}"
        raise ValueError(f"unknown {kind} {value!r}{did_you_mean(value, known)}; transformers knows {listed_names}")
    return value


class Strict(BaseModel):
    """Base of every config model: immutable, unknown keys rejected."""

    # inf and nan are never a meaningful setting (``epochs: .inf`` would train forever).
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class DataFile(Strict):
    """One data source: a local file or directory, or a Hub dataset, with a mixing weight."""

    path: str = Field(description="Local .jsonl/.json/.csv/.parquet/.txt file (optionally .gz/.bz2/.xz) or directory, or a Hub dataset id.")
    weight: float = Field(1.0, gt=0, description="Multiplies this source's examples when mixing: 2 repeats it twice, 0.5 keeps a seeded half.")
    format: str | None = Field(None, description="Format of this source; default: data.format or detected.")
    columns: dict[str, str] | None = Field(None, description="This source's own field mapping (replaces data.columns for it), e.g. {prompt: question, completion: answer}; values may be nested paths such as instances[0].input.")
    text_split: Literal["line", "blank_line", "file"] | None = Field(None, description="How this source's .txt files become examples; default: data.text_split.")
    split: str = Field("train", description="Split to read from a Hub dataset.")
    name: str | None = Field(None, description="Configuration name of a Hub dataset.")


DataSources = str | list[str | DataFile]


class DataConfig(Strict):
    """Where the examples come from and how they become token sequences."""

    train: DataSources = Field(description="Training data: a path, a Hub id, or a list of them (with weights).")
    eval: DataSources | None = Field(None, description="Evaluation data; default: a split of train by eval_ratio.")
    eval_ratio: float = Field(0.0, ge=0.0, lt=1.0, description="Share of train held out for evaluation.")
    format: str | None = Field(None, description="Dataset format (text, completion, alpaca, sharegpt, messages, ...); detected from the columns when omitted.")
    columns: dict[str, str] = Field(default_factory=dict, description="Map the format's field names to your columns, e.g. {instruction: question}; a column may be a nested path (meta.question, instances[0].input). A source in a list may give its own columns.")
    text_split: Literal["line", "blank_line", "file"] = Field("line", description="How .txt files become text examples: one per non-blank line, one per block separated by blank lines, or one per file.")
    chat_template: str | None = Field(None, description="'tokenizer' (its own), a built-in template (chatml, alpaca, chatml-tools, chatml-think) or a Jinja file; default: the tokenizer's, else chatml.")
    system_prompt: str | None = Field(None, description="System message added to chat examples that have none.")
    train_on_inputs: bool = Field(False, description="Also compute the loss on prompt/user tokens.")
    max_seq_len: int = Field(512, ge=8, description="Longest token sequence fed to the model.")
    overflow: Literal["split", "truncate", "drop"] | None = Field(None, description="What to do with examples longer than max_seq_len: split into max_seq_len chunks (raw text only), truncate or drop; default: split raw text (no token lost), truncate other examples.")
    packing: bool = Field(False, description="Concatenate examples into max_seq_len rows (no cross-example attention).")
    padding_free: bool = Field(True, description="Flatten each micro-batch into one unpadded row; attention stays within each example (same loss as padding, less compute).")
    group_by_length: bool = Field(False, description="Batch examples of similar length together (less padding).")
    shuffle: bool = Field(True, description="Shuffle the training examples (seeded).")
    cache_dir: str | None = Field(None, description="Tokenized-data cache; default: ~/.cache/ft/data or $FT_CACHE_DIR.")
    num_proc: int | None = Field(None, ge=1, description="Processes that tokenize; default: from 4,000 examples one per idle CPU core (up to 4), else 1.")
    max_samples: int | None = Field(None, ge=1, description="Read at most this many examples from each source (quick trials, debugging).")

    @field_validator("train", "eval")
    @classmethod
    def _some_source(cls, value: DataSources | None) -> DataSources | None:
        if value is not None and (value == [] or value == ""):
            raise ValueError("names no data: give a path, a Hub id or a list of them")
        return value


MICRO_BATCH_TOKENS = (
    "Run each micro-batch's forward and backward in passes of whole examples of at most this many tokens (an "
    "example longer than that runs alone): peak memory follows this budget instead of batch_size, with the same "
    "loss and gradients. null: the whole micro-batch in one pass. auto: on a GPU, whole micro-batches when the "
    "run's memory estimate (batch_size x max_seq_len tokens) fits 80% of the GPU's free memory; on a CPU, passes "
    "of at most max_seq_len tokens (512 when max_seq_len is shorter: the memory of one longest example, and a "
    "CPU gains little from larger passes) when they fit 80% of the free RAM; otherwise the largest power-of-two "
    "budget that fits (at least 256). The run log and ft_run.json's `passes` say what was chosen and why. Used by "
    "ft's own trainer (not by a method plugin's own trainer, make_trainer), in one process or DDP; DeepSpeed and "
    "FSDP runs take whole micro-batches."
)


class TrainingConfig(Strict):
    """How the optimizer runs; maps onto transformers.TrainingArguments."""

    epochs: float = Field(1.0, gt=0, description="Passes over the training data (ignored when max_steps > 0).")
    max_steps: int = Field(-1, description="Stop after this many optimizer steps (-1: use epochs).")
    learning_rate: float = Field(2e-4, gt=0, description="Peak learning rate.")
    lr_scheduler: str = Field("cosine", description="transformers scheduler name: linear, cosine, constant, ...")
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="Share of steps spent warming up.")
    warmup_steps: int = Field(0, ge=0, description="Warm-up steps (overrides warmup_ratio when > 0).")
    batch_size: int = Field(8, ge=1, description="Micro-batch size per device (with data.padding_free, examples are flattened, not padded).")
    gradient_accumulation: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    micro_batch_tokens: int | Literal["auto"] | None = Field(DEFAULT_PASS_TOKENS, description=MICRO_BATCH_TOKENS)
    eval_batch_size: int | None = Field(None, ge=1, description="Evaluation batch size (default: batch_size).")
    gradient_checkpointing: bool = Field(False, description="Recompute activations to save memory.")
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, ge=0)
    optimizer: str = Field("adamw_torch", description="transformers optimizer name (adamw_torch, adamw_8bit, ...).")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field("auto", description="Mixed precision: auto picks bf16 on GPUs that support it (fp16 on older ones) and on CPUs with bf16 instructions (AVX512_BF16 or AMX), else fp32.")
    kernels: Literal["auto", "chunked", "liger", "none"] = Field("auto", description="How the training loss is computed: chunked computes the LM head and cross-entropy over labelled positions only, a chunk at a time (no full logits; plain PyTorch); liger uses Liger-Kernel's fused linear cross-entropy (CUDA, pip install liger-kernel); none keeps the model's own forward; auto: chunked (liger only when named). Architectures ft does not know keep their own loss.")
    logging_steps: int = Field(10, ge=1)
    eval_steps: int | None = Field(None, ge=1, description="Evaluate every N steps (default: at the end).")
    save_steps: int = Field(500, ge=1, description="Checkpoint every N steps.")
    save_total_limit: int | None = Field(2, ge=1, description="Checkpoints kept.")
    report_to: list[str] = Field(default_factory=list, description="Trackers: tensorboard, wandb, mlflow, ... (none by default).")
    nan_policy: Literal["stop", "skip"] = Field("stop", description="On NaN/inf loss: stop with an error, or skip the batch.")
    dataloader_workers: int = Field(0, ge=0)
    torch_compile: bool = Field(False, description="Compile the model with torch.compile.")
    fsdp: dict[str, Any] | None = Field(None, description="Shard the model with FSDP (several GPUs); {} for the defaults. Keys: sharding (full_shard, shard_grad_op, ...), offload, layer_class (default: the model's decoder layer), and transformers' fsdp_config keys.")
    deepspeed: str | dict[str, Any] | None = Field(None, description="DeepSpeed config (ZeRO-2/3): a JSON path or an inline dict; \"auto\" values follow these training settings.")
    adam_beta1: float = Field(0.9, ge=0, lt=1, description="Adam(W) beta1.")
    adam_beta2: float = Field(0.999, ge=0, lt=1, description="Adam(W) beta2.")
    adam_epsilon: float = Field(1e-8, gt=0, description="Adam(W) epsilon.")
    lr_scheduler_kwargs: dict[str, Any] = Field(default_factory=dict, description="Extra arguments of the scheduler, e.g. {min_lr_rate: 0.1} for cosine_with_min_lr.")
    neftune_noise_alpha: float | None = Field(None, gt=0, description="NEFTune: add noise of this scale to the input embeddings while training (5 is common).")
    early_stopping_patience: int | None = Field(None, ge=1, description="Stop after this many evaluations without improvement of metric_for_best_model (needs eval data and eval_steps; keeps the best checkpoint).")
    early_stopping_threshold: float = Field(0.0, ge=0, description="Smallest change of the metric that counts as an improvement.")
    load_best_model_at_end: bool = Field(False, description="End with the weights of the best evaluated checkpoint (needs eval data and eval_steps; save_steps a multiple of eval_steps).")
    metric_for_best_model: str | None = Field(None, description="Metric that picks the best checkpoint, e.g. eval_loss (the default when a best model is wanted).")
    greater_is_better: bool | None = Field(None, description="Whether a larger metric_for_best_model is better (default: false for losses, true otherwise).")
    tf32: bool | None = Field(None, description="Allow TensorFloat-32 matmuls on Ampere or newer GPUs (None: the library default).")
    run_name: str | None = Field(None, description="Name of the run in trackers (default: the output directory's name).")
    project: str | None = Field(None, description="Project / experiment name in trackers (WANDB_PROJECT, MLFLOW_EXPERIMENT_NAME, trackio's project).")
    logging_dir: str | None = Field(None, description="Where tracker logs (TensorBoard event files, a local MLflow store) go; default: a logs/ folder next to the run, logs/<run name>.")
    trainer_args: dict[str, Any] = Field(default_factory=dict, description="Escape hatch: further transformers.TrainingArguments fields, passed as they are (names checked; recorded in the manifest).")

    @field_validator("report_to", mode="before")
    @classmethod
    def _report_to_list(cls, value: Any) -> Any:
        if value is None or value == "none":
            return []
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_sharding_engine(self) -> TrainingConfig:
        if self.fsdp is not None and self.deepspeed:
            raise ValueError("fsdp and deepspeed are both set; choose one of them")
        return self

    @model_validator(mode="after")
    def _best_model_needs_eval_steps(self) -> TrainingConfig:
        wants_best = self.load_best_model_at_end or self.early_stopping_patience is not None
        if wants_best and not self.eval_steps:
            raise ValueError("load_best_model_at_end and early_stopping_patience need eval_steps (and eval data)")
        if wants_best and self.eval_steps and self.save_steps % self.eval_steps:
            raise ValueError(f"save_steps ({self.save_steps}) must be a multiple of eval_steps ({self.eval_steps}) "
                             "so that every saved checkpoint has been evaluated")
        return self

    @field_validator("trainer_args")
    @classmethod
    def _known_trainer_args(cls, value: dict[str, Any]) -> dict[str, Any]:
        from ftcore.config.keys import check_trainer_args

        problems = check_trainer_args(value)
        if problems:
            raise ValueError("\n".join(problems))
        return value

    @field_validator("report_to")
    @classmethod
    def _known_trackers(cls, value: list[str]) -> list[str]:
        known = sorted(TRACKERS)
        for name in value:
            if name not in TRACKERS:
                raise ValueError(f"unknown tracker {name!r}{did_you_mean(name, known)}; known: {', '.join(known)}")
            if not _installed(TRACKERS[name][0]):
                raise ValueError(f"tracker {name!r} is not installed; pip install {TRACKERS[name][1]}, "
                                 "or remove it from training.report_to")
        return value

    @field_validator("kernels")
    @classmethod
    def _kernels_installed(cls, value: str) -> str:
        if value == "liger" and not _installed("liger_kernel"):
            raise ValueError("liger needs Liger-Kernel, which is not installed; pip install liger-kernel, "
                             "or use chunked (plain PyTorch, no extra package)")
        return value

    @field_validator("micro_batch_tokens", mode="before")
    @classmethod
    def _token_budget(cls, value: Any) -> Any:
        if value is None or value == "auto":
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"must be a number of tokens, auto or null (got {value!r})")
        if value < MIN_PASS_TOKENS:
            raise ValueError(f"must be at least {MIN_PASS_TOKENS} tokens, or auto or null (got {value})")
        return value

    @field_validator("max_steps")
    @classmethod
    def _steps(cls, value: int) -> int:
        if value == 0 or value < -1:
            raise ValueError(f"must be a positive number of steps, or -1 to train for `epochs` (got {value})")
        return value

    @field_validator("lr_scheduler")
    @classmethod
    def _known_scheduler(cls, value: str) -> str:
        return _known_name(value, SCHEDULERS, "scheduler")

    @field_validator("optimizer")
    @classmethod
    def _known_optimizer(cls, value: str) -> str:
        return _known_name(value, OPTIMIZERS, "optimizer")


class SpecialTokens(Strict):
    """Special tokens to set on the tokenizer; a token it does not know is added to the vocabulary."""

    bos_token: str | None = Field(None, description="Beginning-of-sequence token.")
    eos_token: str | None = Field(None, description="End-of-sequence token (generation stops at it).")
    pad_token: str | None = Field(None, description="Padding token (default: the tokenizer's, else its eos).")
    unk_token: str | None = Field(None, description="Unknown-word token.")
    sep_token: str | None = Field(None, description="Separator token.")
    cls_token: str | None = Field(None, description="Classifier token.")
    mask_token: str | None = Field(None, description="Mask token.")


class FtConfig(Strict):
    """A whole run: model, method and its options, data, training and where outputs go."""

    model: str = Field(description="Hub id, local model directory, or a .gguf file.")
    tokenizer: str | None = Field(None, description="Tokenizer to use (default: the model's).")
    special_tokens: SpecialTokens = Field(
        default_factory=SpecialTokens,
        description="Set the tokenizer's special tokens, e.g. {pad_token: '<|pad|>'}; new ones grow the embeddings.")
    added_tokens: list[str] = Field(
        default_factory=list,
        description="Tokens to add to the vocabulary, never split (e.g. ['<tool_call>', '</tool_call>']); the "
                    "embeddings grow and the new rows train, with adapter methods too.")
    method: str = Field("", validate_default=True, description="Training method, provided by a plugin (`ft plugins` "
                        "lists them); left out: the installed method that `ft recommend` tries first.")
    method_options: dict[str, Any] = Field(default_factory=dict, description="Options of the method, validated by its plugin.")
    output_dir: str = Field("runs/ft-run", description="Run directory written at the end.")
    seed: int = Field(42, ge=0, le=2**32 - 1, description="Random seed (0 to 2**32-1).")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field("auto", description="Dtype of the loaded weights.")
    trust_remote_code: bool = Field(False, description="Run model code from the Hub repo (only for repos you trust).")
    allow_pickle: bool = Field(False, description="Allow loading .bin/.pt pickle weights (unsafe for untrusted files).")
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit) of the model.")
    attn_implementation: Literal["eager", "sdpa", "flash_attention_2", "flash_attention_3", "flex_attention"] | None = Field(
        None, description="Attention kernel to load the model with (default: transformers' choice, sdpa where supported).")
    data: DataConfig
    training: TrainingConfig = Field(default_factory=TrainingConfig)

    @field_validator("method")
    @classmethod
    def _default_method(cls, value: str) -> str:
        if value:
            return value
        from ftcore.contract.plugins import default_method

        return default_method()

    @field_validator("added_tokens")
    @classmethod
    def _distinct_tokens(cls, value: list[str]) -> list[str]:
        if any(not token for token in value):
            raise ValueError("an added token is empty")
        repeated = sorted({token for token in value if value.count(token) > 1})
        if repeated:
            raise ValueError(f"tokens listed twice: {', '.join(repeated)}")
        return value

    @model_validator(mode="after")
    def _check_best_model_needs_eval(self) -> FtConfig:
        t, d = self.training, self.data
        if (t.load_best_model_at_end or t.early_stopping_patience) and d.eval is None and d.eval_ratio == 0:
            raise ValueError("training.load_best_model_at_end and training.early_stopping_patience need eval data: "
                             "set data.eval or data.eval_ratio")
        return self


# ----------------------------------------------------------------------------- loading


def _fields_at(model: type[BaseModel], path: tuple[Any, ...]) -> list[str]:
    """Field names of the (sub)model reached by following ``path`` from ``model``."""
    current: Any = model
    for part in path:
        if isinstance(part, int) or not (isinstance(current, type) and issubclass(current, BaseModel)):
            continue
        field_info = current.model_fields.get(part)
        if field_info is None:
            return []
        current = submodel(field_info.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def format_errors(error: ValidationError, model: type[BaseModel], prefix: str = "") -> list[str]:
    """Turn a pydantic error into ``key.path: message`` lines, with did-you-mean for unknown keys."""
    lines = []
    for item in error.errors():
        loc = tuple(item["loc"])
        # Union members add their type name to the location; drop those for readability.
        shown = [str(p) for p in loc if not (isinstance(p, str) and ("[" in p or p in {"str", "DataFile", "list"}))]
        key = prefix + ".".join(shown) if shown else prefix.rstrip(".") or "(top level)"
        if item["type"] == "extra_forbidden":
            lines.append(f"{key}: unknown key{_unknown_key_hint(model, loc, prefix)}")
        elif item["type"] == "missing":
            lines.append(f"{key}: required key is missing")
        else:
            message = item["msg"].removeprefix("Value error, ")
            nested = _nested_options_error(item)
            if nested is not None:  # a reward's options inside a method's: its own keys, under this one
                lines.extend(format_errors(nested.error, nested.model, prefix=f"{key}."))
            elif item["type"] == "value_error":
                # A validator may report several problems, one per line.
                lines.extend(f"{key}: {part}" for part in message.splitlines())
            else:
                lines.append(f"{key}: {message} (got {item.get('input')!r}){_literal_hint(item)}")
    return list(dict.fromkeys(lines))


def _literal_hint(item: dict[str, Any]) -> str:
    """Did-you-mean for a value outside a ``Literal``'s choices (a misspelt loss type, say)."""
    import re

    if item["type"] != "literal_error" or not isinstance(item.get("input"), str):
        return ""
    choices = re.findall(r"'([^']*)'", str((item.get("ctx") or {}).get("expected", "")))
    return did_you_mean(item["input"], choices)
def _nested_options_error(item: Any) -> Any:
    """The :class:`ftcore.contract.rewards.OptionsError` a validator raised for this error, if it was one."""
    from ftcore.contract.rewards import OptionsError
    error = (item.get("ctx") or {}).get("error")
    return error if isinstance(error, OptionsError) else None


def _unknown_key_hint(model: type[BaseModel], loc: tuple[Any, ...], prefix: str) -> str:
    """Did-you-mean for an unknown key: another section's key or a peer's name first, then a close spelling."""
    from ftcore.config.keys import misspelt_elsewhere, peer_hint, peer_target, where_it_belongs

    name = str(loc[-1])
    section = ".".join(str(p) for p in loc[:-1] if isinstance(p, str) and p in ("data", "training"))
    if model is FtConfig:
        hint = where_it_belongs(name, section, FtConfig)
        if hint:
            return hint
    elif prefix and (peer_target(name) or "").startswith(prefix):
        return peer_hint(peer_target(name))
    here = did_you_mean(name, _fields_at(model, loc[:-1]))
    if not here and model is FtConfig:
        here = misspelt_elsewhere(name, section, FtConfig) or ""
    return here


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b=value`` into (``["a", "b"]``, value parsed as YAML, so 1e-4 and true get their types)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. training.learning_rate=1e-4")
    key, raw = text.split("=", 1)
    if not key.strip():
        raise ConfigError(f"--set {text!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of ``raw`` with each ``a.b=value`` override applied."""
    result = _deep_copy(raw)
    for text in overrides:
        path, value = parse_override(text)
        node = result
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[path[-1]] = value
    return result


def _deep_copy(raw: dict[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in raw.items()}


class _UniqueKeyLoader(yaml.SafeLoader):
    """``safe_load`` that refuses a key given twice in one mapping (plain YAML silently keeps the last)."""


def _unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    first_line: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            if key in first_line:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first given on line {first_line[key]})", key_node.start_mark)
            first_line[key] = key_node.start_mark.line + 1
        except TypeError:  # an unhashable key: the constructor below reports it
            pass
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping with ``safe_load``; errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        loaded = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = str(getattr(exc, "problem", None) or exc).strip().splitlines()[0]
        raise ConfigError(f"{path}{where}: not valid YAML: {problem}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte offset {exc.start})") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level, got {type(loaded).__name__}")
    return loaded


def build_config(raw: dict[str, Any], source: str | None = None) -> FtConfig:
    """Validate a raw mapping into an :class:`FtConfig`, reporting every problem at once."""
    try:
        return FtConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, FtConfig), source=source) from exc


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    **values: Any,
) -> FtConfig:
    """Load a config from YAML (optional), apply ``--set`` overrides and explicit values, validate.

    ``values`` with a non-None value replace top-level keys (``method="qlora"`` from ``--method``).
    """
    raw = read_yaml(path) if path else {}
    raw = apply_overrides(raw, list(overrides))
    raw.update({k: v for k, v in values.items() if v is not None})
    return build_config(raw, source=str(path) if path else None)


def validate_method_options(config: FtConfig) -> tuple[Any, Any]:
    """Resolve the config's method against the installed plugins and validate its options.

    The options model is validated with the whole config as pydantic's validation context
    (``info.context["config"]``, an :class:`FtConfig`), so a method can check its options against the rest of the
    config (GRPO's ``num_generations`` against ``training.batch_size``) at ``ft config validate``.

    :returns: ``(MethodSpec, options)`` where options is the plugin's validated model (or ``None``).
    """
    from ftcore.contract.plugins import get_registry
    from ftcore.errors import PluginError

    registry = get_registry()
    try:
        spec = registry.method(config.method)
    except PluginError as exc:
        raise ConfigError(f"method: {exc}") from None
    if spec.options is None:
        if config.method_options:
            raise ConfigError(f"method_options: method {config.method!r} takes no options")
        return spec, None
    try:
        return spec, spec.options.model_validate(config.method_options, context={"config": config})
    except ValidationError as exc:
        problems = format_errors(exc, spec.options, prefix="method_options.")
        raise ConfigError([_owner_hint(line, config.method, registry.methods) for line in problems]) from exc


def _owner_hint(problem: str, method: str, methods: dict[str, Any]) -> str:
    """Name the method an unknown option belongs to: ``freeze_layers`` under ``qlora`` is a ``full`` option."""
    key, _, message = problem.partition(": ")
    if not message.startswith("unknown key") or not key.startswith("method_options."):
        return problem
    name = key.removeprefix("method_options.")
    owners = sorted(other for other, (spec, _info) in methods.items()
                    if other != method and spec.options is not None and name in spec.options.model_fields)
    if not owners:
        return problem
    return (f"{key}: not an option of method {method!r} but of {', '.join(map(repr, owners))}; "
            f"{method} and {owners[0]} cannot be combined, choose one method")


def validate_run_config(config: FtConfig) -> tuple[Any, Any]:
    """Every check that needs no heavy import: method, its options, data format name."""
    spec, options = validate_method_options(config)
    from ftcore.contract.plugins import get_registry
    from ftcore.errors import PluginError

    registry = get_registry()
    formats = [config.data.format] if config.data.format else []
    for source in _sources(config.data.train) + _sources(config.data.eval):
        if isinstance(source, DataFile) and source.format:
            formats.append(source.format)
    for name in formats:
        try:
            fmt = registry.format(name)
        except PluginError as exc:
            raise ConfigError(f"data.format: {exc}") from None
        if config.data.packing and not fmt.packing:
            raise ConfigError(f"data.packing: format {name!r} cannot be packed; set data.packing: false")
        shape = fmt.shape
        if shape is not None and not spec.trains_on(shape):
            others = sorted(n for n, (m, _) in registry.methods.items() if m.trains_on(shape))
            instead = f"methods that do: {', '.join(others)}" if others else f"no installed method trains on {shape} data"
            raise ConfigError(f"data.format: format {name!r} gives {shape!r} data, which method {spec.name!r} does not "
                              f"train on (it trains on {', '.join(spec.shapes)}); {instead}")
    return spec, options


def _sources(value: DataSources | None) -> list[str | DataFile]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def config_to_yaml(config: FtConfig) -> str:
    """The resolved config as YAML (what ``ft_config.yaml`` in a run directory holds)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def json_schema() -> dict[str, Any]:
    """JSON Schema of the run config (ftcore's keys; method options are the plugins')."""
    return FtConfig.model_json_schema()
