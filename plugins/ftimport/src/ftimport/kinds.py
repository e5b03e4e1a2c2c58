"""Preference and RL training as the tools name it, and TRL's trainer option names (TRL's own configs and
Axolotl's ``trl:`` block use them), mapped to ft's methods (ftpref: dpo, orpo, simpo, kto; ftrl: grpo) and
their ``method_options``. A kind ft has no method for is a ``blocking`` row: no config is written."""

from __future__ import annotations

from typing import Any

from ftimport.rules import BLOCKING, IGNORED, MAPPED, UNSUPPORTED, Conversion, Rule, ignore

PREFERENCE = ("dpo", "orpo", "simpo", "kto")
#: DPO losses TRL's DPOTrainer computes (ft's dpo passes loss_type to it).
DPO_LOSSES = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
              "aot_pair", "discopop", "apo_zero", "apo_down", "sft", "sigmoid_norm")


def kind_row(conv: Conversion, key: str, value: Any, method: str | None, why: str = "") -> None:
    """The row of the key that names the kind of training: ft's method, or blocking with ``why``."""
    if method is None:
        conv.record(key, BLOCKING, "", why)
    else:
        conv.record(key, MAPPED, f"method: {method}", why)


def option(name: str, methods: tuple[str, ...], convert: Any = None, target: str | None = None) -> Rule:
    """A method option: ``method_options.<target or name>`` when the method takes it, else ignored."""
    def rule(conv: Conversion, key: str, value: Any) -> None:
        if conv.method in methods:
            conv.put(key, f"method_options.{target or name}", convert(value) if convert else value)
        else:
            conv.record(key, IGNORED, "", f"a {'/'.join(methods)} option; this config trains with {conv.method}")
    return rule


def dpo_loss(conv: Conversion, key: str, value: Any) -> None:
    """``loss_type``: DPO's (a loss TRL knows) or GRPO's; other methods have none."""
    if conv.method == "dpo":
        if value in DPO_LOSSES:
            conv.put(key, "method_options.loss_type", value)
        else:
            conv.record(key, UNSUPPORTED, "", f"DPO loss {value!r} is not one of TRL's ({', '.join(DPO_LOSSES)})")
    elif conv.method == "grpo":
        conv.put(key, "method_options.loss_type", value)
    else:
        conv.record(key, IGNORED, "", f"a dpo/grpo option; this config trains with {conv.method}")


def scale_rewards(conv: Conversion, key: str, value: Any) -> None:
    """TRL's ``scale_rewards``: true/false (older TRL) or group/batch/none."""
    mapped = {True: "group", False: "none"}.get(value, value)
    option("scale_rewards", ("grpo",))(conv, key, mapped)


def use_vllm(conv: Conversion, key: str, value: Any) -> None:
    """``use_vllm: true`` samples with vLLM (ft's generation: vllm)."""
    option("generation", ("grpo",))(conv, key, "vllm" if value else "transformers")


def reward_entry(path: str, weight: float | None) -> tuple[dict[str, Any], str]:
    """A reward function named by a Python path (``module.function``) as an ftrl reward, with a note."""
    entry: dict[str, Any]
    if path.rsplit(".", 1)[-1] == "accuracy_reward":
        entry, note = {"name": "answer_match", "column": "solution"}, "TRL's accuracy_reward: ftrl's answer_match"
    else:
        module, _, function = path.replace(":", ".").rpartition(".")
        entry = {"name": "python", "function": f"{module}:{function}"}
        note = ("ft calls it as function(prompts=, completions=, examples=) where TRL passes dataset columns as "
                "keywords: check its signature")
    if weight is not None:
        entry["weight"] = float(weight)
    return entry, note


def reward_funcs(container: str = "") -> Rule:
    """``reward_funcs`` (with ``reward_weights`` beside it) → ``method_options.rewards``."""
    def rule(conv: Conversion, key: str, value: Any) -> None:
        if conv.method != "grpo":
            conv.record(key, IGNORED, "", f"a grpo option; this config trains with {conv.method}")
            return
        funcs = [value] if isinstance(value, str) else list(value)
        settings = conv.source.get(container) or {} if container else conv.source
        weights = settings.get("reward_weights") or [None] * len(funcs)
        if len(weights) != len(funcs):
            conv.record(key, UNSUPPORTED, "", f"{len(funcs)} rewards but {len(weights)} reward_weights")
            return
        entries = [reward_entry(str(f), w) for f, w in zip(funcs, weights, strict=True)]
        conv.put(key, "method_options.rewards", [e for e, _ in entries], "; ".join(sorted({n for _, n in entries})))
    return rule


#: TRL's DPO/ORPO/CPO/KTO/GRPO config names, at the top of a TRL config or in Axolotl's ``trl:`` block.
TRAINER_RULES: dict[str, Rule] = {
    "beta": option("beta", (*PREFERENCE, "grpo"), float),
    "loss_type": dpo_loss,
    "label_smoothing": option("label_smoothing", ("dpo",), float),
    "simpo_gamma": option("gamma", ("simpo",), float),
    "desirable_weight": option("desirable_weight", ("kto",), float),
    "undesirable_weight": option("undesirable_weight", ("kto",), float),
    "num_generations": option("num_generations", ("grpo",)),
    "max_completion_length": lambda conv, key, value: (
        option("max_completion_length", ("grpo",))(conv, key, value) if conv.method == "grpo"
        else conv.record(key, IGNORED, "", "ft cuts pairs to data.max_seq_len")),
    "max_prompt_length": ignore("ft cuts examples to data.max_seq_len"),
    "temperature": option("temperature", ("grpo",), float),
    "top_p": option("top_p", ("grpo",), float),
    "epsilon": option("epsilon", ("grpo",), float),
    "num_iterations": option("num_iterations", ("grpo",)),
    "scale_rewards": scale_rewards,
    "use_vllm": use_vllm,
    "vllm_mode": option("vllm_mode", ("grpo",)),
    "reward_funcs": reward_funcs(),
    "reward_weights": lambda conv, key, value: conv.record(key, MAPPED, "method_options.rewards[].weight"),
    "log_completions": ignore("ft logs rewards per step"),
    "precompute_ref_log_probs": ignore("ft precomputes the reference for full weights on its own"),
    "rpo_alpha": lambda conv, key, value: conv.record(key, UNSUPPORTED, "", "ft's dpo has no RPO (added NLL) term"),
    "cpo_alpha": lambda conv, key, value: conv.record(key, UNSUPPORTED, "", "ft's simpo has no CPO (NLL) term"),
}
