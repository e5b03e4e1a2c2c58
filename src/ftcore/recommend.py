"""Estimate the peak memory of a fine-tuning run and recommend a setup that fits.

The model's config is read (local directory, ``.gguf`` file or Hub id) and the model is built on
PyTorch's ``meta`` device, so parameters are counted exactly without loading or allocating weights.

The formula
-----------
Notation: ``P`` all parameters; ``P_lin`` parameters of the Linear layers inside the decoder blocks
(the LoRA targets, i.e. every Linear but the output head); ``T`` adapter parameters,
``T = sum over targeted Linears of r * (in + out)``; ``L`` layers, ``h`` hidden size, ``i`` MLP
intermediate size, ``V`` vocabulary, ``b`` micro-batch, ``s`` sequence length; ``w`` bytes per
weight of the load dtype (4 float32, 2 bfloat16/float16); ``c`` bytes per activation (2 under
bf16/fp16 mixed precision, else 4).

=============  =============================================================================
term           bytes
=============  =============================================================================
weights        full, lora: ``P * w``; qlora: ``P_lin * 0.5 * (1 + 1/16)`` (NF4 codes and their
               block scales) ``+ (P - P_lin) * 4`` (peft's k-bit preparation keeps the rest in fp32)
gradients      full: ``P * w``; adapters: ``T * 4`` (adapters are kept in float32)
optimizer      AdamW keeps two moments per trainable parameter in its dtype: full ``2 * P * w``,
               adapters ``2 * T * 4`` (``adamw_8bit``: 2 bytes instead of ``2 * w``)
adapter        ``T * 4``
activations    without checkpointing: ``b * s * L * A * c`` with ``A = 16 h + 5 i`` elements saved per
               token per decoder layer (norm inputs/outputs, q/k/v before and after RoPE, GQA-expanded
               k/v, attention output, MLP gate/up/activation/product, LoRA inputs), plus the loss head
               ``4 * b * s * V * 4`` (logits, their log-softmax, and two gradients of that size, all
               float32). With gradient checkpointing only each layer's input is kept,
               ``b * s * L * h * c``, plus one layer recomputed at a time, ``b * s * A * c``.
runtime        what the process holds before any model: on CPU the Python interpreter with torch,
               transformers, peft, datasets and the Trainer imported, plus the data pipeline:
               ``CPU_RUNTIME_BYTES`` (0.55 GB, the measured peak RSS of ``ft train`` on the 140k-parameter
               fixture model, whose own weights are negligible). On CUDA the context and kernels:
               ``CUDA_RUNTIME_BYTES`` (0.5 GB of device memory).
=============  =============================================================================

The total is the sum of these terms. A setup *fits* when ``total <= (1 - margin) * memory`` (margin 15%
by default). The recommendation takes the first method of ``lora, qlora, full`` (or the one asked for)
that fits, with the largest micro-batch up to 8 that fits without checkpointing, else with
checkpointing; gradient accumulation brings the global batch to ``--global-batch``.

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

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftcore.errors import FtError, ModelError

GB = 1024**3
CPU_RUNTIME_BYTES = int(0.55 * GB)
CUDA_RUNTIME_BYTES = int(0.5 * GB)
METHODS = ("lora", "qlora", "full")
_DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs to know about a model, read from its config on the meta device."""

    name: str
    params: int
    linear_params: int
    lora_params_per_rank: int
    layers: int
    hidden: int
    intermediate: int
    vocab: int
    model_type: str = ""

    def adapter_params(self, rank: int) -> int:
        """Parameters of a rank-``rank`` adapter on every targeted Linear."""
        return rank * self.lora_params_per_rank


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
    """One training setup to estimate."""

    method: str
    micro_batch: int
    seq_len: int
    checkpointing: bool
    dtype: str = "float32"
    precision: str = "fp32"
    rank: int = 16
    optimizer: str = "adamw_torch"


@dataclass(frozen=True)
class Estimate:
    """Peak memory of a setup, by term, in bytes."""

    setup: Setup
    terms: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """Sum of all terms."""
        return sum(self.terms.values())


