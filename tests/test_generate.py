"""``ft generate`` / ``ft chat`` on an adapter run directory: text equals an independent greedy decode."""

from __future__ import annotations

from pathlib import Path

import pytest
from adapter_runs import make_adapter_run

from ftcore.testing.process import run_ft


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
    from ftcore.jobs.generate import generate
    from ftcore.models.generation import GenerationSettings
    from ftcore.models.loading import load_for_inference

    model, tokenizer = load_for_inference(run_dir)
    assert type(model).__name__ == "PeftModelForCausalLM"
    streamed: list[str] = []
    text = generate(model, tokenizer, "Name three colors", GenerationSettings(max_new_tokens=12), on_text=streamed.append)
    assert text and text == "".join(streamed) and len(streamed) > 1
    assert text == reference_reply(run_dir, tiny_model_dir, [{"role": "user", "content": "Name three colors"}], 12)
    base_model, _ = load_for_inference(tiny_model_dir)
    assert generate(base_model, tokenizer, "Name three colors", GenerationSettings(max_new_tokens=12)) != text


def test_sampling_is_seeded(run_dir: Path) -> None:
    from ftcore.jobs.generate import generate
    from ftcore.models.generation import GenerationSettings
    from ftcore.models.loading import load_for_inference

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

    from ftcore.data.builtin_templates import ALPACA
    from ftcore.models.generation import end_of_turn_id, stop_token_ids

    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    eos, im_end = tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert stop_token_ids(object(), tokenizer) == [eos, im_end]
    assert end_of_turn_id(tokenizer, ALPACA) == eos
    plain = "{% for m in messages %}{{ m['content'] + '\n\n' }}{% endfor %}"
    assert end_of_turn_id(tokenizer, plain) is None
    tokenizer.chat_template = None  # no template of its own: prompts are ChatML, and so is the turn's end
    assert end_of_turn_id(tokenizer) == im_end


TURN_TEMPLATE = (
    "{% for m in messages %}{{ '<|' + m['role'] + '|>' + m['content'] + '<|end|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)


def turn_model(directory: Path, tokenizer_dir: Path) -> tuple[Path, dict[str, int]]:
    """A Llama whose chat turns end with ``<|end|>`` (not its eos) and whose greedy reply is fixed by hand.

    Attention and MLP outputs are zeroed, so each next token depends on the last token only, through the
    embedding and lm_head rows set below: ``<|assistant|>`` → `` red`` → ``<|end|>`` → ``X`` → ``X`` ... (X another
    one-token word). A stop rule that knows only eos writes "red X X ..."; one that knows the template's end of turn, "red".
    """
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    tokenizer.add_tokens(["<|user|>", "<|assistant|>", "<|end|>"], special_tokens=True)
    tokenizer.chat_template = TURN_TEMPLATE
    ids = {name: tokenizer.convert_tokens_to_ids(token) for name, token in
           (("prompt", "<|assistant|>"), ("end", "<|end|>"), ("eos", tokenizer.eos_token))}
    single = [w for w in (" red", " the", " blue", " cat", " dog") if len(tokenizer(w, add_special_tokens=False)["input_ids"]) == 1]
    ids["red"], ids["blue"] = (tokenizer(word, add_special_tokens=False)["input_ids"][0] for word in single[:2])
    assert tokenizer.decode([ids["red"]]) == " red" and ids["end"] != ids["eos"]
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=16, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, eos_token_id=ids["eos"],
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=None, tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() == 2:
                param.zero_()
        chain = [("prompt", "red"), ("red", "end"), ("end", "blue"), ("blue", "blue")]
        for k, (current, following) in enumerate(chain):
            model.model.embed_tokens.weight[ids[current], k] = 1.0
            model.lm_head.weight[ids[following], k] = 10.0
    model.generation_config.eos_token_id = ids["eos"]
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory, ids


def test_evaluation_and_generate_stop_at_the_end_of_turn_not_only_eos(tmp_path: Path, tiny_tokenizer_dir: Path) -> None:
    import torch
    from data_helpers import write_jsonl

    from ftcore.jobs.evaluation import evaluate_model
    from ftcore.jobs.generate import generate
    from ftcore.models.generation import GenerationSettings
    from ftcore.models.loading import load_for_inference

    model_dir, ids = turn_model(tmp_path / "model", tiny_tokenizer_dir)
    model, tokenizer = load_for_inference(model_dir)
    # The model itself runs into the next turn: eos alone never stops it.
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "a color"}], add_generation_prompt=True,
                                           return_tensors="pt", return_dict=True)["input_ids"]
    raw = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=5, do_sample=False,
                         eos_token_id=[ids["eos"]], pad_token_id=tokenizer.pad_token_id)
    assert raw[0, prompt.shape[1]:].tolist() == [ids["red"], ids["end"], ids["blue"], ids["blue"], ids["blue"]]

    data = write_jsonl(tmp_path / "eval.jsonl", [
        {"messages": [{"role": "user", "content": "a color"}, {"role": "assistant", "content": "red"}]},
        {"messages": [{"role": "user", "content": "another color please"}, {"role": "assistant", "content": "red"}]},
    ])
    settings = GenerationSettings(max_new_tokens=5, batch_size=2)
    result = evaluate_model(model_dir, data, ["exact_match"], settings=settings, output_dir=tmp_path / "eval")
    assert [e.prediction for e in result.examples] == ["red", "red"] and result.scores["exact_match"] == 1.0
    assert generate(model, tokenizer, "a color", settings) == " red"  # ft generate / ft chat: the same rule


def test_decoding_options_mean_the_same_in_every_command() -> None:
    from ftcore.models.generation import GenerationSettings

    assert GenerationSettings.from_options() == GenerationSettings()  # greedy, seeded, 128 tokens
    hot = GenerationSettings.from_options(temperature=0.7, top_p=0.9, seed=3)
    assert (hot.do_sample, hot.temperature, hot.top_p, hot.seed) == (True, 0.7, 0.9, 3)
    assert GenerationSettings.from_options(sample=True).temperature == 1.0
