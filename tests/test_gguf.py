"""GGUF: a tiny Llama exported with the `gguf` package loads through `model: x.gguf`, trains and saves.

The writer below follows llama.cpp's conventions (tensor names, the q/k row permutation, a ``gpt2``
byte-level BPE vocabulary), which is what transformers' GGUF loader undoes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from train_helpers import run_config, write_reversal_text

pytest.importorskip("gguf")

pytestmark = pytest.mark.usefixtures("single_thread")



def llama_cpp_permute(weight, heads: int):
    """Reorder q/k rows the way llama.cpp's converter does (transformers reverses it on load)."""
    rows = weight.shape[0]
    return weight.reshape(heads, 2, rows // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def gguf_tensor_name(hf_name: str) -> str:
    """llama.cpp's name for a Llama parameter, e.g. ``model.layers.0.self_attn.q_proj.weight`` → ``blk.0.attn_q.weight``."""
    fixed = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    if hf_name in fixed:
        return fixed[hf_name]
    parts = hf_name.split(".")  # model.layers.N.<block>.<proj>.weight
    layer, proj = parts[2], parts[-2]
    names = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output",
             "gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down",
             "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}
    return f"blk.{layer}.{names[proj]}.weight"


def export_gguf(model_dir: Path, path: Path) -> Path:
    """Write the Llama in ``model_dir`` (weights as F32, its tokenizer and chat template) as a GGUF file."""
    import gguf
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-llama")
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_dimension_count(config.hidden_size // config.num_attention_heads)
    writer.add_rope_freq_base(float(config.rope_parameters["rope_theta"]))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(len(tokenizer))

    vocab = json.loads((model_dir / "tokenizer.json").read_text())
    merges = [m if isinstance(m, str) else " ".join(m) for m in vocab["model"]["merges"]]
    tokens = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    special = set(tokenizer.all_special_ids)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types([3 if i in special else 1 for i in range(len(tokens))])  # 3: control, 1: normal
    writer.add_token_merges(merges)
    writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_pad_token_id(tokenizer.pad_token_id)
    writer.add_chat_template(tokenizer.chat_template)

    for name, tensor in load_file(model_dir / "model.safetensors").items():
        array = tensor.float().numpy()
        if name.endswith("q_proj.weight"):
            array = llama_cpp_permute(array, config.num_attention_heads)
        elif name.endswith("k_proj.weight"):
            array = llama_cpp_permute(array, config.num_key_value_heads)
        writer.add_tensor(gguf_tensor_name(name), array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_gguf_loads_trains_and_saves(tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file

    from ftcore.config.schema import build_config
    from ftcore.jobs.train import run_training
    from ftcore.models.loading import gguf_as_model_dir, load_pretrained, load_tokenizer_from

    monkeypatch.setenv("FT_CACHE_DIR", str(tmp_path / "cache"))
    gguf_file = export_gguf(tiny_model_dir, tmp_path / "tiny.gguf")

    # The dequantized model is the original, tensor for tensor, and is cached as safetensors by hash.
    model = load_pretrained(str(gguf_file))
    original = load_file(tiny_model_dir / "model.safetensors")
    loaded = model.state_dict()
    assert set(loaded) == set(original)
    assert all(torch.equal(loaded[k], original[k]) for k in original)
    cached = gguf_as_model_dir(gguf_file)
    assert cached.parent == tmp_path / "cache" / "gguf" and (cached / "model.safetensors").is_file()
    # The cache is what a run's adapter names when the GGUF names no Hub id: transformers 4.x reads its RoPE base
    # only from a top-level rope_theta (without it 4.x silently uses 10000).
    cached_config = json.loads((cached / "config.json").read_text())
    assert cached_config["rope_theta"] == cached_config["rope_parameters"]["rope_theta"]
    tokenizer = load_tokenizer_from(str(gguf_file))
    sample = "Reverse: red cat -> cat red"
    from transformers import AutoTokenizer

    assert tokenizer(sample)["input_ids"] == AutoTokenizer.from_pretrained(tiny_model_dir)(sample)["input_ids"]

    data = write_reversal_text(tmp_path / "train.jsonl")
    output = tmp_path / "run"
    run_training(build_config(run_config(gguf_file, data, output, "lora")))
    # The same run as test_train's lora case (the base is the same weights): answer loss 6.28 -> 5.58 measured.
    from ftcore.testing.suites import answer_loss

    assert answer_loss(gguf_file, output) - answer_loss(output, output) > 0.25
    manifest = json.loads((output / "ft_run.json").read_text())
    assert manifest["base_model"] == str(gguf_file)

    tuned = PeftModel.from_pretrained(load_pretrained(str(gguf_file)), str(output))
    ids = torch.tensor([[5, 17, 42, 99]])
    with torch.no_grad():
        assert (tuned(input_ids=ids).logits - model(input_ids=ids).logits).abs().max() > 1e-2
