"""Estimate the peak memory of a fine-tuning run, without loading the model.

The model's config is read (local directory, ``.gguf`` file or Hub id) and the model is built on
PyTorch's ``meta`` device, so parameters are counted exactly without loading or allocating weights.
What the estimate needs to know about a method comes from its :class:`~ftcore.MethodSpec` (whether it trains
every weight, ``output="model"`` or no ``adapter_rank_option``, or an adapter whose rank is the option named
``adapter_rank_option``; the bits per weight of its base, ``base_bits``) and from its plugin's
``memory_profile`` hook (a :class:`~ftcore.MemoryProfile`: how many parameters train, and the bytes of the
base's weights). ftcore itself knows no method's parametrisation or quantisation.

The formula
-----------
Notation: ``P`` all parameters; ``P_lin`` parameters of the Linear layers inside the decoder blocks
(every Linear but the output head); ``T`` trained parameters of an adapter (the method's
``MemoryProfile.trained``; ftlora's gives ``r * sum(in + out)`` over those Linears); ``L`` layers,
``h`` hidden size, ``i`` MLP intermediate size, ``V`` vocabulary, ``b`` micro-batch, ``s`` sequence length; ``w`` bytes per
weight of the load dtype (4 float32, 2 bfloat16/float16); ``c`` bytes per activation (2 under
bf16/fp16 mixed precision, else 4); ``q`` bits per weight of a quantized base (``base_bits`` below 16).

=============  =============================================================================
term           bytes
=============  =============================================================================
weights        the method's ``MemoryProfile.weights``, else ``P * w``; with no profile, a ``q``-bit base
               (``base_bits``) holds ``P_lin * q/8 + (P - P_lin) * w`` (ftqlora's profile adds the
               block scales of its 4-bit codes)
gradients      full: ``P * w``; adapters: ``T * 4`` (adapters are kept in float32)
optimizer      AdamW keeps two moments per trainable parameter in its dtype: full ``2 * P * w``,
               adapters ``2 * T * 4`` (``adamw_8bit``: 2 bytes instead of ``2 * w``)
adapter        ``T * 4``
activations    without checkpointing: ``n * L * A * c`` with ``A = 16 h + 5 i`` elements saved per
               token per decoder layer (norm inputs/outputs, q/k/v before and after RoPE, GQA-expanded
               k/v, attention output, MLP gate/up/activation/product, adapter inputs), where ``n`` is
               the tokens of one forward and backward pass: ``b * s``, or with a token budget ``N``
               (``training.micro_batch_tokens``) ``min(b * s, max(N, s))``. With gradient checkpointing
               only each layer's input is kept, ``n * L * h * c``, plus one layer recomputed at a time,
               ``n * A * c``.
loss head      with the full logits ``4 * n * V * 4`` (logits, their log-softmax, and two gradients of that
               size, all float32); with ft's chunked loss (``training.kernels``, the default on the
               architectures it supports) one chunk of logits and its gradient, ``2 * k * V * 4`` with
               ``k = min(n, max(64, 8M / V))`` rows, rounded down to a power of two
               (``ftcore.models.loss.chunk_rows``).
reference      methods that run a reference model each step without gradients (DPO, KTO on an adapter:
               ``MethodSpec.reference_pass``): its float32 log-probabilities, ``b * s * V * 4``
generation     methods that sample completions from the model each step (GRPO: ``MethodSpec.generates``): the
               key/value cache of every layer, ``b * s * L * 2 * h * c`` (an upper bound: grouped-query attention
               keeps less), plus one step's float32 logits per sequence, ``b * V * 4``
runtime        what the process holds before any model: on CPU the Python interpreter with torch,
               transformers, peft, datasets and the Trainer imported, plus the data pipeline:
               ``CPU_RUNTIME_BYTES`` (0.55 GB, the measured peak RSS of ``ft train`` on the 140k-parameter
               fixture model, whose own weights are negligible). On CUDA the context and kernels:
               ``CUDA_RUNTIME_BYTES`` (0.5 GB of device memory).
=============  =============================================================================

The total is the sum of these terms. A method whose examples are several sequences in one forward pass
(preference pairs: ``MethodSpec.sequences_per_example = 2``) multiplies ``b`` by that number in the
activation, loss-head and reference terms. These two method terms are not calibrated by measurement yet.

Calibration: ``benchmarks/recommend_calibration.py`` trains real CPU runs with ``ft train`` in a
subprocess and compares the estimate with the measured peak RSS (``ru_maxrss`` of the child);
``tests/test_recommend.py`` holds the fixture model to ±20% and, marked slow, SmolLM2-135M for
lora and full fine-tuning. Measured on a 2-core CPU machine (torch 2.13 CPU, float32, packed rows),
with the runtime term at 0.6 GB; estimate / measured peak RSS:

=============  ======  ==========  ====  ========  ========  =====
model          method  b x s       ckpt  estimate  measured  ratio
=============  ======  ==========  ====  ========  ========  =====
tiny fixture   lora    4 x 128     no    626 MB    561 MB    1.12
tiny fixture   full    4 x 128     no    627 MB    557 MB    1.13
SmolLM2-135M   lora    4 x 128     no    2576 MB   2620 MB   0.98
SmolLM2-135M   lora    2 x 256     yes   1653 MB   1794 MB   0.92
SmolLM2-135M   full    2 x 128     no    3354 MB   3138 MB   1.07
=============  ======  ==========  ====  ========  ========  =====

The runtime term was then set to the fixture's measured 0.55 GB (ratios shift by about -0.05 GB / total).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftcore.contract.specs import MemoryProfile
from ftcore.errors import ModelError

if TYPE_CHECKING:
    from ftcore.contract.specs import MethodSpec

GB = 1024**3
CPU_RUNTIME_BYTES = int(0.55 * GB)
CUDA_RUNTIME_BYTES = int(0.5 * GB)
#: The adapter rank assumed when a method's options do not give one.
DEFAULT_RANK = 16
_DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs to know about a model, read from its config on the meta device."""

    name: str
    params: int
    linear_params: int
    #: Sum of ``in_features + out_features`` over the Linear layers inside the decoder blocks.
    linear_in_out: int
    layers: int
    hidden: int
    intermediate: int
    vocab: int
    model_type: str = ""


