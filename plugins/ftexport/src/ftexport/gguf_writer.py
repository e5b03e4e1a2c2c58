"""Write a transformers causal LM and its tokenizer as one GGUF file, with the ``gguf`` package's writer.

Follows llama.cpp's conventions (``convert_hf_to_gguf.py``), which is what llama.cpp, Ollama and
transformers' GGUF loader read: tensor names from ``gguf.get_tensor_name_map``, the per-architecture
differences of :mod:`ftexport.architectures` (q/k row order, Gemma's ``1 + w`` norms, stacked experts),
norms kept in float32, a ``gpt2`` (byte-level BPE) vocabulary with merges or a ``llama`` (SentencePiece-style,
:mod:`ftexport.spm`) one with scores, token types, special token ids,
the pre-tokenizer name llama.cpp tokenizes by, the chat template, and the provenance keys of a GGUF base.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ftcore import FtError
from ftexport.architectures import Architecture, check_supported, rope_dimensions, rope_theta
from ftexport.spm import adds_space_prefix, is_sentencepiece, prefix_only_first, sentencepiece_vocabulary

# How llama.cpp's converter names a tokenizer's pre-tokenizer (tokenizer.ggml.pre): it encodes one fixed text, full
# of what pre-tokenizers split differently (runs of whitespace, emoji joins, digit runs, Khmer and CJK, punctuation
# runs, contractions in odd casings), and looks up the SHA-256 of the token ids' Python list. The text (llama.cpp's
# ``chktxt``) and the hashes of the byte-level BPE tokenizers ft exports are below; for a hash it does not know
# (a trained or resized vocabulary) llama.cpp's converter stops, ft keeps a GGUF base's name or names the split
# rule of tokenizer.json (``_PRE_TOKENIZERS``).
CHECK_TEXT = (
    "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n"
    "\U0001f680 (normal) \U0001f636\u200d\U0001f32b\ufe0f (multiple emojis concatenated) \u2705 \U0001f999\U0001f999 "
    "3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 "
    "\u1780\u17b6\u1793\u17cb\u178f\u17c2\u1796\u17b7\u179f\u17c1\u179f\u17a2\u17b6\u1785\U0001f601 "
    "?\u6211\u60f3\u5728apple\u5de5\u4f5c1314151\u5929\uff5e ------======= "
    "\u043d\u0435\u0449\u043e \u043d\u0430 \u0411\u044a\u043b\u0433\u0430\u0440\u0441\u043a\u0438 "
    "''''''```````\"\"\"\"......!!!!!!?????? I've been 'told he's there, 'RE you sure? "
    "'M not sure I'll make it, 'D you like some tea? We'Ve a'lL"
)
#: SHA-256 of ``str(tokenizer.encode(CHECK_TEXT))`` → llama.cpp's pre-tokenizer name, for the tokenizers of the
#: architectures ft exports (values as llama.cpp's converter records them; the model each was measured on beside it).
KNOWN_PRE_TOKENIZERS = {
    "3ce83efda5659b07b1ad37ca97ca5797ea4285d9b9ab0dc679e4a720c9da7454": "gpt-2",  # GPT-2
    "0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5": "llama-bpe",  # Llama 3
    "c136ed14d01c2745d4f60a9596ae66800e2b61fa45643e72436041855ad4089d": "smaug-bpe",  # Smaug-Llama-3
    "855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249": "smollm",  # SmolLM, SmolLM2
    "e636dc30a262dcc0d8c323492e32ae2b70728f4df7dfe9737d9f920a282b8aea": "qwen2",  # Qwen1.5, Qwen2, Qwen2.5
    "d4540891389ea895b53b399da6ac824becc30f2fba0e9ddbb98f92e55ca0e97c": "qwen2",  # Qwen3
    "b3f499bb4255f8ca19fccd664443283318f2fd2414d5e0b040fbdd0cc195d6c5": "deepseek-r1-qwen",  # DeepSeek-R1-Distill-Qwen
    "049ecf7629871e3041641907f3de7c733e4dbfdc736f57d882ba0b0845599754": "deepseek-llm",  # DeepSeek LLM
    "9d032fcbd5501f4a38150912590928bfb36091efb5df11b8e2124b0390e3fb1e": "falcon3",  # Falcon3 (llama)
    "63b97e4253352e6f357cc59ea5b583e3a680eaeaf2632188c2b952de2588485e": "tekken",  # Mistral Nemo
}
# The split regexes of tokenizer.json that llama.cpp names, for tokenizers whose check hash is unknown; plain
# ByteLevel splitting is GPT-2's rule ("gpt-2"), ByteLevel after single-digit splitting SmolLM's ("smollm").
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_PRE_TOKENIZERS = {_LLAMA3_SPLIT: "llama-bpe", _QWEN2_SPLIT: "qwen2"}

# GGUF token types (llama.cpp's llama_token_type)
_NORMAL, _CONTROL, _USER_DEFINED, _UNUSED = 1, 3, 4, 5


def write_gguf(model: Any, tokenizer: Any, path: Path, gguf_type: str, name: str, *, pre: str | None = None,
               carried: list[tuple[str, Any, Any]] = ()) -> int:
    """Write ``model`` (float weights) and ``tokenizer`` to ``path`` as GGUF; returns the number of tensors.

    ``pre``: a GGUF base's pre-tokenizer name, written when the tokenizer's check hash is unknown (see
    :func:`pre_tokenizer_name`); ``carried``: ``(key, value, GGUFValueType)`` metadata of a GGUF base to keep
    (license, sources).
    """
    import gguf

    config = model.config
    arch = check_supported(config.model_type, gguf_type, config.to_dict())
    writer = gguf.GGUFWriter(str(path), arch.gguf_name)
    try:
        _write_hyperparameters(writer, config, arch, name, gguf_type)
        for key, value, value_type in carried:
            _add_carried(writer, key, value, value_type)
        _write_tokenizer(writer, tokenizer, len(model.get_input_embeddings().weight), pre)
        count = 0
        for gguf_name, array, raw_dtype in _tensors(model, arch, gguf_type):
            writer.add_tensor(gguf_name, array, raw_dtype=raw_dtype)
            count += 1
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    return count


def _add_carried(writer: Any, key: str, value: Any, value_type: Any) -> None:
    import gguf

    if value_type == gguf.GGUFValueType.ARRAY:
        writer.add_array(key, value)
    else:
        writer.add_key_value(key, value, value_type)


def _write_hyperparameters(writer: Any, config: Any, arch: Architecture, name: str, gguf_type: str) -> None:
    import gguf

    heads = config.num_attention_heads
    writer.add_name(name)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(heads)
    writer.add_head_count_kv(getattr(config, "num_key_value_heads", None) or heads)
    writer.add_rope_dimension_count(rope_dimensions(config))
    writer.add_rope_freq_base(rope_theta(config))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    for key, value in arch.keys(config).items():
        full = f"{arch.gguf_name}.{key}"
        if isinstance(value, float):
            writer.add_float32(full, value)
        elif value is not None:
            writer.add_uint32(full, int(value))
    file_type = {"f16": gguf.LlamaFileType.MOSTLY_F16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[gguf_type]
    writer.add_file_type(file_type)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


# ----------------------------------------------------------------------------- tensors


def _tensors(model: Any, arch: Architecture, gguf_type: str) -> Iterator[tuple[str, Any, Any]]:
    """``(gguf name, array, raw dtype or None)`` per weight, under a progress bar."""
    import gguf
    from tqdm.auto import tqdm

    config = model.config
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.gguf_name.upper()], config.num_hidden_layers)
    state = model.state_dict()
    tied = bool(getattr(config, "tie_word_embeddings", False))
    items = [(k, v) for k, v in state.items() if not (tied and k == "lm_head.weight") and "rotary_emb" not in k]
    for hf_name, tensor in tqdm(items, desc=f"writing GGUF ({gguf_type})", unit="tensor", leave=False):
        array = tensor.detach().float().cpu().numpy()
        for gguf_name, part in _parts(hf_name, array, names, arch, config):
            yield gguf_name, *_stored(part, gguf_type)


def _parts(hf_name: str, array: Any, names: Any, arch: Architecture, config: Any) -> list[tuple[str, Any]]:
    """The GGUF tensor(s) one transformers parameter becomes, named and laid out as llama.cpp reads them."""
    if arch.experts and hf_name.endswith("experts.gate_up_proj"):  # [experts, 2 * ffn, hidden]: gate rows first
        gate, up = array[:, : array.shape[1] // 2], array[:, array.shape[1] // 2 :]
        block = hf_name.split(".")[2]
        return [(f"blk.{block}.ffn_gate_exps.weight", gate), (f"blk.{block}.ffn_up_exps.weight", up)]
    if arch.experts and hf_name.endswith("experts.down_proj"):
        return [(f"blk.{hf_name.split('.')[2]}.ffn_down_exps.weight", array)]
    gguf_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
    if gguf_name is None:
        raise FtError(f"GGUF export: no GGUF name for tensor {hf_name!r} of a {config.model_type} model")
    if arch.permute_qk and hf_name.endswith(("q_proj.weight", "k_proj.weight")):
        heads = config.num_attention_heads if "q_proj" in hf_name else config.num_key_value_heads
        array = permute_rows(array, heads)
    if arch.norm_offset and hf_name.endswith("norm.weight"):
        array = array + arch.norm_offset
    return [(gguf_name, array)]


def permute_rows(weight: Any, heads: int) -> Any:
    """Reorder q/k rows the way llama.cpp's converter does for Llama (rotary halves interleaved per head)."""
    rows = weight.shape[0]
    return weight.reshape(heads, 2, rows // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def _stored(array: Any, gguf_type: str) -> tuple[Any, Any]:
    """The array as written: norms and biases float32, matrices float16 or Q8_0 (rows of a multiple of 32)."""
    import gguf
    import numpy as np

    if array.ndim < 2:
        return array.astype(np.float32), None
    if gguf_type == "q8_0" and array.shape[-1] % gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.Q8_0][0] == 0:
        return gguf.quants.quantize(array, gguf.GGMLQuantizationType.Q8_0), gguf.GGMLQuantizationType.Q8_0
    return array.astype(np.float16), None


