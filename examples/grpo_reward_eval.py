"""Held-out reward of a GRPO run against its base: the rewards of examples/configs/grpo-short.yaml on new sums.

    python examples/grpo_reward_eval.py runs/grpo-short $(python examples/smollm2_path.py) [--prompts 32]

Writes nothing; prints, for the base model and the run, the mean length reward, answer_match and their sum over
``--samples`` sampled completions (temperature 1.0, as GRPO samples) and one greedy completion of each of
``--prompts`` sums that are not in data/arithmetic.jsonl (seeded, so both models get the same prompts).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from generate_sample_data import arithmetic  # noqa: E402


def held_out(n: int, seen: set[str]) -> list[dict[str, str]]:
    """``n`` distinct arithmetic records whose questions are not in ``seen``."""
    rng, records = random.Random(12345), {}
    while len(records) < n:
        record = arithmetic(rng)
        if record["question"] not in seen:
            records[record["question"]] = record
    return list(records.values())


def scores(model_source: str, records: list[dict[str, str]], samples: int) -> dict[str, float]:
    """Mean rewards of ``model_source``'s sampled and greedy completions."""
    import torch
    from ftrl.rewards import AnswerMatchOptions, LengthOptions, answer_match, length_target

    from ftcore.models.loading import load_for_inference

    model, tokenizer = load_for_inference(model_source, dtype="float32")
    tokenizer.padding_side = "left"
    prompts = [tokenizer.apply_chat_template([{"role": "user", "content": r["question"]}], tokenize=False,
                                             add_generation_prompt=True) for r in records]
    batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    out = {}
    for name, kwargs in (("sampled", {"do_sample": True, "temperature": 1.0, "num_return_sequences": samples}),
                         ("greedy", {"do_sample": False})):
        torch.manual_seed(0)
        with torch.no_grad():
            ids = model.generate(**batch, max_new_tokens=32, pad_token_id=tokenizer.pad_token_id, **kwargs)
        completions = tokenizer.batch_decode(ids[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
        examples = [r for r in records for _ in range(len(completions) // len(records))]
        length = length_target(completions, LengthOptions(target=40, tolerance=10))
        answer = answer_match(completions, examples, AnswerMatchOptions(extract="last_number"))
        out[f"{name} length"] = statistics.mean(length)
        out[f"{name} answer_match"] = statistics.mean(answer)
        out[f"{name} reward"] = statistics.mean(a + b for a, b in zip(length, answer, strict=True))
        out[f"{name} mean characters"] = statistics.mean(len(c) for c in completions)
        out[f"{name} example"] = completions[0]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="the GRPO run directory")
    parser.add_argument("base", help="its base model (a directory, Hub id or GGUF file)")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--train", default="data/arithmetic.jsonl", help="prompts to leave out")
    args = parser.parse_args()
    seen = {json.loads(line)["question"] for line in Path(args.train).read_text().splitlines() if line.strip()}
    records = held_out(args.prompts, seen)
    for label, source in (("base", args.base), ("tuned", args.run)):
        print(label, json.dumps(scores(source, records, args.samples)), flush=True)


if __name__ == "__main__":
    main()