@dataclass(frozen=True)
class Hardware:
    """The memory a run can use: one CUDA device's, or system RAM on a CPU machine."""

    device: str
    name: str
    memory: int
    available: int
    cores: int
    devices: int = 1
    bf16: bool = False


@dataclass(frozen=True)
class Setup:
    """One training setup to estimate.

    :param method: the method's name (shown in reports and written configs; the estimate does not read it).
    :param rank: the adapter's rank, or ``None`` when every weight trains (full fine-tuning).
    :param base_bits: bits per weight of the base's Linear layers while training (below 16: a quantized base).
    :param sequences: sequences each example becomes in a forward pass (2 for preference pairs).
    :param reference: whether each step also runs the reference model without gradients (DPO, KTO).
    :param generation: whether each step samples completions from the model first (GRPO).
    :param loss: ``chunked`` when the loss is computed a chunk of logits at a time (``training.kernels``, ft's own
        trainer on a supported architecture), ``logits`` when the full logits are built.
    :param pass_tokens: the token budget of one forward and backward pass (``training.micro_batch_tokens``), or
        ``None`` for whole micro-batches.
    """

    method: str
    micro_batch: int
    seq_len: int
    checkpointing: bool
    dtype: str = "float32"
    precision: str = "fp32"
    rank: int | None = DEFAULT_RANK
    optimizer: str = "adamw_torch"
    base_bits: int = 16
    sequences: int = 1
    reference: bool = False
    generation: bool = False
    loss: str = "chunked"
    pass_tokens: int | None = None
    #: The method's validated options, passed to its ``memory_profile`` hook (``None``: its defaults).
    options: Any = field(default=None, compare=False, repr=False)

    @property
    def full(self) -> bool:
        """True when every weight trains (no adapter)."""
        return self.rank is None


@dataclass(frozen=True)
class Estimate:
    """Peak memory of a setup, by term, in bytes."""

    setup: Setup
    terms: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """Sum of all terms."""
        return sum(self.terms.values())


def trains_adapter(spec: MethodSpec, options: Any = None) -> bool:
    """True when ``spec``'s method (with these options) trains a low-rank adapter rather than every weight."""
    return spec.output_for(options) != "model" and spec.adapter_rank_option is not None