# ----------------------------------------------------------------------------- tokenizer


def check_tokenizer(tokenizer: Any) -> dict[str, Any]:
    """The tokenizer's ``tokenizer.json`` content; an FtError unless it is byte-level BPE (what ``gpt2`` GGUFs hold)
    or SentencePiece-style BPE with byte fallback (a ``llama`` GGUF vocabulary)."""
    if getattr(tokenizer, "backend_tokenizer", None) is None:
        raise FtError(f"GGUF export needs a fast (tokenizers) tokenizer; this one is {type(tokenizer).__name__}")
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    model = spec.get("model", {})
    if is_sentencepiece(spec):
        if prefix_only_first(spec):
            raise FtError("this SentencePiece-style tokenizer puts a space before the text's first piece only "
                          "(Metaspace prepend_scheme 'first'); llama.cpp puts one after every special token too, so "
                          "the GGUF would read chat prompts differently: save the tokenizer with legacy=True "
                          "(prepend_scheme 'always') to export it")
        return spec
    if model.get("type") != "BPE" or model.get("byte_fallback") or not _is_byte_level(spec):
        kind = f"{model.get('type')}{' with byte fallback' if model.get('byte_fallback') else ''}"
        raise FtError(
            "GGUF export supports byte-level BPE tokenizers (GPT-2 style: SmolLM2, Llama 3, Qwen2) and "
            f"SentencePiece-style BPE with byte fallback (Llama 2, Mistral, Gemma); this tokenizer is {kind}"
        )
    return spec


