"""Load ft's merged model and GGUF export with whatever transformers is installed and compare with expected.json.

    python tests/compat/check_v4.py DIR     # DIR from make_fixture.py; run by ``nox -s compat4`` under 4.57

Uses transformers, torch and gguf only (no ft), so it runs in a venv with transformers 4.x. Checks the
config values (the RoPE base above all: 4.x silently falls back to 10000 when it cannot read it), the
tokenizer (ids, decoding back, special tokens, chat template) and the logits of the merged model
(float32: equal to 1e-5) and of the GGUF (float16 weights: within 1% of the largest logit). One known
difference of transformers 4.x's GGUF loader is left out: it prepends BOS to every llama-architecture
file whatever the file says, so there the GGUF tokenizer's ids are compared without special tokens.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

IDS = [[5, 17, 42, 99, 7, 300, 12, 64], [1, 2, 3, 4, 5, 6, 7, 8]]
TEXTS = ["Reverse: red cat -> cat red", "The river is 123 miles long!", "<|im_start|>user\nhello<|im_end|>\n"]
CHAT = [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue."}]
GGUF_TOLERANCE = 0.01


def major_version() -> int:
    import transformers

    return int(transformers.__version__.split(".")[0])


def rope_theta(config: Any) -> float | None:
    """The RoPE base this transformers uses: 5 reads ``rope_parameters``; 4.x reads ``rope_theta`` only (it keeps
    an unknown ``rope_parameters`` key as a plain attribute and ignores it)."""
    params = getattr(config, "rope_parameters", None)
    if major_version() >= 5 and isinstance(params, dict) and "rope_theta" in params:
        return float(params["rope_theta"])
    value = getattr(config, "rope_theta", None)
    return float(value) if value is not None else None


def tokenizer_values(tokenizer: Any) -> dict[str, Any]:
    plain = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in TEXTS]
    return {
        "ids": [tokenizer(text)["input_ids"] for text in TEXTS],
        "plain_ids": plain,
        "decoded": [tokenizer.decode(ids) for ids in plain],
        "chat": tokenizer.apply_chat_template(CHAT, tokenize=False),
        "eos_token": tokenizer.eos_token,
        "pad_token": tokenizer.pad_token,
    }


def logits_of(model: Any) -> list:
    import torch

    with torch.no_grad():
        return model(torch.tensor(IDS)).logits.float().tolist()


def read_values(merged: Path) -> dict[str, Any]:
    """What the installed transformers reads from a merged model directory."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.from_pretrained(merged)
    model = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32).eval()
    return {
        "rope_theta": rope_theta(config),
        "config": {
            key: getattr(config, key, None)
            for key in (
                "model_type",
                "vocab_size",
                "hidden_size",
                "num_key_value_heads",
                "rms_norm_eps",
                "eos_token_id",
            )
        },
        "tokenizer": tokenizer_values(AutoTokenizer.from_pretrained(merged)),
        "logits": logits_of(model),
    }


def max_diff(a: list, b: list) -> tuple[float, float]:
    """``(max |a - b|, max |b|)`` of two nested lists of floats."""
    import torch

    ta, tb = torch.tensor(a), torch.tensor(b)
    return float((ta - tb).abs().max()), float(tb.abs().max())


def check(directory: Path) -> list[str]:
    """The differences between what this transformers reads and ``expected.json``; empty when none."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    expected = json.loads((directory / "expected.json").read_text(encoding="utf-8"))
    got = read_values(directory / "merged")
    problems = [
        f"merged: {key} is {got[key]!r}, expected {expected[key]!r}"
        for key in ("rope_theta", "config", "tokenizer")
        if got[key] != expected[key]
    ]
    diff, _ = max_diff(got["logits"], expected["logits"])
    if diff > 1e-5:
        problems.append(f"merged: logits differ by {diff:.2e}")
    export = directory / "export"
    tokenizer = AutoTokenizer.from_pretrained(export, gguf_file="model.gguf")
    # transformers 4.x's GGUF loader ignores tokenizer.ggml.add_bos_token and always prepends BOS to a llama
    # file (llama.cpp does not); the vocabulary, merges and special tokens are compared without it there.
    skip = {"pad_token"} | ({"ids"} if major_version() < 5 else set())
    for key, value in tokenizer_values(tokenizer).items():
        if key not in skip and value != expected["tokenizer"][key]:
            problems.append(f"gguf: tokenizer {key} is {value!r}, expected {expected['tokenizer'][key]!r}")
    model = AutoModelForCausalLM.from_pretrained(export, gguf_file="model.gguf", dtype=torch.float32).eval()
    if rope_theta(model.config) != expected["rope_theta"]:
        problems.append(f"gguf: rope_theta is {rope_theta(model.config)}, expected {expected['rope_theta']}")
    diff, scale = max_diff(logits_of(model), expected["logits"])
    if diff > GGUF_TOLERANCE * scale:
        problems.append(f"gguf: logits differ by {diff:.2e} ({diff / scale:.2%} of max |logit|)")
    return problems


def main(argv: list[str]) -> int:
    import transformers

    directory = Path(argv[0] if argv else "compat4-fixture")
    problems = check(directory)
    for problem in problems:
        print(f"FAIL {problem}")
    verdict = "differs" if problems else "reads the same (config, tokenizer, logits; merged model and GGUF)"
    print(f"transformers {transformers.__version__}: {directory} {verdict}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
