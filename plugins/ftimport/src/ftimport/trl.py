"""TRL configs: a YAML of ``trl <command> --config`` or the command line itself (``trl dpo --key value``,
``python trl/scripts/dpo.py ...``), whose command word names the trainer: sft, dpo, orpo, kto and grpo map to
ft's methods, the others (reward, ppo, rloo, ...) are refused. A YAML alone does not name its trainer: keys only
a preference trainer reads make it ambiguous (refused), GRPO's and KTO's own keys name theirs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ftimport.axolotl import AXOLOTL_RULES
from ftimport.kinds import TRAINER_RULES, kind_row
from ftimport.rules import (
    BLOCKING,
    HF_RULES,
    IGNORED,
    MAPPED,
    Conversion,
    Rule,
    Tool,
    ignore,
    lora,
    method_key,
    name_list,
    num_proc,
    qlora,
    remote_code,
    target_modules,
    to,
    unsupported,
)

#: TRL's commands and script names → ft's method (None: supervised, what trains decides).
COMMANDS = {"sft": None, "dpo": "dpo", "orpo": "orpo", "kto": "kto", "grpo": "grpo"}
REFUSED = {"reward": "reward-model training (trl reward) is not a method ft offers",
           "ppo": "PPO is not a method ft offers (ft has grpo, which learns from reward functions)"}
#: Keys that only a preference trainer reads: a YAML with one of them but no command is ambiguous.
PREFERENCE_KEYS = ("beta", "loss_type", "max_prompt_length", "rpo_alpha", "label_smoothing",
                   "precompute_ref_log_probs")


def trl_command(source: dict[str, Any]) -> str | None:
    """The command word (``dpo`` of ``trl dpo`` or ``dpo.py``) when the source came from a command line."""
    command = source.get("command")
    return str(command).lower() if command else None


def trl_method(source: dict[str, Any]) -> str | None:
    """ft's method: the command's, else what GRPO's or KTO's own keys say; None for supervised (or refused)."""
    command = trl_command(source)
    if command is not None:
        return COMMANDS.get(command)
    if "reward_funcs" in source or "num_generations" in source:
        return "grpo"
    if "desirable_weight" in source or "undesirable_weight" in source:
        return "kto"
    return None


def command_row(conv: Conversion, key: str, value: Any) -> None:
    """The command word: ft's method for it, or blocking."""
    command = str(value).lower()
    if command in COMMANDS:
        kind_row(conv, key, value, conv.method, f"trl {command}")
    else:
        kind_row(conv, key, value, None, REFUSED.get(command, f"TRL's {command} trainer is not a method ft offers "
                                                              f"(ft has {', '.join(COMMANDS)})"))


def finish(conv: Conversion) -> None:
    """A YAML with a preference trainer's keys but no command does not say which trainer: refuse it."""
    if trl_command(conv.source) is None and conv.method == conv.base:
        keys = [k for k in PREFERENCE_KEYS if k in conv.source]
        if keys:
            conv.record("(trainer)", BLOCKING, "", f"{', '.join(keys)} belong to a TRL preference trainer, but the "
                        "config does not say which; import the command line instead (trl dpo --config FILE, in a file)")


def trl_base(source: dict[str, Any]) -> str:
    """TRL fine-tunes fully unless ``use_peft``; 4-bit loading makes it QLoRA."""
    if not source.get("use_peft"):
        return "full"
    return "qlora" if source.get("load_in_4bit") else "lora"


def trl_dataset(conv: Conversion, key: str, value: Any) -> None:
    """``dataset_name`` with its config and train split; the test split becomes eval data when evaluating."""
    source: dict[str, Any] = {"path": value}
    if conv.source.get("dataset_config"):
        source["name"] = conv.source["dataset_config"]
    if conv.source.get("dataset_train_split"):
        source["split"] = conv.source["dataset_train_split"]
    conv.put(key, "data.train", [source])
    strategy = conv.source.get("eval_strategy", conv.source.get("evaluation_strategy", "no"))
    # "no" read from a command line is YAML's false.
    if strategy not in (None, "no", False):
        conv.raw["data"]["eval"] = [{**source, "split": conv.source.get("dataset_test_split", "test")}]


def loss_on_answers(conv: Conversion, key: str, value: Any) -> None:
    """``completion_only_loss`` / ``assistant_only_loss``: loss on the answer only is ft's default."""
    if value is None:
        conv.record(key, IGNORED, "", "TRL's default")
        return
    conv.put(key, "data.train_on_inputs", not value)