def _write_tokenizer(writer: Any, tokenizer: Any, vocab_rows: int, pre: str | None) -> None:
    """Vocabulary, merges, token types, special ids and chat template of the tokenizer."""
    spec = check_tokenizer(tokenizer)
    model = spec["model"]
    vocab = tokenizer.get_vocab()
    if len(vocab) > vocab_rows:
        raise FtError(f"the tokenizer has {len(vocab)} tokens but the model's embedding only {vocab_rows} rows")
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    if is_sentencepiece(spec):
        tokens, scores, types = sentencepiece_vocabulary(tokenizer, spec, vocab_rows)
        writer.add_tokenizer_model("llama")
        writer.add_tokenizer_pre("default")  # llama.cpp's SentencePiece tokenizer splits nothing first
        writer.add_token_list(tokens)
        writer.add_token_scores(scores)
        writer.add_token_types(types)
        writer.add_token_merges(merges)
        writer.add_add_space_prefix(adds_space_prefix(spec))
    else:
        _write_byte_level(writer, tokenizer, spec, vocab, vocab_rows, merges, pre)
    _write_special_tokens(writer, tokenizer)


def _write_byte_level(writer: Any, tokenizer: Any, spec: dict[str, Any], vocab: dict[str, int], vocab_rows: int,
                      merges: list[str], pre: str | None) -> None:
    """A ``gpt2`` vocabulary: tokens in the byte alphabet, merges, token types and the pre-tokenizer's name."""
    by_id = {index: token for token, index in vocab.items()}
    added = tokenizer.added_tokens_decoder
    tokens, types = [], []
    for index in range(vocab_rows):
        token = by_id.get(index, f"[PAD{index}]")  # embedding rows past the vocabulary: unused placeholders
        tokens.append(token)
        if index in added:
            types.append(_CONTROL if added[index].special or _looks_special(token) else _USER_DEFINED)
        else:
            types.append(_NORMAL if index in by_id else _UNUSED)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre_tokenizer_name(tokenizer, spec, pre))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)


