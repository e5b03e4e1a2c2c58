"""A conversation whose only trained turn is the last answer is rendered once (the answer is located after the
template's checked generation prompt); the tokens and labels must be exactly those of rendering the prompt
again, for every template, with whitespace and template-like text in the answers."""

from __future__ import annotations

import pytest
from data_helpers import make_config, write_jsonl

from ftcore.data import prepare_data, templates
from ftcore.data.builtin_templates import NAMED_TEMPLATES

# An empty think block opens the generation prompt (as Qwen3's does with thinking off): finished turns do not
# have it, so no answer is found after it and every example takes the second rendering.
THINK_OPENING = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n\n</think>\n\n{% endif %}"
)
# A template that trims what it writes: answers with surrounding whitespace are not found as written.
TRIMMING = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content | trim }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
RECORDS = [
    {"instruction": "Name a colour.", "output": "Blue."},
    {"instruction": "Reverse 'abc'.", "input": "abc", "output": "cba"},
    {"instruction": "Spaces", "output": "  padded answer \n"},
    {"instruction": "Template text", "output": "{{ not a variable }} <|im_start|>assistant\n twice"},
    {"instruction": "Echo", "output": "Echo"},
    {"instruction": "Empty answer", "output": ""},
]
CHATS = [
    {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                  {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Again"},
                  {"role": "assistant", "content": "Hello."}]},
    {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello.", "train": True},
                  {"role": "user", "content": "More"}, {"role": "assistant", "content": "No."}]},
    {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hi"}]},
]


@pytest.fixture(scope="module")
def tiny_tokenizer(tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_tokenizer_dir)


def rows(tokenizer, tmp_path, monkeypatch, fast: bool, **data):
    monkeypatch.setattr(templates, "FAST_SPANS", fast)
    train = [str(write_jsonl(tmp_path / "alpaca.jsonl", RECORDS)), str(write_jsonl(tmp_path / "chats.jsonl", CHATS))]
    config = make_config(train, tmp_path / ("fast" if fast else "reference"), method="instruction", **data)
    prepared = prepare_data(config, tokenizer)
    assert not prepared.stats["cache_hit"]
    return prepared.train["input_ids"], prepared.train["labels"], prepared.stats["dropped"]


@pytest.mark.parametrize("template", [*NAMED_TEMPLATES, "think-opening", "trimming", "tokenizer"])
def test_rendering_once_gives_the_reference_tokens(template, tiny_tokenizer, tmp_path, monkeypatch):
    data = {"system_prompt": "You are terse."}
    if template in ("think-opening", "trimming"):
        path = tmp_path / f"{template}.jinja"
        path.write_text(THINK_OPENING if template == "think-opening" else TRIMMING)
        data["chat_template"] = str(path)
    elif template != "tokenizer":
        data["chat_template"] = template
    fast = rows(tiny_tokenizer, tmp_path, monkeypatch, True, **data)
    reference = rows(tiny_tokenizer, tmp_path, monkeypatch, False, **data)
    assert fast == reference
    assert len(fast[0]) == len(RECORDS) + len(CHATS)  # an empty answer still trains its end of turn


def test_the_generation_prompt_is_checked_before_it_is_used(tiny_tokenizer):
    assert templates._checked_opening(tiny_tokenizer, NAMED_TEMPLATES["chatml"]) == "<|im_start|>assistant\n"
    assert templates._checked_opening(tiny_tokenizer, THINK_OPENING) is None
    chatml = NAMED_TEMPLATES["chatml"]
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]
    text = templates.render_chat(messages, tiny_tokenizer, chatml)
    assert templates._answer_start(text, messages, tiny_tokenizer, chatml) == text.index("Hello.")


def test_an_earlier_identical_answer_is_not_taken_for_the_last(tiny_tokenizer):
    # A template that leaves the last answer out: the same answer earlier must not be located as the last one.
    dropping = ("{% for m in messages %}{% if not loop.last %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
                "{% else %}<|im_start|>{{ m.role }}\n<|im_end|>\n{% endif %}{% endfor %}"
                "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yes"},
                {"role": "user", "content": "Again"}, {"role": "assistant", "content": "Yes"}]
    text = templates.render_chat(messages, tiny_tokenizer, dropping)
    assert templates._answer_start(text, messages, tiny_tokenizer, NAMED_TEMPLATES["chatml"]) is None
