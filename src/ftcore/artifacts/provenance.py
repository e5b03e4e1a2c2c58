"""Where a run's base model came from: the Hub id (and revision, commit) behind a local path, GGUF file or id.

A run loads its base from wherever ``model:`` points (a Hub id, a directory, a GGUF file dequantized into
ft's cache), but what it publishes must name the base by its Hub id, never by a path of this machine.
:func:`base_provenance` finds that id when it can be known:

- ``model:`` is a Hub id: that id, ``revision:``, and the commit the files came from (read from the Hub cache);
- a directory inside the Hub cache (``models--ORG--NAME/snapshots/COMMIT``): ``ORG/NAME`` and that commit;
- a GGUF file whose metadata names its source on the Hub (``general.source.repo_url``, ``general.source.url``
  or the older ``general.source.huggingface.repository``). The file's other metadata (name, organization,
  license, quantization, and the models *it* was fine-tuned from, ``general.base_model.*``) is recorded too;
  those ancestors are not the weights the run trained on, so they never stand in for its base.

Otherwise the id is unknown (``hub_id`` is None) and ``ft upload`` asks for ``--base-model``.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path
from typing import Any

from ftcore.util.paths import looks_local

_HUB_URL = re.compile(r"^https?://(?:www\.)?huggingface\.co/(?!datasets/|spaces/)([\w.-]+/[\w.-]+?)(?:/.*)?/?$")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")
_CACHE_DIR = re.compile(r"^models--([\w.-]+)--([\w.-]+)$")


def base_provenance(source: str, revision: str | None = None) -> dict[str, Any]:
    """``{"hub_id", "revision", "commit", "found_by", "gguf"}`` of a run's ``model:`` (see the module doc)."""
    record: dict[str, Any] = {"hub_id": None, "revision": None, "commit": None, "found_by": None, "gguf": None}
    path = Path(source).expanduser()
    if not path.exists() and not looks_local(source, (".gguf",)):
        commit = cached_commit(source, revision)
        return {**record, "hub_id": source, "revision": revision, "commit": commit, "found_by": "model id"}
    in_cache = hub_cache_snapshot(path.resolve())
    if in_cache:
        return {**record, "hub_id": in_cache[0], "commit": in_cache[1], "found_by": "Hub cache path"}
    if path.suffix.lower() == ".gguf" and path.is_file():
        metadata = gguf_metadata(path)
        hub_id = gguf_source_id(metadata)
        return {**record, "hub_id": hub_id, "found_by": "GGUF metadata" if hub_id else None, "gguf": metadata}
    return record


def is_hub_id(name: Any) -> bool:
    """True when ``name`` reads as ``owner/name`` on the Hub (and is not a path)."""
    return isinstance(name, str) and bool(_HUB_ID.match(name)) and not looks_local(name, (".gguf",))


