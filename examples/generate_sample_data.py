"""Write the sample data the example configs and the demo train on.

    python examples/generate_sample_data.py [--out-dir data] [--examples 400] [--seed 0]

The task is deliberately small and exact: reverse the order of a few words. A pretrained chat
model of SmolLM2's size gets it wrong most of the time, a few dozen LoRA steps teach it, and exact
match measures the difference. Files written:

- ``data/instructions.jsonl``: instruction / input / output records (the alpaca format);
- ``data/instructions_test.jsonl``: held-out records of the same task, for evaluation;
- ``data/sample.jsonl``: the same task as plain ``text`` records (continued pre-training);
- ``data/preferences.jsonl`` / ``data/preferences_test.jsonl``: preference pairs of the same task (TRL's
  conversational layout): the correct reversal is chosen, a corrupted one (the words as given, or two of them
  swapped) rejected, for ``dpo``, ``orpo`` and ``simpo``;
- ``data/unpaired.jsonl``: the same answers as single good/bad examples with a ``label``, for ``kto``;
- ``data/arithmetic.jsonl``: GSM8K-style prompts for ``grpo`` (``question``, ``answer`` ending in ``#### N``):
  small sums a reward can check exactly.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

WORDS = ["apple", "river", "stone", "cloud", "tiger", "lemon", "paper", "glass", "music", "winter", "garden", "silver", "rocket", "candle", "forest", "ocean", "pencil", "butter", "dragon", "planet", "mirror", "violin", "castle", "bridge", "orange", "summer", "window", "jacket", "rabbit", "button", "coffee", "yellow", "marble", "thunder", "pillow", "engine", "island", "ladder", "meadow", "puzzle", "saddle", "tomato", "wallet"]

INSTRUCTION = "Reverse the order of the words."


def reversal_example(rng: random.Random) -> dict[str, str]:
    """One instruction record: 3 to 5 distinct words and the same words in reverse order."""
    words = rng.sample(WORDS, rng.randint(3, 5))
    return {"instruction": INSTRUCTION, "input": " ".join(words), "output": " ".join(reversed(words))}


def as_text(record: dict[str, str]) -> dict[str, str]:
    """The record as one plain-text line for the ``text`` format."""
    return {"text": f"{record['instruction']}\nWords: {record['input']}\nReversed: {record['output']}"}


def corrupted(record: dict[str, str], rng: random.Random) -> str:
    """A wrong answer to ``record``: the words left in order, or the right answer with two words swapped."""
    words = record["output"].split()
    if rng.random() < 0.5:
        return record["input"]
    i, j = rng.sample(range(len(words)), 2)
    words[i], words[j] = words[j], words[i]
    return " ".join(words)


def as_preference(record: dict[str, str], rng: random.Random) -> dict[str, list[dict[str, str]]]:
    """The record as a conversational preference pair: the correct reversal chosen, a corrupted one rejected."""
    prompt = [{"role": "user", "content": f"{record['instruction']}\n\n{record['input']}"}]
    return {"prompt": prompt, "chosen": [{"role": "assistant", "content": record["output"]}],
            "rejected": [{"role": "assistant", "content": corrupted(record, rng)}]}


def as_unpaired(pair: dict[str, list[dict[str, str]]]) -> list[dict[str, object]]:
    """A preference pair as two labelled examples (KTO's layout)."""
    return [{"prompt": pair["prompt"], "completion": pair[side], "label": side == "chosen"}
            for side in ("chosen", "rejected")]


def arithmetic(rng: random.Random) -> dict[str, str]:
    """A GSM8K-style record: a small sum in words, its worked answer ending in ``#### N``."""
    a, b = rng.randint(2, 40), rng.randint(2, 40)
    return {"question": f"A box holds {a} apples and {b} more are added. How many apples are in the box?",
            "answer": f"{a} + {b} = {a + b}\n#### {a + b}"}


def distinct_examples(n: int, seed: int) -> list[dict[str, str]]:
    """``n`` records with distinct inputs, so the test split never repeats a training input."""
    rng = random.Random(seed)
    seen: set[str] = set()
    records = []
    while len(records) < n:
        record = reversal_example(rng)
        if record["input"] not in seen:
            seen.add(record["input"])
            records.append(record)
    return records


def write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", default="data", type=Path)
    parser.add_argument("--examples", default=400, type=int, help="training records (the test split adds 50)")
    parser.add_argument("--seed", default=0, type=int)
    args = parser.parse_args(argv)
    records = distinct_examples(args.examples + 50, args.seed)
    train, test = records[: args.examples], records[args.examples :]
    write_jsonl(args.out_dir / "instructions.jsonl", train)
    write_jsonl(args.out_dir / "instructions_test.jsonl", test)
    write_jsonl(args.out_dir / "sample.jsonl", [as_text(r) for r in train])
    rng = random.Random(args.seed + 1)
    pairs = [as_preference(r, rng) for r in train]
    write_jsonl(args.out_dir / "preferences.jsonl", pairs)
    write_jsonl(args.out_dir / "preferences_test.jsonl", [as_preference(r, rng) for r in test])
    write_jsonl(args.out_dir / "unpaired.jsonl", [row for pair in pairs for row in as_unpaired(pair)])
    write_jsonl(args.out_dir / "arithmetic.jsonl", [arithmetic(rng) for _ in range(args.examples)])
    print(f"wrote {len(train)} training and {len(test)} test records to {args.out_dir}/")


if __name__ == "__main__":
    main()