def setup_for(spec: MethodSpec, options: Any = None, *, micro_batch: int, seq_len: int, checkpointing: bool,
              dtype: str = "float32", precision: str = "fp32", optimizer: str = "adamw_torch",
              rank: int | None = None, loss: str = "chunked", pass_tokens: int | None = None) -> Setup:
    """The :class:`Setup` of method ``spec``: its adapter rank (``rank``, else its options', else 16), its base's bits.

    A quantized base keeps its other parameters in float32, so its setup's ``dtype`` is float32. The chunked
    loss and the token budget belong to ft's own trainer: a method that trains on several sequences per example,
    runs a reference model or generates (a plugin's trainer: DPO, KTO, GRPO) gets the full logits and whole
    micro-batches.
    """
    passes: dict[str, Any] = {"sequences": spec.sequences_for(options), "reference": spec.reference_for(options),
                              "generation": spec.generates_for(options)}
    own_trainer = passes["sequences"] == 1 and not passes["reference"] and not passes["generation"]
    passes.update(loss=loss if own_trainer else "logits", pass_tokens=pass_tokens if own_trainer else None)
    if not trains_adapter(spec, options):
        return Setup(spec.name, micro_batch, seq_len, checkpointing, dtype, precision, None, optimizer, options=options,
                     **passes)
    if rank is None:
        rank = int(getattr(options, spec.adapter_rank_option or "", None) or DEFAULT_RANK)
    bits = spec.bits_for(options)
    dtype = dtype if bits >= 16 else "float32"
    return Setup(spec.name, micro_batch, seq_len, checkpointing, dtype, precision, rank, optimizer, bits, options=options,
                 **passes)


# ----------------------------------------------------------------------------- reading the model


def _config_of(model: str, trust_remote_code: bool = False) -> Any:
    """The model's ``transformers`` config; custom model code runs only with ``trust_remote_code``.

    ``trust_remote_code`` is always passed explicitly: left as None, transformers asks on stdin.
    """
    from transformers import AutoConfig

    path = Path(model).expanduser()
    try:
        if path.suffix == ".gguf":
            if not path.is_file():
                raise ModelError(f"model path does not exist: {model}")
            return AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name, trust_remote_code=False)
        if path.is_dir() and (path / "ft_run.json").is_file():
            from ftcore.artifacts.rundir import load_run

            return _config_of(load_run(path).base_model, trust_remote_code)
        return AutoConfig.from_pretrained(str(path) if path.exists() else model, trust_remote_code=trust_remote_code)
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"cannot read the config of {model}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc


def model_shape(model: str, trust_remote_code: bool = False) -> ModelShape:
    """Count a model's parameters on the meta device (no weights read or allocated).

    :param trust_remote_code: let a model with custom code run it (the run's setting; off for ``ft recommend``).
    """
    import torch
    from transformers import AutoModelForCausalLM

    config = _config_of(model, trust_remote_code)
    with torch.device("meta"):
        built = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    params = sum(p.numel() for p in built.parameters())
    head = built.get_output_embeddings()
    linear = in_out = 0
    for module in built.modules():
        if isinstance(module, torch.nn.Linear) and module is not head:
            linear += module.weight.numel() + (module.bias.numel() if module.bias is not None else 0)
            in_out += module.in_features + module.out_features
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return ModelShape(
        name=model, params=params, linear_params=linear, linear_in_out=in_out,
        layers=text.num_hidden_layers, hidden=text.hidden_size,
        intermediate=getattr(text, "intermediate_size", 4 * text.hidden_size), vocab=text.vocab_size,
        model_type=getattr(config, "model_type", ""),
    )


def detect_hardware() -> Hardware:
    """The first CUDA device (with how many there are), else this machine's RAM and cores."""
    import os

    import psutil
    import torch

    cores = os.cpu_count() or 1
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        free, _total = torch.cuda.mem_get_info(0)
        return Hardware("cuda", props.name, props.total_memory, free, cores, torch.cuda.device_count(), torch.cuda.is_bf16_supported())
    memory = psutil.virtual_memory()
    return Hardware("cpu", "CPU", memory.total, memory.available, cores)


# ----------------------------------------------------------------------------- the estimate


def activation_elements_per_token(shape: ModelShape) -> int:
    """Elements one decoder layer keeps for backward per token (see the module docstring)."""
    return 16 * shape.hidden + 5 * shape.intermediate


