"""The benchmark fixture: a ~28M-parameter Llama, its BPE tokenizer and alpaca-style instruction data.

Built once per benchmark run, offline and deterministically. The vocabulary comes from a corpus of
pseudo-words (so the tokenizer reaches a realistic 8k vocabulary and the output head costs what it costs
in a real model); the examples draw their token length from a log-normal distribution (median ~120
tokens, long tail cut at ~1000), the shape of real instruction-tuning sets such as Alpaca.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import asdict, dataclass
from pathlib import Path

_SYLLABLES = [c + v for c in "bcdfghklmnprstvwz" for v in ("a", "e", "i", "o", "u", "ai", "ou")]


@dataclass(frozen=True)
class FixtureSpec:
    """Model shape and data size of a fixture (the defaults give ~28M parameters)."""

    vocab_size: int = 8192
    hidden_size: int = 512
    layers: int = 6
    heads: int = 8
    kv_heads: int = 8
    intermediate_size: int = 1408
    examples: int = 4000
    median_tokens: int = 120
    max_tokens: int = 1024


QUICK = FixtureSpec(vocab_size=600, hidden_size=64, layers=2, heads=4, kv_heads=2, intermediate_size=128,
                    examples=200, median_tokens=40, max_tokens=160)


def words(rng: random.Random, n: int) -> list[str]:
    """``n`` pseudo-words from a Zipf-like lexicon, so frequent words become single tokens."""
    return [_word(min(int(rng.paretovariate(0.8)), 6000), rng) for _ in range(n)]


def _word(rank: int, rng: random.Random) -> str:
    # A word is a deterministic function of its rank: the same rank always spells the same word.
    local = random.Random(rank)
    return "".join(local.choice(_SYLLABLES) for _ in range(1 + rank % 3))


def tokenizer_corpus(n_lines: int, seed: int = 1) -> list[str]:
    """Lines of pseudo-words, digits and punctuation for training the benchmark tokenizer."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n_lines):
        text = " ".join(words(rng, rng.randint(5, 30)))
        lines.append(text.capitalize() + rng.choice([".", "?", "!", ",", ":"]) + f" {rng.randint(0, 9999)}")
    return lines


def build_tokenizer(output_dir: Path, vocab_size: int) -> Path:
    """A byte-level BPE tokenizer with ft's fixture specials and ChatML template, trained on the corpus above."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from ftcore.testing.fixtures import CHATML_TEMPLATE, SPECIAL_TOKENS

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    raw.train_from_iterator(tokenizer_corpus(max(2000, vocab_size * 3)), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|endoftext|>", pad_token="<pad>",
                                        additional_special_tokens=["<|im_start|>", "<|im_end|>"])
    tokenizer.chat_template = CHATML_TEMPLATE
    tokenizer.model_max_length = 2048
    tokenizer.save_pretrained(output_dir)
    return output_dir


def alpaca_records(n: int, median_tokens: int, max_tokens: int, seed: int = 0) -> list[dict[str, str]]:
    """Alpaca-style ``instruction``/``input``/``output`` records with log-normal total lengths."""
    rng = random.Random(seed)
    records = []
    for _ in range(n):
        # Words are ~1.1 tokens with the 8k vocabulary; the template adds ~12 tokens.
        target = min(max_tokens, max(16, int(rng.lognormvariate(math.log(median_tokens), 0.75))))
        n_words = max(6, int((target - 12) / 1.1))
        prompt_words = max(3, int(n_words * rng.uniform(0.15, 0.45)))
        has_input = rng.random() < 0.4
        instruction = " ".join(words(rng, prompt_words if not has_input else max(3, prompt_words // 2)))
        extra = " ".join(words(rng, prompt_words // 2)) if has_input else ""
        output = " ".join(words(rng, n_words - prompt_words))
        records.append({"instruction": instruction.capitalize() + "?", "input": extra, "output": output.capitalize() + "."})
    return records


def build(root: Path, spec: FixtureSpec) -> dict[str, object]:
    """Write ``root/model`` (weights + tokenizer) and ``root/train.jsonl``; return what was built."""
    from ftcore.testing.fixtures import build_tiny_llama

    root.mkdir(parents=True, exist_ok=True)
    build_tokenizer(root / "tokenizer", spec.vocab_size)
    build_tiny_llama(root / "model", root / "tokenizer", hidden_size=spec.hidden_size, layers=spec.layers,
                     heads=spec.heads, kv_heads=spec.kv_heads, intermediate_size=spec.intermediate_size,
                     max_positions=max(1024, spec.max_tokens + 64))
    records = alpaca_records(spec.examples, spec.median_tokens, spec.max_tokens)
    with (root / "train.jsonl").open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")
    info = {"spec": asdict(spec), "params": _param_count(root / "model")}
    (root / "fixture.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
    return info


def _param_count(model_dir: Path) -> int:
    from safetensors import safe_open

    with safe_open(str(model_dir / "model.safetensors"), framework="pt") as handle:
        return sum(math.prod(handle.get_slice(k).get_shape()) for k in handle.keys())  # noqa: SIM118 (safe_open is not iterable)
