"""The rewards ftrl ships: a numeric answer match, a regular-expression format check, a length target, and a
user's own Python function by import path (named in the user's own config, so it is code the user chose to run).
"""

from __future__ import annotations

import importlib
import math
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


class AnswerMatchOptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    column: str = Field("answer", description="The example's column holding the reference answer.")
    extract: Literal["auto", "gsm8k", "boxed", "last_number"] = Field(
        "auto", description="How to find the answer: after '####', inside \\boxed{}, or the last number; auto tries them in that order.")


class FormatOptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    pattern: str = Field(description="Regular expression the completion must match.")
    full: bool = Field(False, description="The whole completion must match (default: anywhere in it).")


class LengthOptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    target: int = Field(ge=1, description="Target length in characters.")
    tolerance: int = Field(0, ge=0, description="No penalty within this many characters of the target.")


class PythonOptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    function: str = Field(description="module:function returning one float per completion, called as "
                          "function(prompts=..., completions=..., examples=...).")

    @field_validator("function")
    @classmethod
    def _module_and_name(cls, value: str) -> str:
        module, _, name = value.partition(":")
        if not module.strip() or not name.strip():
            raise ValueError(f"expected module:function (such as my_rewards:score), got {value!r}")
        return value


def _boxed(text: str) -> str | None:
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, i = 1, start + len("\\boxed{")
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j]
    return None


def extract_answer(text: str, how: str) -> str | None:
    """The final answer in ``text``: after GSM8K's ``####``, in ``\\boxed{}``, or its last number."""
    if how in ("auto", "gsm8k") and "####" in text:
        return text.split("####")[-1].strip()
    if how in ("auto", "boxed"):
        found = _boxed(text)
        if found is not None or how == "boxed":
            return found
    if how in ("auto", "last_number"):
        numbers = _NUMBER.findall(text)
        return numbers[-1] if numbers else None
    return None


def _as_number(text: str | None) -> float | None:
    if text is None:
        return None
    numbers = _NUMBER.findall(text)
    if not numbers:
        return None
    try:
        return float(numbers[-1].replace(",", ""))
    except ValueError:
        return None


def answer_match(completions: list[str], examples: list[dict[str, Any]], options: AnswerMatchOptions) -> list[float]:
    """1.0 when the completion's final answer (found as ``options.extract`` says) equals the reference's number."""
    scores = []
    for completion, example in zip(completions, examples, strict=True):
        if options.column not in example:
            raise KeyError(f"the example has no column {options.column!r} (columns: {', '.join(example) or 'none'})")
        # References come in every spelling (GSM8K's '#### N', a bare number, \boxed{}): read them leniently.
        want = _as_number(extract_answer(str(example[options.column]), "auto"))
        got = _as_number(extract_answer(completion, options.extract))
        scores.append(1.0 if want is not None and got is not None and math.isclose(want, got) else 0.0)
    return scores


def format_match(completions: list[str], options: FormatOptions) -> list[float]:
    """1.0 when the completion matches the pattern, else 0.0."""
    pattern = re.compile(options.pattern, re.DOTALL)
    match = pattern.fullmatch if options.full else pattern.search
    return [1.0 if match(c) else 0.0 for c in completions]


def length_target(completions: list[str], options: LengthOptions) -> list[float]:
    """1.0 within ``tolerance`` of the target length, ``1 / (1 + d / target)`` at a distance ``d`` beyond it: every
    step towards the target pays, however far off a completion starts."""
    scores = []
    for completion in completions:
        off = max(0, abs(len(completion) - options.target) - options.tolerance)
        scores.append(1.0 / (1.0 + off / options.target))
    return scores


def python_function(prompts: list[str], completions: list[str], examples: list[dict[str, Any]],
                    options: PythonOptions) -> list[float]:
    """Whatever the user's function returns (the trainer checks it is one finite number per completion)."""
    module, _, name = options.function.partition(":")
    try:
        function = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ValueError(f"cannot import {options.function!r}: {exc}") from None
    # Checked score by score (finite numbers, one per completion) by the trainer, as every reward's are.
    return function(prompts=prompts, completions=completions, examples=examples)


def compute(name: str, prompts: list[str], completions: list[str], examples: list[dict[str, Any]], options: Any) -> list[float]:
    """Dispatch to the reward ``name`` with validated options."""
    if name == "answer_match":
        return answer_match(completions, examples, AnswerMatchOptions.model_validate(options or {}))
    if name == "format":
        return format_match(completions, FormatOptions.model_validate(options or {}))
    if name == "length":
        return length_target(completions, LengthOptions.model_validate(options or {}))
    return python_function(prompts, completions, examples, PythonOptions.model_validate(options or {}))