TRL_RULES: dict[str, Rule] = {
    **HF_RULES,
    "model_name_or_path": to("model"),
    "model_revision": to("revision"),
    "dtype": to("dtype", lambda v: {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}.get(v, v)),
    "torch_dtype": to("dtype", lambda v: {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}.get(v, v)),
    "trust_remote_code": remote_code,
    "attn_implementation": to("attn_implementation"),
    "use_peft": method_key(),
    "lora_r": lora("r"),
    "lora_alpha": lora("alpha"),
    "lora_dropout": lora("dropout"),
    "lora_target_modules": lora("target_modules", target_modules),
    "lora_modules_to_save": lora("modules_to_save", name_list),
    "lora_task_type": ignore("ft trains causal language models"),
    "use_rslora": lora("use_rslora"),
    "use_dora": lora("use_dora"),
    "load_in_4bit": AXOLOTL_RULES["load_in_4bit"],
    "load_in_8bit": AXOLOTL_RULES["load_in_8bit"],
    "bnb_4bit_quant_type": qlora("quant_type"),
    "use_bnb_nested_quant": qlora("double_quant"),
    "dataset_name": trl_dataset,
    "dataset_config": lambda conv, key, value: conv.record(key, MAPPED, "data.train[0].name"),
    "dataset_train_split": lambda conv, key, value: conv.record(key, MAPPED, "data.train[0].split"),
    "dataset_test_split": lambda conv, key, value: (
        conv.record(key, MAPPED, "data.eval[0].split") if conv.get("data.eval") else
        conv.record(key, IGNORED, "", "no evaluation (eval_strategy: no)")),
    "dataset_streaming": unsupported("ft reads the whole dataset"),
    "max_length": to("data.max_seq_len"),
    "max_seq_length": to("data.max_seq_len"),
    "packing": to("data.packing"),
    "packing_strategy": ignore("ft packs without attention across examples"),
    "padding_free": to("data.padding_free"),
    "completion_only_loss": loss_on_answers,
    "assistant_only_loss": loss_on_answers,
    "dataset_text_field": lambda conv, key, value: (
        conv.record(key, IGNORED, "", "ft's default column name") if value == "text"
        else conv.put(key, "data.columns.text", value)),
    "dataset_num_proc": num_proc,
    "chat_template_path": to("data.chat_template"),
    "eos_token": to("special_tokens.eos_token"),
    "command": command_row,
    "config": lambda conv, key, value: conv.record(key, MAPPED, "", "its keys are imported, one row each"),
    **TRAINER_RULES,
    "use_liger_kernel": unsupported("Liger kernels are not offered"),
    "model_init_kwargs": unsupported("set model loading through ft's keys (dtype, attn_implementation, ...)"),
}


def parse_command_line(text: str) -> dict[str, Any] | None:
    """``--key value`` / ``--key=value`` / ``--flag`` arguments as a mapping (values typed as YAML scalars), with
    the command word as ``command``; None when ``text`` is not a command line.

    Words before the first option name the command: ``trl dpo``, ``python trl/scripts/dpo.py``,
    ``accelerate launch ... grpo.py``. Comments are skipped.
    """
    import shlex

    import yaml

    try:
        words = shlex.split(text.replace("\\\n", " "), comments=True)
    except ValueError:
        return None
    if not any(word.startswith("--") for word in words):
        return None
    found: dict[str, Any] = {}
    key: str | None = None
    for i, word in enumerate(words):
        if word.startswith("--"):
            key, _, value = word[2:].partition("=")
            found[key] = yaml.safe_load(value) if value else True
            if value:
                key = None
        elif key is not None:
            found[key] = yaml.safe_load(word)
            key = None
        elif word == "trl" and i + 1 < len(words) and not words[i + 1].startswith("-"):
            found.setdefault("command", words[i + 1])
        elif word.endswith(".py"):
            found.setdefault("command", re.sub(r"\.py$", "", Path(word).name))
    if "command" in found:
        found = {"command": found.pop("command"), **found}
    return found


def with_config_file(source: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    """A command line's ``--config FILE`` read and merged under the command line's own keys (as TRL does)."""
    from ftcore import ConfigError

    path = source.get("config")
    if not isinstance(path, str):
        return source
    import yaml

    file = Path(path) if Path(path).is_absolute() or Path(path).is_file() else base_dir / path
    try:
        loaded = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"--config {path}: cannot read it: {exc}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"--config {path}: expected a mapping of TRL settings")
    return {**{k: v for k, v in source.items() if k != "config"}, **loaded,
            **{k: v for k, v in source.items() if k != "config"}, "config": path}


TRL = Tool("trl", TRL_RULES, trl_base, trl_method, finish)
SIGNATURE = frozenset({"dataset_name", "use_peft", "max_length", "max_seq_length", "dataset_text_field",
                       "completion_only_loss", "assistant_only_loss", "dataset_train_split", "dataset_test_split",
                       "packing_strategy", "reward_funcs", "command"})