def _write_special_tokens(writer: Any, tokenizer: Any) -> None:
    """Special token ids, whether BOS/EOS are added, and the chat template."""
    for token, add in (
        ("bos", writer.add_bos_token_id),
        ("eos", writer.add_eos_token_id),
        ("unk", writer.add_unk_token_id),
        ("pad", writer.add_pad_token_id),
    ):
        token_id = getattr(tokenizer, f"{token}_token_id", None)
        if token == "bos" and token_id is None:
            # No BOS (SmolLM2, Qwen2): name eos, as GPT-2 and llama.cpp's Qwen2 files do; add_bos_token stays
            # false, so nothing is prepended. transformers 4.x cannot load a llama-architecture file without one.
            token_id = tokenizer.eos_token_id
        if token_id is not None:
            add(token_id)
    writer.add_add_bos_token(adds_bos(tokenizer))
    writer.add_add_eos_token(_adds_eos(tokenizer))
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)


def adds_bos(tokenizer: Any) -> bool:
    """Whether encoding text puts the BOS token first (what llama.cpp's ``add_bos_token`` means)."""
    bos = tokenizer.bos_token_id
    return bos is not None and tokenizer("a")["input_ids"][:1] == [bos]


def _adds_eos(tokenizer: Any) -> bool:
    """Whether encoding text puts the EOS token last (llama.cpp's ``add_eos_token``)."""
    eos = tokenizer.eos_token_id
    return eos is not None and tokenizer("a")["input_ids"][-1:] == [eos]


def _looks_special(token: str) -> bool:
    """An added token llama.cpp's converter makes a control token although it is not marked special: ``<|...|>``."""
    return any(token.startswith(f"<{bar}") and token.endswith(f"{bar}>") for bar in ("|", "\uff5c"))


def _is_byte_level(spec: dict[str, Any]) -> bool:
    def parts(node: dict[str, Any] | None) -> list[dict[str, Any]]:
        if not node:
            return []
        return node.get("pretokenizers", [node]) if node.get("type") == "Sequence" else [node]

    return any(p.get("type") == "ByteLevel" for p in parts(spec.get("pre_tokenizer")))


def pre_tokenizer_name(tokenizer: Any, spec: dict[str, Any], base: str | None = None) -> str:
    """llama.cpp's name for how the tokenizer splits text before BPE, chosen as llama.cpp's converter chooses it:
    by the hash of its encoding of :data:`CHECK_TEXT` (:data:`KNOWN_PRE_TOKENIZERS`). For an unknown hash: the
    ``base`` GGUF's own name when there is one (what the converter chose for the tokenizer the run started from),
    else the split rule of ``tokenizer.json`` (:func:`split_rule_name`)."""
    return KNOWN_PRE_TOKENIZERS.get(check_hash(tokenizer)) or base or split_rule_name(spec)


def check_hash(tokenizer: Any) -> str:
    """The SHA-256 by which llama.cpp's converter recognizes a pre-tokenizer: of the ids' list, as Python prints it."""
    return hashlib.sha256(str(tokenizer.encode(CHECK_TEXT)).encode()).hexdigest()


def split_rule_name(spec: dict[str, Any]) -> str:
    """llama.cpp's name for the split rule of ``tokenizer.json`` (``spec``): ``llama-bpe``, ``qwen2``, ``smollm``
    (single digits split off first), or ``gpt-2`` for plain byte-level splitting (GPT-2's regex). Never
    ``default``: llama.cpp's default splits punctuation runs first, so contractions would tokenize unlike training."""
    node = spec.get("pre_tokenizer") or {}
    parts = node.get("pretokenizers", [node]) if node.get("type") == "Sequence" else [node]
    for part in parts:
        pattern = (part.get("pattern") or {}).get("Regex") if part.get("type") == "Split" else None
        if pattern in _PRE_TOKENIZERS:
            return _PRE_TOKENIZERS[pattern]
    if any(p.get("type") == "Digits" and p.get("individual_digits") for p in parts):
        return "smollm"
    return "gpt-2"
