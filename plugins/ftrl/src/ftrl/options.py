"""``method_options`` of ``grpo``: what trains, how completions are sampled, the loss, and the rewards."""

from __future__ import annotations

from typing import Any, Literal

from ftqlora.choice import BaseChoiceOptions
from pydantic import Field, ValidationInfo, field_validator, model_validator

from ftcore import RewardEntry

#: The GRPO losses TRL's ``GRPOTrainer`` computes (checked against the installed TRL by the tests).
GrpoLoss = Literal["grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo", "luspo", "vespo"]


class GrpoOptions(BaseChoiceOptions):
    """Options of ``grpo``: LoRA (default), QLoRA or full weights (``base``), sampling, loss and rewards."""

    rewards: list[RewardEntry] = Field(min_length=1, description="Rewards to maximise: [{name: answer_match}, {name: format, pattern: ...}].")
    num_generations: int = Field(4, ge=2, description="Completions sampled per prompt (the group GRPO compares).")
    max_completion_length: int = Field(64, ge=1, description="Longest completion, in tokens.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling.")
    beta: float = Field(0.0, ge=0, description="KL penalty towards the base (0: none, and no reference pass).")
    loss_type: GrpoLoss = Field("dapo", description="TRL's GRPO loss (how token losses are normalised).")
    num_iterations: int = Field(1, ge=1, description="Optimisation passes over each batch of completions.")
    epsilon: float = Field(0.2, gt=0, description="Clipping range of the policy ratio.")
    scale_rewards: Literal["group", "batch", "none"] = Field("group", description="Normalise advantages by the group's std, the batch's, or not at all.")
    generation: Literal["transformers", "vllm"] = Field("transformers", description="Sampling engine: transformers' generate (any device) or vLLM (GPU, installed).")
    vllm_mode: Literal["colocate", "server"] = Field("colocate", description="vLLM in this process or a separate `trl vllm-serve` server.")
    raw_prompts: bool = Field(False, description="Feed plain-text prompts as written, not as a user message in the model's chat template.")
    sample_every: int = Field(10, ge=0, description="Every this many steps, append the step's completions and their rewards to samples.jsonl in the run (0: never).")

    @model_validator(mode="after")
    def _vllm_needs_a_gpu(self) -> GrpoOptions:
        if self.generation == "vllm":
            import importlib.util

            if importlib.util.find_spec("vllm") is None:
                raise ValueError("generation: vllm is not installed (pip install vllm, on a CUDA machine); "
                                 "use generation: transformers")
        return self

    @field_validator("num_generations")
    @classmethod
    def _groups_fit_the_batches(cls, value: int, info: ValidationInfo) -> int:
        """TRL samples whole groups: the completions of a step (and of an eval batch) must hold whole groups.
        Checked against the whole config, which ftcore passes as the validation context."""
        config = (info.context or {}).get("config")
        problem = batch_problem(value, config) if config is not None else None
        if problem:
            raise ValueError(problem)
        return value

    @property
    def reference_pass(self) -> bool:
        """With a KL penalty the base (adapter off) scores every completion without gradients."""
        return self.beta > 0


def batch_problem(num_generations: int, config: Any) -> str | None:
    """Why ``num_generations`` does not fit the run's batches (per process, as TRL counts them), or None."""
    t = config.training
    step = t.batch_size * t.gradient_accumulation
    if step % num_generations:
        return (f"{num_generations} must divide the {step} completions of a step "
                f"(training.batch_size {t.batch_size} x training.gradient_accumulation {t.gradient_accumulation}); "
                f"set num_generations to a divisor of {step} or the batch to a multiple of {num_generations}")
    evaluates = (config.data.eval is not None or config.data.eval_ratio > 0) and t.eval_steps
    eval_batch = t.eval_batch_size or t.batch_size
    if evaluates and eval_batch % num_generations:
        return (f"{num_generations} must divide the evaluation batch of {eval_batch} "
                f"(training.eval_batch_size, default training.batch_size); "
                f"set training.eval_batch_size to a multiple of {num_generations}")
    return None
