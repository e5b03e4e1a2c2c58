"""The tokenized-data cache: a fingerprint of everything that decides the tokens, and save/load by it.

The fingerprint covers the data files' contents and configured paths (not their modification times), the tokenizer (its vocabulary,
merges and special tokens), the chat template, the format plugins' versions and every data setting that
changes the tokens. A second run over the same inputs loads the tokenized datasets instead of tokenizing.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datasets import Dataset

log = logging.getLogger(__name__)

#: Bump when the pipeline's output for the same inputs changes, so old cache entries are not reused.
PIPELINE_VERSION = 3


def cache_root(cache_dir: str | None) -> Path:
    """``data.cache_dir``, else ``$FT_CACHE_DIR``, else ``~/.cache/ft/data``."""
    chosen = cache_dir or os.environ.get("FT_CACHE_DIR") or "~/.cache/ft/data"
    return Path(chosen).expanduser()


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tokenizer_digest(tokenizer: Any) -> str:
    """A digest of what decides the token ids: the backend's full serialisation and the special tokens."""
    digest = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        digest.update(backend.to_str().encode())
    else:
        digest.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    digest.update(json.dumps(tokenizer.special_tokens_map, sort_keys=True, default=str).encode())
    return digest.hexdigest()


@functools.cache
def _source_digest(root: str) -> str:
    digest = hashlib.sha256()
    base = Path(root)
    files = sorted(base.rglob("*.py")) if base.is_dir() else [base]
    for file in files:
        digest.update(str(file.relative_to(base) if base.is_dir() else file.name).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def plugin_code_digest(plugin: Any) -> str:
    """A digest of a plugin's Python source (its package, or its module file), so that editing a plugin
    installed in development mode invalidates what it cached; ``""`` for an in-memory plugin."""
    file = getattr(plugin, "__file__", None)
    if not file:
        return ""
    path = Path(file)
    root = path.parent if path.name == "__init__.py" else path
    try:
        return _source_digest(str(root))
    except OSError:
        return ""


def fingerprint(parts: dict[str, Any]) -> str:
    """A short stable hash of a JSON-serialisable description of the inputs."""
    text = json.dumps({"pipeline": PIPELINE_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def load_cached(root: Path, key: str) -> tuple[Dataset, Dataset | None, dict[str, Any]] | None:
    """The cached ``(train, eval, stats)`` for ``key``, or ``None`` when absent or unreadable."""
    from datasets import load_from_disk

    entry = root / key
    if not (entry / "stats.json").is_file():
        return None
    try:
        stats = json.loads((entry / "stats.json").read_text())
        train = load_from_disk(str(entry / "train"))
        evaluation = load_from_disk(str(entry / "eval")) if (entry / "eval").is_dir() else None
    except Exception as exc:  # a half-deleted or foreign entry: tokenize again
        log.warning("ignoring unreadable data cache entry %s: %s", entry, exc)
        return None
    return train, evaluation, stats


def save_cached(root: Path, key: str, train: Dataset, evaluation: Dataset | None, stats: dict[str, Any]) -> bool:
    """Store the tokenized datasets under ``key`` atomically; a cache that cannot be written is skipped.

    The entry is written into a hidden temporary directory and renamed onto ``key`` only when complete;
    a write that fails (a full disk) removes the temporary directory, so no partial entry is ever left.
    """
    staging: Path | None = None
    try:
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{key}.tmp-", dir=root))
        train.save_to_disk(str(staging / "train"))
        if evaluation is not None:
            evaluation.save_to_disk(str(staging / "eval"))
        (staging / "stats.json").write_text(json.dumps(stats, indent=2))
        try:
            staging.rename(root / key)
            staging = None
        except OSError:  # another process cached the same key first
            pass
        return True
    except OSError as exc:
        log.warning("data cache %s is not writable (%s); continuing without caching", root, exc)
        return False
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
