"""Recommend a setup that fits this machine, and write it as a run config.

The memory of each candidate setup comes from :mod:`ftcore.models.estimate`. The methods considered are the installed
ones whose :attr:`~ftcore.MethodSpec.recommend` is set, lowest first (ftlora's ``lora``, then ftqlora's
``qlora``, then ftfull's ``full`` with the shipped plugins), or the one asked for. A setup *fits* when its
estimate is at most ``(1 - margin) * memory`` (margin 15% by default). The recommendation takes the first
method with a setup that fits, with the largest micro-batch up to 8 that fits without checkpointing, else
with checkpointing; gradient accumulation brings the global batch to ``--global-batch``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from ftcore.errors import FtError
from ftcore.models.estimate import (
    DEFAULT_RANK,
    GB,
    Estimate,
    Hardware,
    ModelShape,
    Setup,
    estimate,
    setup_for,
    trains_adapter,
)

if TYPE_CHECKING:
    from ftcore.contract.specs import MethodSpec


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
    #: The spec of every method considered, by name (for the options of the written config).
    specs: dict[str, MethodSpec] = field(default_factory=dict)


def recommended_methods() -> list[MethodSpec]:
    """The installed methods that take part in recommendations, in their :attr:`MethodSpec.recommend` order."""
    from ftcore.contract.plugins import get_registry

    specs = [spec for spec, _info in get_registry().methods.values() if spec.recommend is not None]
    return sorted(specs, key=lambda spec: (spec.recommend, spec.name))


def default_dtype(hardware: Hardware) -> tuple[str, str]:
    """``(weight dtype, precision)``: bf16 on GPUs that support it, float32 on CPU."""
    return ("bfloat16", "bf16") if hardware.device == "cuda" and hardware.bf16 else ("float32", "fp32")


def _candidates(spec: MethodSpec, seq_len: int, dtype: str, precision: str, rank: int,
                pass_tokens: int | None = None) -> list[Setup]:
    """Setups from fastest to leanest: large micro-batches first, checkpointing only when needed; each with ft's
    default token budget per pass (the written config leaves ``training.micro_batch_tokens`` at its default)."""
    return [setup_for(spec, micro_batch=b, seq_len=seq_len, checkpointing=ckpt, dtype=dtype, precision=precision, rank=rank,
                      pass_tokens=pass_tokens)
            for ckpt in (False, True) for b in (8, 4, 2, 1)]


def default_pass_tokens(hardware: Hardware) -> int | None:
    """The token budget of one pass that ft's default ``training.micro_batch_tokens`` gives on ``hardware``."""
    from ftcore.config.schema import DEFAULT_PASS_TOKENS
    from ftcore.run import passes

    return passes.budget_for(DEFAULT_PASS_TOKENS, hardware.device == "cuda")


def recommend(shape: ModelShape, hardware: Hardware, *, methods: Sequence[MethodSpec] | None = None, seq_len: int = 512,
              memory: int | None = None, margin: float = 0.15, rank: int = DEFAULT_RANK, global_batch: int = 16,
              dtype: str | None = None) -> Recommendation:
    """The first method (in ``methods`` order, default :func:`recommended_methods`) and fastest setup that fits."""
    methods = recommended_methods() if methods is None else list(methods)
    memory = memory or hardware.memory
    budget = int(memory * (1 - margin))
    chosen_dtype, precision = default_dtype(hardware)
    if dtype:
        chosen_dtype = dtype
        precision = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}[dtype]
    chosen = None
    smallest: dict[str, Estimate] = {}
    for spec in methods:
        setups = _candidates(spec, seq_len, chosen_dtype, precision, rank, default_pass_tokens(hardware))
        estimates = [estimate(shape, s, hardware.device) for s in setups]
        smallest[spec.name] = min(estimates, key=lambda e: e.total)
        fitting = [e for e in estimates if e.total <= budget]
        if fitting and chosen is None:
            chosen = fitting[0]
    accumulation = max(1, math.ceil(global_batch / chosen.setup.micro_batch)) if chosen else 1
    return Recommendation(shape, hardware, memory, budget, chosen, smallest, accumulation,
                          {spec.name: spec for spec in methods})


def cannot_fit_message(rec: Recommendation) -> str:
    """One line: nothing fits, with the smallest need of each method."""
    if not rec.smallest:
        return "no installed method takes part in recommendations (see `ft plugins`); name one with --method"
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
    options = _rank_options(rec.specs.get(setup.method), setup.rank)
    if options:
        config["method_options"] = options
    return config


def _rank_options(spec: MethodSpec | None, rank: int | None) -> dict[str, Any]:
    """The ``method_options`` that set the adapter's rank; an ``alpha`` option, when the method has one, at 2 x rank."""
    if spec is None or rank is None or not trains_adapter(spec):
        return {}
    options: dict[str, Any] = {spec.adapter_rank_option: rank}
    # The usual LoRA-style scaling: alpha = 2 x rank keeps the update's scale as the rank changes.
    if spec.options is not None and "alpha" in spec.options.model_fields:
        options["alpha"] = 2 * rank
    return options


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


def as_dict(rec: Recommendation, data: str = "data/train.jsonl") -> dict[str, Any]:
    """``ft recommend --json``: the model, the hardware, the budget, each method's leanest estimate and the choice."""

    def described(est: Estimate) -> dict[str, Any]:
        return {"setup": asdict(est.setup), "total_bytes": est.total, "terms_bytes": dict(est.terms)}

    return {
        "model": asdict(rec.shape),
        "hardware": asdict(rec.hardware),
        "memory_bytes": rec.memory,
        "budget_bytes": rec.budget,
        "fits": rec.chosen is not None,
        "recommended": {**described(rec.chosen), "gradient_accumulation": rec.gradient_accumulation,
                        "config": config_for(rec, data=data)} if rec.chosen else None,
        "leanest": {method: described(est) for method, est in rec.smallest.items()},
    }
