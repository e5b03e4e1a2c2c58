"""TRL's ``GRPOTrainer`` built from the run ftcore prepared, with the run's rewards as its reward functions
(imported only when a run starts).

Each configured reward becomes one reward function named after it, so TRL logs ``rewards/<name>/mean`` and
``/std`` per step beside the overall ``reward``; ftcore writes them to ``metrics.jsonl``. A reward that raises
stops the run with one line naming the reward and the prompt it failed on.
"""

from __future__ import annotations

import dataclasses
import weakref
from pathlib import Path
from typing import Any

from ftcore import ConfigError, TrainingError

#: Keyword arguments TRL passes to reward functions that are not columns of the examples.
_NOT_COLUMNS = {"trainer_state", "log_extra", "log_metric", "environments", "completion_ids"}


def reward_function(rewards: Any, index: int) -> Any:
    """A TRL reward function scoring with reward ``index`` of the run's :class:`ftcore.RunRewards` (its plugin's
    ``compute_reward``, with the reward's validated options and the state its set-up returned)."""
    entry = rewards.entries[index]

    def reward(prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float]:
        columns = {k: v for k, v in kwargs.items() if k not in _NOT_COLUMNS}
        examples = [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)] \
            if columns else [{} for _ in completions]
        texts = [c if isinstance(c, str) else "".join(m.get("content", "") for m in c) for c in completions]
        try:
            scores = rewards.score(index, prompts, texts, examples)
        except Exception as exc:
            raise TrainingError(f"reward {entry.name!r} failed on the completion of prompt {str(prompts[0])[:80]!r}: "
                                f"{type(exc).__name__}: {exc}") from exc
        if scores is None or len(scores) != len(texts):
            raise TrainingError(f"reward {entry.name!r} returned {scores!r} for {len(texts)} completions")
        return [float(s) for s in scores]

    reward.__name__ = entry.name
    return reward


def grpo_arguments(args: Any, options: Any, config: Any) -> Any:
    """TRL's ``GRPOConfig``: every ``TrainingArguments`` field as ftcore set it, plus the GRPO settings."""
    from transformers import TrainingArguments
    from trl import GRPOConfig

    fields = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainingArguments) if f.init}
    settings = {
        "num_generations": options.num_generations,
        "max_completion_length": options.max_completion_length,
        "temperature": options.temperature,
        "top_p": options.top_p,
        "beta": options.beta,
        "loss_type": options.loss_type,
        "num_iterations": options.num_iterations,
        "epsilon": options.epsilon,
        "scale_rewards": options.scale_rewards,
        "reward_weights": [entry.weight for entry in options.rewards],
        "use_vllm": options.generation == "vllm",
        "vllm_mode": options.vllm_mode,
        "gradient_checkpointing": config.training.gradient_checkpointing,
        "log_completions": False,
    }
    batch = fields["per_device_train_batch_size"] * fields["gradient_accumulation_steps"]
    if batch % options.num_generations:
        raise ConfigError(f"method_options.num_generations: {options.num_generations} must divide the "
                          f"{batch} completions of a step (training.batch_size x gradient_accumulation)")
    try:
        return GRPOConfig(**{**fields, **settings})
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"method_options: {exc}") from exc


def build_trainer(model: Any, tokenizer: Any, args: Any, train_dataset: Any, eval_dataset: Any, callbacks: list[Any],
                  config: Any, options: Any) -> Any:
    """The GRPO trainer over the rendered prompts."""
    import warnings

    from ftqlora.choice import adapter_config

    from ftcore import RewardContext, RunRewards

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from trl import GRPOTrainer

    grpo_args = grpo_arguments(args, options, config)
    # ftcore checkpoints into <staging>/checkpoints: the run directory is its parent.
    context = RewardContext(device=args.device, run_dir=Path(args.output_dir).parent, tokenizer=tokenizer, config=config)
    rewards = RunRewards(options.rewards, context)
    trainer = GRPOTrainer(
        model=model, reward_funcs=[reward_function(rewards, i) for i in range(len(rewards.entries))],
        args=grpo_args, train_dataset=train_dataset, eval_dataset=eval_dataset,
        processing_class=tokenizer, callbacks=[*callbacks, closing_callback(rewards)],
        peft_config=adapter_config(model, options),
    )
    # A run that fails never reaches on_train_end: tear the rewards down when the trainer goes (close runs once).
    weakref.finalize(trainer, rewards.close)
    return trainer


def closing_callback(rewards: Any) -> Any:
    """A trainer callback that tears the run's rewards down when training ends."""
    from transformers import TrainerCallback

    class CloseRewards(TrainerCallback):
        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            rewards.close()

    return CloseRewards()


def render_prompts(examples: Any, tokenizer: Any, settings: Any) -> Any:
    """Conversational prompts rendered with the run's chat template and generation prompt; text prompts as written."""
    from ftcore import render_chat, with_system_prompt

    def render(example: dict[str, Any]) -> dict[str, Any]:
        prompt = example["prompt"]
        if isinstance(prompt, list):
            prompt = render_chat(with_system_prompt(prompt, settings.system_prompt), tokenizer, settings.template,
                                 generation_prompt=True)
        return {"prompt": prompt}

    return examples.map(render, desc="rendering prompts")
