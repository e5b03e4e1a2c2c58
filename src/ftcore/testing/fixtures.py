"""Build a tiny Llama and its tokenizer offline, for tests, examples and benchmarks.

Nothing here touches the network: the tokenizer is trained with the ``tokenizers`` library on a small
built-in corpus, the model is randomly initialised from a ``LlamaConfig``.
"""

from __future__ import annotations

import random
from pathlib import Path

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]

_WORDS = (
    "the a an of to and in is it that for on with as was by this be are from or at have not but which "
    "model data train training loss token tokens answer question instruction input output response user "
    "assistant system hello world please write list name color number one two three four five six seven "
    "eight nine ten red green blue yellow black white cat dog bird fish tree river mountain city country "
    "what who where when why how translate summarize reverse upper lower capital first last word words "
    "sentence letter letters small large fast slow good bad yes no true false sum add plus minus times"
).split()


def tokenizer_corpus(n_lines: int = 2000, seed: int = 0) -> list[str]:
    """A deterministic corpus of short English-like lines plus digits and punctuation."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n_lines):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(3, 14))]
        if rng.random() < 0.3:
            words.append(str(rng.randint(0, 999)))
        lines.append(" ".join(words).capitalize() + rng.choice([".", "?", "!", ":", ","]))
    return lines


def build_tokenizer(output_dir: str | Path, vocab_size: int = 512, seed: int = 0) -> Path:
    """Train a byte-level BPE tokenizer with a ChatML chat template and save it to ``output_dir``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    output_dir = Path(output_dir)
    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    raw.train_from_iterator(tokenizer_corpus(seed=seed), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        eos_token="<|endoftext|>",
        pad_token="<pad>",
        bos_token=None,
        unk_token=None,
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    tokenizer.model_max_length = 2048
    tokenizer.save_pretrained(output_dir)
    return output_dir


def build_tiny_llama(
    output_dir: str | Path,
    tokenizer_dir: str | Path | None = None,
    *,
    hidden_size: int = 64,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    intermediate_size: int = 128,
    max_positions: int = 1024,
    seed: int = 0,
) -> Path:
    """Save a randomly initialised Llama (safetensors) with its tokenizer into ``output_dir``.

    The tokenizer is built (or copied from ``tokenizer_dir``) first, so the vocabulary matches.
    Defaults give about 100k parameters: a few seconds for dozens of CPU training steps.
    """
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    output_dir = Path(output_dir)
    if tokenizer_dir is None:
        build_tokenizer(output_dir)
        tokenizer = AutoTokenizer.from_pretrained(output_dir)
    else:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
        tokenizer.save_pretrained(output_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=max_positions,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")]
    model.save_pretrained(output_dir)
    return output_dir


def main(argv: list[str] | None = None) -> int:
    """``python -m ftcore.testing.fixtures DIR``: write the tiny Llama and its tokenizer to DIR, for hand runs."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m ftcore.testing.fixtures",
                                     description="Build a tiny random Llama and its tokenizer offline (seconds).")
    parser.add_argument("output_dir", help="directory to write (model.safetensors, config.json, tokenizer files)")
    args = parser.parse_args(argv)
    path = build_tiny_llama(args.output_dir)
    print(f"wrote a tiny Llama to {path}: use it as `model: {path}` in a config")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
