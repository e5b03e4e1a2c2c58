"""Load models and tokenizers: Hub ids, local directories, GGUF files and run directories.

Every failure a user can cause (a path that does not exist, a directory without weights, a corrupt
safetensors file, pickle weights without ``allow_pickle``) becomes a one-line :class:`ModelError`.
torch and transformers are imported inside the functions.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftcore.errors import ModelError, PluginError
from ftcore.util.paths import looks_local

if TYPE_CHECKING:
    from ftcore.artifacts.rundir import RunInfo
    from ftcore.config.schema import FtConfig
    from ftcore.contract.specs import MethodSpec

log = logging.getLogger(__name__)

_SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
_PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.pt", "model.ckpt")


@dataclass(frozen=True)
class LoadOptions:
    """How to load weights; the subset of the run config that matters for loading."""

    dtype: str = "auto"
    trust_remote_code: bool = False
    allow_pickle: bool = False
    revision: str | None = None
    attn_implementation: str | None = None

    @classmethod
    def from_config(cls, config: FtConfig) -> LoadOptions:
        return cls(config.dtype, config.trust_remote_code, config.allow_pickle, config.revision,
                   config.attn_implementation)


# ----------------------------------------------------------------------------- locating sources


def is_gguf(source: str) -> bool:
    """True when ``source`` names a GGUF file."""
    return source.lower().endswith(".gguf")


def resolve_source(source: str) -> str:
    """An existing local path made absolute, a Hub id unchanged; raise when a local path is missing."""
    path = Path(source).expanduser()
    if path.exists():
        return str(path.resolve())
    if looks_local(source, (".gguf",)):
        raise ModelError(f"model path does not exist: {source}")
    return source


def check_weights_dir(directory: Path, allow_pickle: bool) -> None:
    """Raise a ModelError unless ``directory`` holds a config and weights ft may load.

    The files checked are those ``from_pretrained`` would read, an index file's shards included: an index
    named like safetensors that points at ``.bin`` shards is pickle and needs ``allow_pickle``.
    """
    if not (directory / "config.json").is_file():
        raise ModelError(f"{directory}: no config.json, so this is not a transformers model directory")
    files = {p.name for p in directory.iterdir()}
    weights = _weight_files(directory, files)
    if not weights:
        raise ModelError(f"{directory}: no model weights found (expected model.safetensors)")
    missing = [name for name in weights if name not in files]
    if missing:
        raise ModelError(f"{directory}: the weight index names {missing[0]}, which is not there; the download is "
                         "incomplete")
    pickles = [name for name in weights if not name.endswith(".safetensors")]
    if pickles and not allow_pickle:
        raise ModelError(
            f"{directory}: weights are only in pickle format ({pickles[0]}), which can run code when loaded; "
            "set allow_pickle: true if you trust this file, or convert it to safetensors"
        )
    _check_safetensors(directory)


def _weight_files(directory: Path, files: set[str]) -> list[str]:
    """The weight files ``from_pretrained`` reads: the safetensors index's shards or safetensors files, else pickles."""
    if "model.safetensors.index.json" in files:
        return _index_shards(directory / "model.safetensors.index.json")
    safe = sorted(n for n in files if n.endswith(".safetensors"))
    if safe:
        return safe
    if "pytorch_model.bin.index.json" in files:
        return _index_shards(directory / "pytorch_model.bin.index.json")
    return sorted(files & set(_PICKLE_WEIGHTS)) + sorted(n for n in files if n.endswith(".bin"))


def _index_shards(index: Path) -> list[str]:
    """The shard file names an index's ``weight_map`` points at."""
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        return sorted({str(name) for name in weight_map.values()})
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelError(f"{index}: unreadable weight index ({type(exc).__name__}: {exc})") from exc


def _check_safetensors(directory: Path) -> None:
    """Read each safetensors header so a truncated or corrupt file fails with its name, not a traceback."""
    from safetensors import safe_open

    for file in sorted(directory.glob("*.safetensors")):
        try:
            with safe_open(str(file), framework="pt") as handle:
                handle.keys()
        except Exception as exc:
            raise ModelError(f"{file}: cannot read safetensors weights ({exc}); the file is corrupt or truncated") from exc