# ----------------------------------------------------------------------------- reading the model


def _config_of(model: str) -> Any:
    from transformers import AutoConfig

    path = Path(model).expanduser()
    try:
        if path.suffix == ".gguf":
            if not path.is_file():
                raise ModelError(f"model path does not exist: {model}")
            return AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name)
        if path.is_dir() and (path / "ft_run.json").is_file():
            from ftcore.rundir import load_run

            return _config_of(load_run(path).base_model)
        return AutoConfig.from_pretrained(str(path) if path.exists() else model)
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"cannot read the config of {model}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc


def model_shape(model: str) -> ModelShape:
    """Count a model's parameters on the meta device (no weights read or allocated)."""
    import torch
    from transformers import AutoModelForCausalLM

    config = _config_of(model)
    with torch.device("meta"):
        built = AutoModelForCausalLM.from_config(config)
    params = sum(p.numel() for p in built.parameters())
    head = built.get_output_embeddings()
    linear = lora = 0
    for module in built.modules():
        if isinstance(module, torch.nn.Linear) and module is not head:
            linear += module.weight.numel() + (module.bias.numel() if module.bias is not None else 0)
            lora += module.in_features + module.out_features
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return ModelShape(
        name=model, params=params, linear_params=linear, lora_params_per_rank=lora,
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
    w = _DTYPE_BYTES[setup.dtype]
    c = 2 if setup.precision in ("bf16", "fp16") else 4
    state_bytes = 2 if "8bit" in setup.optimizer else None
    tokens = setup.micro_batch * setup.seq_len
    terms: dict[str, int] = {}
    if setup.method == "full":
        terms["weights"] = shape.params * w
        terms["gradients"] = shape.params * w
        terms["optimizer"] = 2 * shape.params * (state_bytes or w)
    else:
        adapter = shape.adapter_params(setup.rank)
        if setup.method == "qlora":
            terms["weights"] = int(shape.linear_params * 0.5 * (1 + 1 / 16)) + (shape.params - shape.linear_params) * 4
        else:
            terms["weights"] = shape.params * w
        terms["adapter"] = adapter * 4
        terms["gradients"] = adapter * 4
        terms["optimizer"] = 2 * adapter * (state_bytes or 4)
    per_layer = activation_elements_per_token(shape)
    if setup.checkpointing:
        terms["activations"] = tokens * (shape.layers * shape.hidden + per_layer) * c
    else:
        terms["activations"] = tokens * shape.layers * per_layer * c
    terms["loss head"] = 4 * tokens * shape.vocab * 4
    terms["runtime"] = CUDA_RUNTIME_BYTES if device == "cuda" else CPU_RUNTIME_BYTES
    return Estimate(setup, terms)


# ----------------------------------------------------------------------------- the recommendation


@dataclass(frozen=True)
class Recommendation:
    """The chosen setup (or None when nothing fits), every estimate tried, and the budget."""

    shape: ModelShape
    hardware: Hardware
    memory: int
    budget: int
    chosen: Estimate | None
    smallest: dict[str, Estimate]
    gradient_accumulation: int = 1


def default_dtype(hardware: Hardware) -> tuple[str, str]:
    """``(weight dtype, precision)``: bf16 on GPUs that support it, float32 on CPU."""
    return ("bfloat16", "bf16") if hardware.device == "cuda" and hardware.bf16 else ("float32", "fp32")


def _candidates(method: str, seq_len: int, dtype: str, precision: str, rank: int) -> list[Setup]:
    """Setups from fastest to leanest: large micro-batches first, checkpointing only when needed."""
    return [Setup(method, b, seq_len, ckpt, dtype if method != "qlora" else "float32", precision, rank)
            for ckpt in (False, True) for b in (8, 4, 2, 1)]


def recommend(shape: ModelShape, hardware: Hardware, *, methods: tuple[str, ...] = METHODS, seq_len: int = 512,
              memory: int | None = None, margin: float = 0.15, rank: int = 16, global_batch: int = 16,
              dtype: str | None = None) -> Recommendation:
    """The first method (in ``methods`` order) and fastest setup whose estimate fits the budget."""
    memory = memory or hardware.memory
    budget = int(memory * (1 - margin))
    chosen_dtype, precision = default_dtype(hardware)
    if dtype:
        chosen_dtype = dtype
        precision = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}[dtype]
    chosen = None
    smallest: dict[str, Estimate] = {}
    for method in methods:
        estimates = [estimate(shape, s, hardware.device) for s in _candidates(method, seq_len, chosen_dtype, precision, rank)]
        smallest[method] = min(estimates, key=lambda e: e.total)
        fitting = [e for e in estimates if e.total <= budget]
        if fitting and chosen is None:
            chosen = fitting[0]
    accumulation = max(1, math.ceil(global_batch / chosen.setup.micro_batch)) if chosen else 1
    return Recommendation(shape, hardware, memory, budget, chosen, smallest, accumulation)


