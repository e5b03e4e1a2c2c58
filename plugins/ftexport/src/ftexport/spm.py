"""SentencePiece-style vocabularies as llama.cpp's ``llama`` tokenizer model.

Llama 2, Mistral 7B v0.1 and Gemma ship tokenizers that are BPE over pieces that spell a space ``▁``, with
byte fallback (``<0x0A>`` for a byte no piece covers). llama.cpp tokenizes them with its SentencePiece
tokenizer, which merges the adjacent pair whose result scores highest: in a SentencePiece BPE model a piece's
score falls with the order it was learned in, which is the order of the ids, so each normal piece scores
``-id``. Byte pieces, the unknown piece and special tokens score 0 and carry their own token types. The merges
go into the file too (llama.cpp ignores them there; transformers' GGUF loader uses them), with
``add_space_prefix`` saying whether a ``▁`` is put before the text, as the tokenizer's ``Metaspace`` or
``Prepend`` normalizer does. llama.cpp puts it before every stretch of text that follows a special token, as
SentencePiece itself and the ``Prepend`` normalizer of Llama 2's and Mistral's ``tokenizer.json`` do; a tokenizer
that puts it before the first stretch only (``prepend_scheme: first``) would read chat prompts differently, so it
is refused (:func:`prefix_only_first`).
"""

from __future__ import annotations

import re
from typing import Any

# GGUF token types (llama.cpp's llama_token_type)
_NORMAL, _UNKNOWN, _CONTROL, _USER_DEFINED, _UNUSED, _BYTE = 1, 2, 3, 4, 5, 6
_BYTE_PIECE = re.compile(r"^<0x[0-9A-Fa-f]{2}>$")
SPACE = "\u2581"


def _parts(node: dict[str, Any] | None, key: str) -> list[dict[str, Any]]:
    """The steps of a normalizer or pre-tokenizer (a ``Sequence``'s members, or the one step)."""
    if not node:
        return []
    return node.get(key, [node]) if node.get("type") == "Sequence" else [node]


def is_sentencepiece(spec: dict[str, Any]) -> bool:
    """Whether ``tokenizer.json`` content describes SentencePiece-style BPE: byte fallback, spaces spelled ``▁``."""
    model = spec.get("model", {})
    if model.get("type") != "BPE" or not model.get("byte_fallback"):
        return False
    metaspace = any(p.get("type") == "Metaspace" for p in _parts(spec.get("pre_tokenizer"), "pretokenizers"))
    respelled = any(p.get("type") == "Replace" and p.get("content") == SPACE
                    for p in _parts(spec.get("normalizer"), "normalizers"))
    return metaspace or respelled


def adds_space_prefix(spec: dict[str, Any]) -> bool:
    """Whether the tokenizer puts a ``▁`` before the text (llama.cpp's ``add_space_prefix``)."""
    for part in _parts(spec.get("pre_tokenizer"), "pretokenizers"):
        if part.get("type") == "Metaspace":
            scheme = part.get("prepend_scheme") or ("always" if part.get("add_prefix_space", True) else "never")
            return scheme != "never"
    return any(p.get("type") == "Prepend" and p.get("prepend") == SPACE
               for p in _parts(spec.get("normalizer"), "normalizers"))


def prefix_only_first(spec: dict[str, Any]) -> bool:
    """Whether a ``▁`` goes before the text's first piece only, not after each special token (``Metaspace`` with
    ``prepend_scheme: first``, what transformers 5 builds for ``legacy=False``): llama.cpp cannot tokenize so."""
    return any(p.get("type") == "Metaspace" and p.get("prepend_scheme") == "first"
               for p in _parts(spec.get("pre_tokenizer"), "pretokenizers"))


def sentencepiece_vocabulary(tokenizer: Any, spec: dict[str, Any], rows: int) -> tuple[list[str], list[float], list[int]]:
    """``(tokens, scores, token types)`` for ``rows`` embedding rows (rows past the vocabulary are unused)."""
    by_id = {index: token for token, index in tokenizer.get_vocab().items()}
    added = tokenizer.added_tokens_decoder
    unknown = spec.get("model", {}).get("unk_token") or getattr(tokenizer, "unk_token", None)
    tokens, scores, types = [], [], []
    for index in range(rows):
        token = by_id.get(index, f"[PAD{index}]")
        tokens.append(token)
        if index not in by_id:
            kind = _UNUSED
        elif token == unknown:
            kind = _UNKNOWN
        elif index in added:
            kind = _CONTROL if added[index].special else _USER_DEFINED
        elif _BYTE_PIECE.match(token):
            kind = _BYTE
        else:
            kind = _NORMAL
        types.append(kind)
        scores.append(-float(index) if kind == _NORMAL else 0.0)
    return tokens, scores, types