def cached_commit(repo_id: str, revision: str | None) -> str | None:
    """The commit of the Hub cache's copy of ``repo_id`` at ``revision`` (what from_pretrained just read)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    except Exception:  # an id the cache cannot hold (odd characters), an unreadable cache
        return None
    snapshot = hub_cache_snapshot(Path(found).parent) if isinstance(found, str) else None
    return snapshot[1] if snapshot else None


def hub_cache_snapshot(path: Path) -> tuple[str, str] | None:
    """``(repo_id, commit)`` when ``path`` is (inside) a snapshot of the Hub cache, else None."""
    parts = path.parts
    for i in range(len(parts) - 2):
        match = _CACHE_DIR.match(parts[i])
        if match and parts[i + 1] == "snapshots":
            return f"{match.group(1)}/{match.group(2)}", parts[i + 2]
    return None


# ----------------------------------------------------------------------------- GGUF metadata

_GGUF_FIELDS = {
    "general.name": "name",
    "general.organization": "organization",
    "general.basename": "basename",
    "general.finetune": "finetune",
    "general.size_label": "size_label",
    "general.version": "version",
    "general.license": "license",
    "general.repo_url": "repo_url",
    "general.source.url": "source_url",
    "general.source.repo_url": "source_repo_url",
    "general.source.huggingface.repository": "source_repository",
}


def gguf_metadata(path: Path) -> dict[str, Any]:
    """The provenance fields of a GGUF file's ``general.*`` metadata (only those it has), plus its file type."""
    try:
        values = read_gguf_header(path)
    except (OSError, ValueError, struct.error):
        return {}  # a file the model loader reads is checked there; provenance never blocks a run
    found: dict[str, Any] = {name: values[key] for key, name in _GGUF_FIELDS.items() if values.get(key) not in (None, "")}
    file_type = values.get("general.file_type")
    if isinstance(file_type, int):
        found["file_type"] = _FILE_TYPES.get(file_type, str(file_type))
    ancestors = []
    for i in range(int(values.get("general.base_model.count") or 0)):
        entry = {k: values.get(f"general.base_model.{i}.{k}") for k in ("name", "organization", "repo_url")}
        ancestors.append({k: v for k, v in entry.items() if v})
    if ancestors:
        found["base_models"] = ancestors
    return found


# GGUF value types (the spec's gguf_metadata_value_type): struct formats of the scalars; 8 string, 9 array.
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_FILE_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K", 11: "Q3_K_S",
               12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K",
               32: "BF16"}


def read_gguf_header(path: Path) -> dict[str, Any]:
    """The ``general.*`` key/value metadata of a GGUF file (arrays elsewhere are skipped, not decoded).

    A small reader of the header alone: the gguf package's reader maps every tensor and decodes the whole
    vocabulary, seconds for a small model, where this takes milliseconds.
    """
    with Path(path).open("rb") as handle:
        magic, version = struct.unpack("<4sI", handle.read(8))
        if magic != b"GGUF" or version < 2:
            raise ValueError(f"{path}: not a GGUF v2+ file")
        _, count = struct.unpack("<QQ", handle.read(16))
        values: dict[str, Any] = {}
        for _ in range(count):
            key = _string(handle)
            (kind,) = struct.unpack("<I", handle.read(4))
            value = _value(handle, kind, keep=key.startswith("general."))
            if key.startswith("general."):
                values[key] = value
        return values


def _string(handle: Any) -> str:
    (length,) = struct.unpack("<Q", handle.read(8))
    return handle.read(length).decode("utf-8", errors="replace")


def _value(handle: Any, kind: int, keep: bool) -> Any:
    if kind in _SCALARS:
        fmt = "<" + _SCALARS[kind]
        return struct.unpack(fmt, handle.read(struct.calcsize(fmt)))[0]
    if kind == 8:
        return _string(handle)
    if kind == 9:
        element, length = struct.unpack("<IQ", handle.read(12))
        if element in _SCALARS and not keep:
            handle.seek(length * struct.calcsize("<" + _SCALARS[element]), 1)
            return None
        items = [_value(handle, element, keep) for _ in range(length)]
        return items if keep else None
    raise ValueError(f"unknown GGUF value type {kind}")


def gguf_source_id(metadata: dict[str, Any]) -> str | None:
    """The Hub id a GGUF file was converted from, when its metadata names it."""
    repository = metadata.get("source_repository")
    if is_hub_id(repository):
        return repository
    for key in ("source_repo_url", "source_url"):
        match = _HUB_URL.match(str(metadata.get(key) or ""))
        if match:
            return match.group(1)
    return None


def describe_gguf(metadata: dict[str, Any] | None) -> str:
    """A short human description of a GGUF file's self-description ('Smollm2 135M ... by HuggingFaceTB')."""
    if not metadata:
        return ""
    name = metadata.get("name") or metadata.get("basename") or ""
    org = metadata.get("organization")
    return f"{name!r}" + (f" by {org}" if org else "") if name else (f"by {org}" if org else "")