# ----------------------------------------------------------------------------- GGUF


def gguf_cache_root() -> Path:
    """Where dequantized GGUF models are cached: ``$FT_CACHE_DIR/gguf`` or ``~/.cache/ft/gguf``."""
    base = os.environ.get("FT_CACHE_DIR")
    return (Path(base) if base else Path.home() / ".cache" / "ft") / "gguf"


def gguf_as_model_dir(gguf_path: str | Path) -> Path:
    """A plain transformers model directory (safetensors + tokenizer) for a GGUF file, cached by hash.

    transformers dequantizes a GGUF file but keeps a GGUF quantizer on the model, which blocks both
    ``save_pretrained`` and ``Trainer``; rebuilding the model from its config without the
    ``quantization_config`` and loading the state dict gives the same logits and a trainable model.
    """
    path = Path(gguf_path).expanduser().resolve()
    if not path.is_file():
        raise ModelError(f"model path does not exist: {gguf_path}")
    from ftcore.data.cache import file_digest

    target = gguf_cache_root() / file_digest(path)[:32]
    if (target / "model.safetensors").is_file() and (target / "config.json").is_file():
        return target
    log.info("converting %s to safetensors (once; cached in %s)", path.name, target)
    staging = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        _convert_gguf(path, staging)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _convert_gguf(path: Path, output: Path) -> None:
    import importlib.util

    from transformers import AutoModelForCausalLM, AutoTokenizer

    if importlib.util.find_spec("gguf") is None:
        raise ModelError(f"{path}: reading GGUF files needs the gguf package (pip install 'ftcore[gguf]')")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        quantized = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name)
    except Exception as exc:
        raise ModelError(f"{path}: cannot read GGUF file: {type(exc).__name__}: {exc}") from exc
    model = _plain_copy(quantized)
    model.save_pretrained(str(output))
    tokenizer.save_pretrained(str(output))
    # An adapter trained on this base names this directory when the GGUF names no Hub id: transformers 4.x and
    # peft reading it must get the same RoPE base and tokenizer as ft did.
    from ftcore.artifacts.portable import make_portable

    make_portable(output)


def _plain_copy(quantized: Any) -> Any:
    """The same weights in a model class built from the config without its quantization_config."""
    from transformers import AutoModelForCausalLM

    config = quantized.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    model = AutoModelForCausalLM.from_config(config, dtype=quantized.dtype)
    model.load_state_dict(quantized.state_dict())
    model.generation_config = quantized.generation_config
    return model


# ----------------------------------------------------------------------------- loading


def _local_source(source: str, allow_pickle: bool) -> str:
    """Resolve a source to what ``from_pretrained`` takes; GGUF files become their cached directory."""
    resolved = resolve_source(source)
    if is_gguf(resolved):
        return str(gguf_as_model_dir(resolved))
    path = Path(resolved)
    if path.is_file():
        raise ModelError(f"{source}: expected a model directory or a .gguf file, got a file")
    if path.is_dir():
        check_weights_dir(path, allow_pickle)
    return resolved


def load_tokenizer(config: FtConfig) -> Any:
    """The run's tokenizer (``config.tokenizer`` or the model's), with a pad token set and the config's
    ``special_tokens`` and ``added_tokens`` applied."""
    source = config.tokenizer or config.model
    tokenizer = load_tokenizer_from(source, LoadOptions.from_config(config))
    special = {role: token for role, token in config.special_tokens.model_dump().items() if token is not None}
    if special or config.added_tokens:
        before = len(tokenizer)
        if special:
            tokenizer.add_special_tokens(special)
        if config.added_tokens:
            tokenizer.add_tokens(list(config.added_tokens), special_tokens=True)
        log.info("tokenizer: %s%s; vocabulary %d -> %d", ", ".join(f"{k}={v!r}" for k, v in special.items()),
                 (" and " if special and config.added_tokens else "")
                 + (f"{len(config.added_tokens)} added token(s)" if config.added_tokens else ""), before, len(tokenizer))
    return tokenizer


#: The ids of the tokens ft added to each model's embeddings (see :func:`added_token_ids`).
_ADDED_TOKENS: weakref.WeakKeyDictionary[Any, list[int]] = weakref.WeakKeyDictionary()