def cannot_fit_message(rec: Recommendation) -> str:
    """One line: nothing fits, with the smallest need of each method."""
    needs = ", ".join(f"{m} {_gb(e.total)} (micro-batch 1, checkpointing)" for m, e in rec.smallest.items())
    return (f"{rec.shape.name} cannot be fine-tuned at seq-len {next(iter(rec.smallest.values())).setup.seq_len} "
            f"in {_gb(rec.memory)} (budget {_gb(rec.budget)} after margin): smallest needs are {needs}; "
            "use a shorter --seq-len, a smaller model or a machine with more memory")


def _gb(n: int) -> str:
    return f"{n / GB:.2f} GB"


def config_for(rec: Recommendation, data: str = "data/train.jsonl", output_dir: str = "runs/recommended") -> dict[str, Any]:
    """A run config (what ``ft config validate`` accepts) for the chosen setup."""
    if rec.chosen is None:
        raise FtError(cannot_fit_message(rec))
    setup = rec.chosen.setup
    config: dict[str, Any] = {
        "model": rec.shape.name,
        "method": setup.method,
        "dtype": setup.dtype,
        "output_dir": output_dir,
        "data": {"train": data, "max_seq_len": setup.seq_len},
        "training": {
            "batch_size": setup.micro_batch,
            "gradient_accumulation": rec.gradient_accumulation,
            "gradient_checkpointing": setup.checkpointing,
            "precision": setup.precision,
            "optimizer": setup.optimizer,
        },
    }
    if setup.method != "full":
        config["method_options"] = {"r": setup.rank, "alpha": 2 * setup.rank}
    return config


def breakdown(rec: Recommendation) -> str:
    """A readable report: model, hardware, and the estimate of the chosen (or leanest) setups by term."""
    s, hw = rec.shape, rec.hardware
    lines = [
        f"model     {s.name}: {s.params / 1e6:.2f}M parameters ({s.linear_params / 1e6:.2f}M in adaptable Linear layers), "
        f"{s.layers} layers, hidden {s.hidden}, vocab {s.vocab}",
        f"hardware  {hw.device} {hw.name}: {_gb(hw.memory)} total, {_gb(hw.available)} available, {hw.cores} cores"
        + (f", {hw.devices} devices" if hw.devices > 1 else ""),
        f"memory    {_gb(rec.memory)}; budget {_gb(rec.budget)} after the safety margin",
        "",
    ]
    shown = ([rec.chosen] if rec.chosen else []) + [e for m, e in rec.smallest.items() if not rec.chosen or m != rec.chosen.setup.method]
    for est in shown:
        st = est.setup
        label = "RECOMMENDED" if est is rec.chosen else "leanest"
        lines.append(f"{label:<12} {st.method}: micro-batch {st.micro_batch} x seq {st.seq_len}, "
                     f"checkpointing {'on' if st.checkpointing else 'off'}, {st.dtype}, total {_gb(est.total)}")
        lines += [f"    {term:<12} {_gb(value):>10}" for term, value in est.terms.items()]
    if rec.chosen:
        lines.append(f"\ngradient accumulation {rec.gradient_accumulation} (global batch "
                     f"{rec.gradient_accumulation * rec.chosen.setup.micro_batch})")
    return "\n".join(lines)
