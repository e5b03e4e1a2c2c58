"""Make a saved model directory read the same by transformers 4.x as by transformers 5.

transformers 5 writes two things 4.x misreads: ``config.json`` keeps the RoPE base only inside
``rope_parameters`` (4.x ignores that key and silently uses its default ``rope_theta``, 10000), and
``tokenizer_config.json`` names the class ``TokenizersBackend`` (4.x's ``AutoTokenizer`` fails: no such
class) and lists extra special tokens under ``extra_special_tokens``, where 4.x expects a mapping. The
fixes only add what 4.x reads next to what 5 reads (5 reads the 4.x spellings too), so the directory loads
the same under both; ``nox -s compat4`` checks it with a real transformers 4.57.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: What transformers 4.x calls the generic fast tokenizer that 5 calls ``TokenizersBackend``.
FAST_TOKENIZER_4X = "PreTrainedTokenizerFast"


def make_portable(directory: str | Path) -> None:
    """Rewrite ``config.json`` and ``tokenizer_config.json`` in ``directory`` (where present) for transformers 4.x."""
    directory = Path(directory)
    _rewrite(directory / "config.json", portable_config)
    _rewrite(directory / "tokenizer_config.json", portable_tokenizer_config)


def portable_config(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with 4.x's ``rope_theta`` (and ``rope_scaling`` for a scaled RoPE) beside ``rope_parameters``,
    and ``torch_dtype`` beside ``dtype``; nested configs (``text_config``...) too."""
    out = {key: portable_config(value) if isinstance(value, dict) and "model_type" in value else value
           for key, value in config.items()}
    rope = out.get("rope_parameters")
    if isinstance(rope, dict) and "rope_theta" in rope:
        out.setdefault("rope_theta", rope["rope_theta"])
        if rope.get("rope_type", "default") != "default":
            out.setdefault("rope_scaling", {k: v for k, v in rope.items() if k != "rope_theta"})
    if "dtype" in out and "torch_dtype" not in out:
        out["torch_dtype"] = out["dtype"]
    return out


def portable_tokenizer_config(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with a tokenizer class 4.x knows and extra special tokens where 4.x reads them."""
    out = dict(config)
    if out.get("tokenizer_class") == "TokenizersBackend":
        out["tokenizer_class"] = FAST_TOKENIZER_4X
    extra = out.get("extra_special_tokens")
    if isinstance(extra, list):
        out.pop("extra_special_tokens")
        out.setdefault("additional_special_tokens", extra)
    return out


def _rewrite(path: Path, change: Any) -> None:
    if not path.is_file():
        return
    data = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps(change(data), indent=2, sort_keys=True) + "\n", encoding="utf-8")
