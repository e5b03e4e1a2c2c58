"""Hide Hub tokens in what ft prints: the user's own token and anything shaped like one.

A server may echo the request's token in an error body, and a library may put it in an exception; the CLI's
error printer and ft's log handler pass every message through :func:`redact`. Imports nothing heavy: the
token store is read only when a message is printed, and only when ``huggingface_hub`` is already loaded.
"""

from __future__ import annotations

import os
import re
import sys

#: Hugging Face user access tokens: ``hf_`` and a long run of letters and digits.
_TOKEN_SHAPE = re.compile(r"\bhf_[A-Za-z0-9]{16,}")
MASK = "hf_***"
_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACE_HUB_TOKEN")


def known_tokens() -> set[str]:
    """The user's tokens: from the environment, and from the token store when ``huggingface_hub`` is loaded."""
    tokens = {os.environ[name] for name in _ENV if os.environ.get(name)}
    if "huggingface_hub" in sys.modules:
        try:
            from huggingface_hub import get_token

            tokens.add(get_token() or "")
        except Exception:  # a broken token store must not stop an error from being shown
            pass
    return {token for token in tokens if len(token) >= 8}


def redact(text: str) -> str:
    """``text`` with the user's tokens and token-shaped strings replaced by ``hf_***``."""
    for token in known_tokens():
        text = text.replace(token, MASK)
    return _TOKEN_SHAPE.sub(MASK, text)