def estimate(shape: ModelShape, setup: Setup, device: str = "cpu") -> Estimate:
    """Peak memory of ``setup`` on ``shape``, term by term (the formula in the module docstring)."""
    c = 2 if setup.precision in ("bf16", "fp16") else 4
    tokens = pass_tokens(setup)
    terms = weight_terms(shape, setup, memory_profile(shape, setup))
    per_layer = activation_elements_per_token(shape)
    if setup.checkpointing:
        terms["activations"] = tokens * (shape.layers * shape.hidden + per_layer) * c
    else:
        terms["activations"] = tokens * shape.layers * per_layer * c
    terms["loss head"] = loss_head_bytes(shape, setup, tokens)
    if setup.reference:  # the reference's forward keeps no activations, only its float32 log-probabilities
        terms["reference"] = tokens * shape.vocab * 4
    if setup.generation:  # sampling holds every layer's keys and values, plus one step's float32 logits per sequence
        sequences = setup.micro_batch * setup.sequences
        terms["generation"] = tokens * shape.layers * 2 * shape.hidden * c + sequences * shape.vocab * 4
    terms["runtime"] = CUDA_RUNTIME_BYTES if device == "cuda" else CPU_RUNTIME_BYTES
    return Estimate(setup, terms)


def pass_tokens(setup: Setup) -> int:
    """Tokens of the largest forward and backward pass: the micro-batch, or at most the token budget (an example
    longer than the budget runs alone, so a pass may hold one whole sequence)."""
    tokens = setup.micro_batch * setup.seq_len * setup.sequences
    if setup.pass_tokens is None:
        return tokens
    return min(tokens, max(setup.pass_tokens, setup.seq_len))


def loss_head_bytes(shape: ModelShape, setup: Setup, tokens: int) -> int:
    """The loss head's float32 logits of a pass: all of them and three more tensors of that size (log-softmax and
    two gradients), or with the chunked loss one chunk of logits and its gradient (:data:`ftcore.models.loss.CHUNK_ELEMENTS`).
    """
    from ftcore.models import loss

    if setup.loss == "chunked" and shape.model_type in loss.SUPPORTED:
        rows = min(tokens, loss.chunk_rows(shape.vocab))
        return 2 * rows * shape.vocab * 4
    return 4 * tokens * shape.vocab * 4


def _state_bytes(setup: Setup, default: int) -> int:
    """Bytes per optimizer moment per trainable parameter: 2 for ``adamw_8bit``, else ``default``."""
    return 2 if "8bit" in setup.optimizer else default


def memory_profile(shape: ModelShape, setup: Setup) -> MemoryProfile:
    """How the run of ``setup`` holds its weights: its method's ``memory_profile`` hook, else ftcore's default
    (every weight trains when ``setup.rank`` is ``None``; otherwise the base at ``setup.base_bits``, no adapter)."""
    from ftcore.contract.plugins import get_registry

    registry = get_registry()
    if setup.method in registry.methods:
        profile = registry.call("memory_profile", "method", setup.method, method=setup.method, shape=shape,
                                setup=setup, options=setup.options)
        if profile is not None:
            return profile
    if setup.full:
        return MemoryProfile(trained=shape.params, adapter=False)
    if setup.base_bits >= 16:
        return MemoryProfile(trained=0)
    rest = (shape.params - shape.linear_params) * _DTYPE_BYTES[setup.dtype]
    return MemoryProfile(trained=0, weights=int(shape.linear_params * setup.base_bits / 8) + rest)


def weight_terms(shape: ModelShape, setup: Setup, profile: MemoryProfile) -> dict[str, int]:
    """Weights, adapter, gradients and optimizer moments: an adapter's in float32, the base's own in the run's dtype."""
    w = _DTYPE_BYTES[setup.dtype]
    weights = profile.weights if profile.weights is not None else shape.params * w
    if not profile.adapter:
        return {"weights": weights, "gradients": profile.trained * w,
                "optimizer": 2 * profile.trained * _state_bytes(setup, w)}
    return {
        "weights": weights,
        "adapter": profile.trained * 4,
        "gradients": profile.trained * 4,
        "optimizer": 2 * profile.trained * _state_bytes(setup, 4),
    }
