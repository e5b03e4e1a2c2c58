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

from ftcore import ConfigError, DataError, FtError, TrainingError

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
            raise TrainingError(f"{reward_label(entry)} failed on the completion of prompt {str(prompts[0])[:80]!r}: "
                                f"{_cause(exc)}") from exc
        return checked_scores(reward_label(entry), scores, len(texts))

    reward.__name__ = entry.name
    return reward


def _cause(exc: BaseException) -> str:
    """What went wrong inside the reward (the registry wraps a plugin's own error in a PluginError naming it)."""
    from ftcore import PluginError

    inner = exc.__cause__ if isinstance(exc, PluginError) and exc.__cause__ is not None else exc
    if isinstance(inner, SystemExit):
        return f"SystemExit({inner.code!r}) (the reward called sys.exit)"
    return str(inner) if isinstance(inner, FtError) else f"{type(inner).__name__}: {inner}"


def reward_label(entry: Any) -> str:
    """``reward 'NAME' (plugin P)``, with the function of a ``python`` reward: how errors name a reward."""
    from ftcore import provider

    try:
        plugin = provider("reward", entry.name)
    except Exception:  # named in the options already; never hide the real problem behind this one
        plugin = "?"
    function = getattr(entry.options, "function", None) if entry.name == "python" else None
    return f"reward {entry.name!r} ({f'function {function}, ' if function else ''}plugin {plugin})"


def checked_scores(label: str, scores: Any, count: int) -> list[float]:
    """``scores`` as floats when they are ``count`` finite real numbers; else a TrainingError naming the reward.

    TRL averages, ranks and logs what a reward returns: a NaN or inf would train on (or end in TRL's own
    traceback), a string or None fail deep inside it. Each score is checked here instead.
    """
    import math

    try:
        scores = list(scores)
    except TypeError:
        raise TrainingError(f"{label} returned {_shown(scores)}, not a list of {count} numbers (one per completion)"
                            ) from None
    if len(scores) != count:
        raise TrainingError(f"{label} returned {len(scores)} scores for {count} completions; it must return one "
                            "number per completion")
    checked = []
    for i, score in enumerate(scores):
        number = _number(score)
        if number is None or not math.isfinite(number):
            what = "not a finite number" if number is not None else f"a {type(score).__name__}, not a number"
            raise TrainingError(f"{label} returned {_shown(score)} for completion {i + 1} of {count} ({what}); "
                                "a reward must return one finite number per completion")
        checked.append(number)
    return checked


def _number(score: Any) -> float | None:
    """``score`` as a float when it is a number (a Python, NumPy or 0-d tensor one), else None."""
    if score is None or isinstance(score, (str, bytes)):
        return None
    try:
        return float(score)
    except (TypeError, ValueError, RuntimeError):
        return None


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


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
    from ftrl.samples import Recorder, samples_callback

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from trl import GRPOTrainer

    recorder = Recorder({entry.name: entry.weight for entry in options.rewards})
    train_dataset, eval_dataset = (chosen_prompts(d, options.raw_prompts) for d in (train_dataset, eval_dataset))
    grpo_args = grpo_arguments(args, options, config)
    # ftcore checkpoints into <staging>/checkpoints: the run directory is its parent.
    context = RewardContext(device=args.device, run_dir=Path(args.output_dir).parent, tokenizer=tokenizer, config=config)
    rewards = RunRewards(options.rewards, context)
    trainer = GRPOTrainer(
        model=model, reward_funcs=[recorder.wrap(reward_function(rewards, i)) for i in range(len(rewards.entries))],
        args=grpo_args, train_dataset=train_dataset, eval_dataset=eval_dataset,
        processing_class=tokenizer,
        callbacks=[*callbacks, samples_callback(recorder, options.sample_every), closing_callback(rewards)],
        peft_config=adapter_config(model, options),
    )
    # A run that fails never reaches on_train_end: tear the rewards down when the trainer goes (close runs once).
    weakref.finalize(trainer, close_after_failure, rewards)
    return trainer


def close_after_failure(rewards: Any) -> None:
    """Tear the rewards of a run that failed down; a reward that fails there too is a warning (the run's own
    error was reported), never a traceback from the garbage collector."""
    import logging

    try:
        rewards.close()
    except FtError as exc:
        logging.getLogger("ftcore").warning("%s", exc)


def closing_callback(rewards: Any) -> Any:
    """A trainer callback that tears the run's rewards down when training ends."""
    from transformers import TrainerCallback

    class CloseRewards(TrainerCallback):
        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            rewards.close()

    return CloseRewards()


#: The prompt as the data wrote it, kept beside the chat-rendered one for ``method_options.raw_prompts``.
RAW = "raw_prompt"


def render_prompts(examples: Any, tokenizer: Any, settings: Any) -> Any:
    """Prompts rendered with the run's chat template and generation prompt: conversations always, plain text (a
    GSM8K question, say) as one user message when the model's tokenizer has a chat template, keeping the text as written in ``raw_prompt`` for ``raw_prompts: true``."""
    from ftcore import render_chat, with_system_prompt

    chat = bool(getattr(tokenizer, "chat_template", None))

    def render(example: dict[str, Any]) -> dict[str, Any]:
        prompt = example["prompt"]
        if isinstance(prompt, str) and not chat:
            return {"prompt": prompt}
        messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
        rendered = render_chat(with_system_prompt(messages, settings.system_prompt), tokenizer, settings.template,
                               generation_prompt=True)
        return {"prompt": rendered, **({RAW: prompt} if isinstance(prompt, str) else {})}

    rendered = examples.map(render, desc="rendering prompts")
    measured = rendered.map(measure_prompts, batched=True, desc="measuring prompts",
                            fn_kwargs={"tokenizer": tokenizer, "max_length": settings.max_seq_len})
    long = measured["status"].count(TOO_LONG)
    if len(measured) and long / len(measured) > 0.5:
        raise DataError(f"{long} of {len(measured)} prompts are longer than data.max_seq_len ({settings.max_seq_len}) "
                        "tokens", hint="raise data.max_seq_len or shorten the prompts")
    return measured


#: Why a prompt is dropped: TRL's GRPO trainer does not truncate prompts, so a longer one would be generated
#: from whole, past the length the run was sized for.
TOO_LONG = "prompt longer than max_seq_len (GRPO does not truncate prompts)"


def measure_prompts(batch: dict[str, list[Any]], tokenizer: Any, max_length: int) -> dict[str, list[Any]]:
    """Each rendered prompt's length as TRL tokenizes it (``tokenizer(text=prompt)``) and whether it fits."""
    lengths = [len(ids) for ids in tokenizer(text=batch["prompt"])["input_ids"]]
    return {"status": ["kept" if n <= max_length else TOO_LONG for n in lengths], "full_length": lengths,
            "length_prompt": lengths}


def chosen_prompts(dataset: Any, raw: bool) -> Any:
    """The prompts TRL samples from: the rendered ones, or with ``raw`` the text as the data wrote it."""
    if dataset is None or RAW not in dataset.column_names:
        return dataset
    if raw:
        dataset = dataset.remove_columns("prompt").rename_column(RAW, "prompt")
        return dataset
    return dataset.remove_columns(RAW)
