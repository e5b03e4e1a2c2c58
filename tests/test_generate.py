"""``ft generate`` / ``ft chat`` on an adapter run directory: text equals an independent greedy decode."""

from __future__ import annotations

from pathlib import Path

import pytest
from adapter_runs import make_adapter_run
from conftest import run_ft


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    return make_adapter_run(tmp_path_factory.mktemp("gen") / "run", tiny_model_dir)


def reference_reply(run_dir: Path, base_dir: Path, messages: list[dict], max_new_tokens: int) -> str:
    """Greedy decode with plain transformers + peft, for comparison."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(run_dir)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32), str(run_dir)).eval()
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
    stops = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")]
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens, do_sample=False,
                             eos_token_id=stops, pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


def test_generate_returns_text_from_adapter_run(run_dir: Path, tiny_model_dir: Path) -> None:
    from ftcore.generate import generate
    from ftcore.generation import GenerationSettings
    from ftcore.models import load_for_inference

    model, tokenizer = load_for_inference(run_dir)
    assert type(model).__name__ == "PeftModelForCausalLM"
    streamed: list[str] = []
    text = generate(model, tokenizer, "Name three colors", GenerationSettings(max_new_tokens=12), on_text=streamed.append)
    assert text and text == "".join(streamed) and len(streamed) > 1
    assert text == reference_reply(run_dir, tiny_model_dir, [{"role": "user", "content": "Name three colors"}], 12)
    base_model, _ = load_for_inference(tiny_model_dir)
    assert generate(base_model, tokenizer, "Name three colors", GenerationSettings(max_new_tokens=12)) != text


def test_sampling_is_seeded(run_dir: Path) -> None:
    from ftcore.generate import generate
    from ftcore.generation import GenerationSettings
    from ftcore.models import load_for_inference

    model, tokenizer = load_for_inference(run_dir)
    hot = GenerationSettings(max_new_tokens=16, do_sample=True, temperature=1.5, seed=3)
    assert generate(model, tokenizer, "hello", hot) == generate(model, tokenizer, "hello", hot)
    assert len({generate(model, tokenizer, "hello", GenerationSettings(max_new_tokens=16, do_sample=True, temperature=1.5, seed=s)) for s in range(4)}) > 1


def test_generate_cli(run_dir: Path, tiny_model_dir: Path) -> None:
    result = run_ft("generate", str(run_dir), "--prompt", "hello world", "--max-new-tokens", "10", stdin="")
    assert result.returncode == 0, result.stderr
    expected = reference_reply(run_dir, tiny_model_dir, [{"role": "user", "content": "hello world"}], 10)
    assert result.stdout == expected + "\n"


def test_chat_driven_by_stdin_keeps_history(run_dir: Path, tiny_model_dir: Path) -> None:
    result = run_ft("chat", str(run_dir), "--max-new-tokens", "8", stdin="hello\nwhat is the color of the sky\n/exit\nignored\n")
    assert result.returncode == 0, result.stderr
    first = reference_reply(run_dir, tiny_model_dir, [{"role": "user", "content": "hello"}], 8)
    history = [{"role": "user", "content": "hello"}, {"role": "assistant", "content": first},
               {"role": "user", "content": "what is the color of the sky"}]
    second = reference_reply(run_dir, tiny_model_dir, history, 8)
    assert result.stdout == f"{first}\n{second}\n"


def test_missing_model_is_one_line_error(tmp_path: Path) -> None:
    result = run_ft("generate", str(tmp_path / "nope"), "--prompt", "x", stdin="")
    assert result.returncode == 1 and "error:" in result.stderr and "Traceback" not in result.stderr


def test_replies_stop_at_eos_and_the_templates_end_of_turn(tiny_tokenizer_dir: Path) -> None:
    """One stop rule for every command: end-of-sequence plus the token that closes an assistant turn."""
    from transformers import AutoTokenizer

    from ftcore.data.templates import ALPACA
    from ftcore.generation import end_of_turn_id, stop_token_ids

    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    eos, im_end = tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert stop_token_ids(object(), tokenizer) == [eos, im_end]
    assert end_of_turn_id(tokenizer, ALPACA) == eos
    plain = "{% for m in messages %}{{ m['content'] + '\n\n' }}{% endfor %}"
    assert end_of_turn_id(tokenizer, plain) is None
    tokenizer.chat_template = None  # no template of its own: prompts are ChatML, and so is the turn's end
    assert end_of_turn_id(tokenizer) == im_end