def fit_embeddings(model: Any, tokenizer: Any, *, initialise: bool = True) -> list[int]:
    """Grow ``model``'s input (and output) embeddings to ``len(tokenizer)`` when the tokenizer has more tokens.

    New rows start from the distribution of the existing ones (transformers' mean resizing) when
    ``initialise``; otherwise they are left for saved weights to overwrite. Returns the new token ids, which
    :func:`added_token_ids` also gives a method plugin's ``setup_peft``.
    """
    embeddings = model.get_input_embeddings()
    old = embeddings.num_embeddings if embeddings is not None else len(tokenizer)
    if len(tokenizer) <= old:
        return []
    model.resize_token_embeddings(len(tokenizer), mean_resizing=initialise)
    if tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
    ids = list(range(old, len(tokenizer)))
    _ADDED_TOKENS[model] = ids
    return ids


def added_token_ids(model: Any) -> list[int]:
    """The ids of the tokens this run added to ``model``'s vocabulary (``added_tokens``, new ``special_tokens``).

    A method that trains an adapter should train these rows of the embeddings (and of an untied output layer):
    they start untrained. Empty when the run added no token.
    """
    return list(_ADDED_TOKENS.get(model, []))


def load_tokenizer_from(source: str, options: LoadOptions = LoadOptions()) -> Any:
    """Load a tokenizer from a Hub id, local directory or GGUF file; pad falls back to eos."""
    from transformers import AutoTokenizer

    resolved = resolve_source(source)
    if is_gguf(resolved):
        resolved = str(gguf_as_model_dir(resolved))
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            resolved, trust_remote_code=options.trust_remote_code, revision=options.revision
        )
    except Exception as exc:
        raise ModelError(f"cannot load tokenizer from {source}: {_short(exc)}") from exc
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        # Batches need a pad token; labels mask padding with -100, so reusing eos is harmless.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(config: FtConfig, extra_kwargs: dict[str, Any] | None = None) -> Any:
    """The run's base model, with the method's ``model_load_kwargs`` (e.g. 4-bit quantization) applied."""
    if config.trust_remote_code:
        log.warning("trust_remote_code is on: code from %s will run on this machine", config.model)
    return load_pretrained(config.model, LoadOptions.from_config(config), extra_kwargs, kind=method_model_kind(config))


def load_pretrained(source: str, options: LoadOptions = LoadOptions(), extra_kwargs: dict[str, Any] | None = None,
                    device: str | None = None, kind: str = "causal_lm") -> Any:
    """Load a model of ``kind`` (a causal LM unless a method's :attr:`~ftcore.MethodSpec.model_kind` says otherwise)
    from a Hub id, local directory or GGUF file (safetensors unless allow_pickle)."""
    resolved = _local_source(source, options.allow_pickle)
    kwargs: dict[str, Any] = {
        "dtype": _torch_dtype(options.dtype),
        "trust_remote_code": options.trust_remote_code,
        "revision": options.revision,
        "use_safetensors": None if options.allow_pickle else True,
    }
    if options.attn_implementation:
        kwargs["attn_implementation"] = options.attn_implementation
    kwargs.update(_placement(device))
    kwargs.update(model_kind_kwargs(kind))
    kwargs.update(extra_kwargs or {})
    try:
        model = model_class(kind).from_pretrained(resolved, **kwargs)
    except Exception as exc:
        if "weights_only" in str(exc) or "Weights only load failed" in str(exc):
            # torch's own advice (weights_only=False) is the unsafe loader: never pass it on.
            raise ModelError(f"cannot load model {source}: its pickle weights hold more than tensors, which ft "
                             "refuses to load; convert the model to safetensors from a source you trust") from exc
        if not isinstance(exc, (OSError, ValueError, RuntimeError)):
            raise
        raise ModelError(f"cannot load model {source}: {_short(exc)}") from exc
    return _cpu_safe_dtype(model, options.dtype)


