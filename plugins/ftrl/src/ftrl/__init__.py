"""ftrl: reinforcement learning from rewards for ft — method ``grpo`` through TRL, the ``prompt`` data shape, and
rewards as plugins.

A reward is registered like a method or a metric (``register_rewards``) and computed by its plugin
(``compute_reward``), so ``pip install ftreward-something`` adds one that configs name in
``method_options.rewards``. ftrl ships ``answer_match`` (GSM8K ``#### N``, ``\\boxed{}``, last number),
``format`` (a regular expression), ``length`` (a target length), ``python`` (a function of the user's, by
import path) and ``reward_model`` (a reward model trained with ftpref's ``rm``, loaded once per run). Nothing heavy
is imported here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ftlora.kit import load_adapter  # noqa: F401  (ftlora's: the adapter is LoRA's)

from ftcore import FormatSpec, MethodSpec, RewardSpec, ShapeSpec, hookimpl
from ftrl.options import GrpoOptions
from ftrl.reward_model import RewardModelOptions
from ftrl.rewards import AnswerMatchOptions, FormatOptions, LengthOptions, PythonOptions

__version__ = "0.1.0"
#: Needs plugin API 3 (memory_profile).
FTCORE_PLUGIN_API = 3

SHAPE = ShapeSpec("prompt", "a prompt (text or conversation) to sample completions for, with any columns a reward "
                  "reads (a reference answer, say)", columns=("prompt",), packing=False, reference="answer")
FORMAT = FormatSpec("prompt", "prompts for RL: prompt (text or messages) plus reward columns; map others with "
                    "data.columns, e.g. {prompt: question}", columns=("prompt",), shape="prompt", packing=False)
METHOD = MethodSpec("grpo", "GRPO: sample a group of completions per prompt, learn from their rewards (options: "
                    "rewards, num_generations, max_completion_length, temperature, beta, loss_type, LoRA's)",
                    options=GrpoOptions, shapes=("prompt",), generates=True)
REWARDS = (
    RewardSpec("answer_match", "1 when the completion's final number equals the reference answer's (GSM8K '#### N', "
               "\\boxed{}, last number)", options=AnswerMatchOptions),
    RewardSpec("format", "1 when the completion matches a regular expression (option: pattern)", options=FormatOptions),
    RewardSpec("length", "1 at a target length in characters, 1/(1+d/target) at distance d (option: target)",
               options=LengthOptions),
    RewardSpec("python", "a function of yours: module:function(prompts, completions, examples) -> floats",
               options=PythonOptions),
    RewardSpec("reward_model", "the score of a reward model trained with `ft train --method rm` (option: path, its run "
               "directory)", options=RewardModelOptions),
)


@hookimpl
def register_shapes() -> list[ShapeSpec]:
    return [SHAPE]


@hookimpl
def register_dataset_formats() -> list[FormatSpec]:
    return [FORMAT]


@hookimpl
def register_methods() -> list[MethodSpec]:
    return [METHOD]


@hookimpl
def register_rewards() -> list[RewardSpec]:
    return list(REWARDS)


@hookimpl(specname="load_dataset")
def load_prompts(source: Any) -> Any:
    """Records with a ``prompt`` (text, or a list of messages); every other column is kept for the rewards."""
    from ftcore import FieldProblem, map_records

    def convert(record: dict[str, Any]) -> dict[str, Any]:
        prompt = record.get("prompt")
        if isinstance(prompt, list):
            for i, message in enumerate(prompt):
                if not isinstance(message, dict) or not isinstance(message.get("content"), str):
                    raise FieldProblem(f"prompt[{i}]", "expected a message {role, content}")
        elif not isinstance(prompt, str) or not prompt:
            raise FieldProblem("prompt", "expected non-empty text or a list of messages")
        return dict(record)

    return map_records(source, ["prompt"], convert)


@hookimpl
def encode_examples(shape: str, examples: Any, tokenizer: Any, settings: Any) -> Any:
    """Prompts rendered with the run's chat template; TRL tokenizes them and samples completions."""
    from ftrl.trainer import render_prompts

    return render_prompts(examples, tokenizer, settings)


@hookimpl
def setup_reward(name: str, options: Any, context: Any) -> Any:
    """``reward_model`` loads its model once per run, on the policy's device; the other rewards need nothing."""
    if name != "reward_model":
        return None
    from ftrl.reward_model import load_scorer

    return load_scorer(options, context)


@hookimpl
def teardown_reward(name: str, state: Any) -> None:
    if name == "reward_model":
        from ftrl.reward_model import release

        release(state)


@hookimpl
def compute_reward(name: str, prompts: list[str], completions: list[str], examples: list[dict[str, Any]],
                   options: Any, state: Any) -> list[float] | None:
    if name == "reward_model":
        from ftrl.reward_model import score

        return score(prompts, completions, options, state)
    from ftrl.rewards import compute

    return compute(name, prompts, completions, examples, options)


@hookimpl
def model_load_kwargs(config: Any, options: Any) -> dict[str, Any]:
    from ftqlora.choice import load_kwargs

    return load_kwargs(options, config)


@hookimpl
def setup_peft(model: Any, config: Any, options: Any) -> Any:
    from ftqlora.choice import prepare_base

    return prepare_base(model, options, config)


@hookimpl
def make_trainer(model: Any, tokenizer: Any, args: Any, train_dataset: Any, eval_dataset: Any, callbacks: list[Any],
                 config: Any, options: Any) -> Any:
    from ftrl.trainer import build_trainer

    return build_trainer(model, tokenizer, args, train_dataset, eval_dataset, callbacks, config, options)


@hookimpl
def merge_adapter(model: Any, path: Path, options: Any) -> Any:
    from ftqlora.choice import merge

    return merge(model, path, options)


@hookimpl
def run_started(config: Any, run_dir: Path) -> None:
    """Remember where a GRPO run is built: its sample completions (``samples.jsonl``) go there."""
    if config.method != METHOD.name:
        return
    from ftrl.samples import RUN_DIR

    RUN_DIR[:] = [run_dir]


@hookimpl
def memory_profile(shape: Any, setup: Any) -> Any:
    """The adapter on a plain or quantized base (ftqlora's numbers); ftcore's own for ``base: full``."""
    from ftqlora.memory import qlora_memory

    return qlora_memory(shape, setup)