def _torch_dtype(name: str) -> Any:
    import torch

    return {"auto": "auto", "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def _placement(device: str | None) -> dict[str, Any]:
    """Put the model on this process's GPU (``LOCAL_RANK`` under torchrun/accelerate), else leave it on CPU."""
    import torch

    if device is not None:
        return {"device_map": {"": device}}
    if torch.cuda.is_available():
        return {"device_map": {"": int(os.environ.get("LOCAL_RANK", "0"))}}
    return {}


def _cpu_safe_dtype(model: Any, requested: str) -> Any:
    """float16 weights on CPU are slow and lack kernels; with dtype auto, train them in float32 there."""
    import torch

    on_cpu = next(model.parameters()).device.type == "cpu"
    if requested == "auto" and on_cpu and model.dtype == torch.float16 and not _is_quantized(model):
        model = model.float()
    return model


def _is_quantized(model: Any) -> bool:
    return getattr(model, "is_quantized", False) or getattr(model, "hf_quantizer", None) is not None


def _short(exc: BaseException) -> str:
    """The first line of an exception's message, for one-line errors."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


# ----------------------------------------------------------------------------- training helpers


def enable_gradient_checkpointing(model: Any) -> None:
    """Recompute activations in the backward pass; input grads on so frozen bases still backprop."""
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    model.config.use_cache = False


def count_parameters(model: Any) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts of ``model``, a quantized base's weights counted unpacked.

    A linear layer's weight counts ``in_features x out_features`` whatever its storage: a 4-bit layer keeps
    two weights per byte in a tensor of half that many elements.
    """
    trainable = total = 0
    seen: set[int] = set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if id(param) in seen:  # tied weights count once
                continue
            seen.add(id(param))
            n = param.numel()
            if name == "weight" and isinstance(getattr(module, "in_features", None), int) \
                    and isinstance(getattr(module, "out_features", None), int):
                n = max(n, module.in_features * module.out_features)
            total += n
            if param.requires_grad:
                trainable += n
    return trainable, total


# ----------------------------------------------------------------------------- a run's method


@dataclass(frozen=True)
class RunMethod:
    """The method a finished run was trained with, resolved against the plugins installed now."""

    name: str
    spec: MethodSpec
    options: Any
    config: FtConfig


def run_method(run: RunInfo) -> RunMethod:
    """The run's method spec, with the run's ``method_options`` validated by it (from ``ft_config.yaml``).

    Raises :class:`PluginError`, one line naming the method and the distribution to install, when no
    installed plugin provides the method.
    """
    from ftcore.artifacts.rundir import CONFIG
    from ftcore.config.schema import build_config, validate_method_options
    from ftcore.contract.plugins import get_registry

    name = run.manifest.get("method") or run.config.get("method") or ""
    registry = get_registry()
    if name not in registry.methods and ("method", name) not in registry.clashes:
        raise PluginError(_missing_method_message(run, name, {p.dist for p in registry.plugins}))
    config = build_config({"model": run.base_model, **run.config, "method": name}, source=str(run.path / CONFIG))
    spec, options = validate_method_options(config)
    return RunMethod(name, spec, options, config)


def _missing_method_message(run: RunInfo, name: str, loaded: set[str]) -> str:
    """Which distribution to install, judged by the plugins the run's manifest recorded and are not loaded now."""
    owner = run.manifest.get("method_plugin")
    if isinstance(owner, dict) and owner.get("dist"):
        return (f"{run.path} was trained with method {name!r}, which no installed plugin provides; install "
                f"{owner['dist']} (pip install {owner['dist']})")
    recorded = run.manifest.get("plugins") if isinstance(run.manifest.get("plugins"), dict) else {}
    missing = sorted({info["dist"] for info in recorded.values()
                      if isinstance(info, dict) and info.get("dist") and info["dist"] not in loaded})
    if len(missing) == 1:
        hint = f"install {missing[0]} (pip install {missing[0]})"
    elif missing:
        hint = f"install the one of {', '.join(missing)} that provides it (the run used them; they are not installed)"
    else:
        hint = "install the plugin that provides it (`ft plugins` lists what is installed)"
    return f"{run.path} was trained with method {name!r}, which no installed plugin provides; {hint}"


# ----------------------------------------------------------------------------- inference


def load_for_inference(model_or_run_dir: str | Path, dtype: str | None = None, device: str | None = None) -> tuple[Any, Any]:
    """``(model, tokenizer)`` ready for generation from a run directory, model directory, Hub id or GGUF file.

    A run directory of an adapter method loads its base model and has the method's plugin apply the
    adapter (``load_adapter``; not merged); one of a full fine-tune loads its saved weights. The model is
    in eval mode.
    """
    from ftcore.artifacts.rundir import is_run_dir, load_run

    source = str(model_or_run_dir)
    if is_run_dir(source):
        run = load_run(source)
        require_causal_lm(run, "generate text or be scored as a language model")
        method = run_method(run) if run.output == "adapter" else None
        options = LoadOptions(dtype or run.config.get("dtype", "auto"), bool(run.config.get("trust_remote_code")))
        tokenizer = load_tokenizer_from(str(run.path), options)
        if method is not None:
            base = load_pretrained(run.base_model, options, device=device)
            fit_run_vocabulary(base, run)
            model = _with_adapter(base, run, method)
        else:
            model = load_pretrained(str(run.path), options, device=device)
    else:
        options = LoadOptions(dtype or "auto")
        tokenizer = load_tokenizer_from(source, options)
        model = load_pretrained(source, options, device=device)
    return model.eval(), tokenizer


def fit_run_vocabulary(base: Any, run: RunInfo) -> None:
    """Grow ``base``'s embeddings to the vocabulary of the run that added tokens, before its adapter loads
    (the adapter holds the trained rows)."""
    size = run.manifest.get("vocab_size")
    embeddings = base.get_input_embeddings()
    if size and embeddings is not None and embeddings.num_embeddings < size:
        base.resize_token_embeddings(int(size), mean_resizing=False)


def _with_adapter(base: Any, run: RunInfo, method: RunMethod) -> Any:
    """``base`` with the run's adapter applied by the plugin of the run's method."""
    from ftcore.contract.plugins import get_registry

    model = get_registry().call("load_adapter", "method", method.name, model=base, path=run.path,
                                method=method.name, options=method.options)
    if model is None:
        raise PluginError(f"method {method.name!r}: its plugin did not load the adapter of {run.path} "
                          "(load_adapter returned None)")
    return model


# ----------------------------------------------------------------------------- model kinds


def method_model_kind(config: FtConfig) -> str:
    """The kind of model the run's method trains (:attr:`MethodSpec.model_kind`); ``causal_lm`` when unknown."""
    from ftcore.contract.plugins import get_registry

    try:
        return get_registry().method(config.method).model_kind
    except PluginError:
        return "causal_lm"


def model_class(kind: str) -> Any:
    """The ``transformers`` auto class that loads a model of ``kind``."""
    import transformers

    from ftcore.contract.specs import MODEL_KINDS

    return getattr(transformers, MODEL_KINDS[kind])


def model_kind_kwargs(kind: str) -> dict[str, Any]:
    """``from_pretrained`` arguments of ``kind``: a sequence classifier of ft's has one output, a scalar score."""
    return {"num_labels": 1} if kind == "sequence_classification" else {}


def run_model_kind(run: RunInfo) -> str:
    """The kind of model a run trained: its manifest's ``model_kind``, else its saved config's architecture."""
    kind = run.manifest.get("model_kind")
    if isinstance(kind, str):
        return kind
    try:
        architectures = json.loads((run.path / "config.json").read_text(encoding="utf-8")).get("architectures") or []
    except (OSError, ValueError):
        architectures = []
    return "sequence_classification" if any(a.endswith("ForSequenceClassification") for a in architectures) \
        else "causal_lm"


def require_causal_lm(run: RunInfo, what: str) -> None:
    """Raise a one-line :class:`ModelError` when ``run`` trained no causal LM, which ``what`` needs."""
    kind = run_model_kind(run)
    if kind != "causal_lm":
        method = run.manifest.get("method") or run.config.get("method") or "?"
        raise ModelError(f"{run.path} is a {kind} model (method {method!r}), which cannot {what}; it scores "
                         "text: use it as a reward (ftrl's reward_model) or load it with "
                         f"transformers.{model_class_name(kind)}")


def model_class_name(kind: str) -> str:
    """The name of the ``transformers`` class of ``kind``."""
    from ftcore.contract.specs import MODEL_KINDS

    return MODEL_KINDS[kind]
