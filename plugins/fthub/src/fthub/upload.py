"""Publish a run directory to the Hugging Face Hub with a model card.

``upload_run`` checks the repo id (before any request), finds the token (``HF_TOKEN`` or the token
stored by ``hf auth login``) and validates it with ``whoami`` before anything is created or uploaded,
stages the files to publish (the adapter or the merged model, tokenizer, config, manifest, metrics,
evaluation, and a README.md model card from :mod:`fthub.card`) in a temporary folder, shows the list
(``before_sending``), then calls ``create_repo`` and ``upload_folder`` (one commit).

GGUF exports (``*.gguf`` with their ``.Modelfile`` and ``.parity.json``) are sent only with
``include_gguf``. The base model is named by its Hub id in everything published (card,
``adapter_config.json``, ``ft_config.yaml``, ``ft_run.json``): the one the run recorded or
``--base-model``; a run whose base has no known Hub id is refused before anything is sent. No path of
this machine is published: ft's JSON and YAML records are rewritten with run-relative paths or file
names (:func:`portable_record`), and a staged text file that still names the run directory or the home
directory stops the upload.

The token is passed to ``huggingface_hub`` only; it is never printed, logged, or written into the
card or any staged file (staged text files are checked for it before the upload).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ftcore import HubError, UsageError

# The Hub's rules (huggingface_hub.utils.validate_repo_id) with the namespace made mandatory,
# since an upload needs to say whose repository it is.
_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
_REPO_ID = re.compile(rf"^{_PART}/{_PART}$")

#: Files of a run directory that are never published.
_PRIVATE = ("checkpoints",)
_BINARY_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth", ".msgpack", ".h5", ".png")
#: A GGUF export and the files written beside it (``ft export``): sent only with ``include_gguf``.
GGUF_SUFFIXES = (".gguf", ".Modelfile", ".parity.json")
#: ft's own records, whose path-valued strings are rewritten before they leave the machine.
_RECORD_SUFFIXES = (".json", ".yaml", ".yml")
_NOT_RECORDS = ("tokenizer.json", "vocab.json")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UploadPlan:
    """What would be (or was) published: the staged folder, its files with sizes, the card, and the GGUF
    export files left out (without ``include_gguf``)."""

    repo_id: str
    folder: Path
    files: list[tuple[str, int]]
    card: str
    left_out: list[tuple[str, int]] = field(default_factory=list)


@dataclass(frozen=True)
class UploadResult:
    """Where the run went: the repo URL and the commit URL."""

    repo_url: str
    commit_url: str
    files: list[tuple[str, int]]


def check_repo_id(repo_id: str) -> str:
    """Return ``repo_id`` when it is a valid ``namespace/name`` Hub id, else raise :class:`UsageError`."""
    if not _REPO_ID.match(repo_id or "") or "--" in repo_id or ".." in repo_id or repo_id.endswith(".git"):
        raise UsageError(
            f"invalid repo id {repo_id!r}: expected NAMESPACE/NAME with letters, digits, '-', '_' or '.' "
            "(no '--' or '..', at most 96 characters each), e.g. alice/my-model"
        )
    return repo_id


# ----------------------------------------------------------------------------- the run


def base_model_id(run_dir: Path, override: str | None = None) -> str:
    """The Hub id the card, ``adapter_config.json`` and ``ft_config.yaml`` of an upload name as the base model.

    ``override`` (``--base-model``) when given; else the id the run recorded (``base_model_provenance``, or a
    base given by Hub id in a run from before provenance was recorded). A run that started from a local
    directory or GGUF file whose Hub id is unknown raises one :class:`UsageError` line asking for
    ``--base-model``: a path of this machine is never published.
    """
    from ftcore import is_hub_id, load_run

    if override is not None:
        if not is_hub_id(override):
            raise UsageError(f"--base-model {override!r}: expected the base model's Hub id, ORG/NAME "
                             "(e.g. HuggingFaceTB/SmolLM2-135M-Instruct)")
        return override
    run = load_run(run_dir)
    if run.base_hub_id:
        return run.base_hub_id
    gguf = _gguf_name((run.manifest.get("base_model_provenance") or {}).get("gguf"))
    says = f"; the GGUF file calls itself {gguf} but names no Hub repository" if gguf else ""
    raise UsageError(f"{run.path.name}: the base model is the local {Path(run.base_model).name} and its Hub id is "
                     f"unknown{says}; pass --base-model ORG/NAME (the Hub model it is a copy of), ft never publishes "
                     "a local path")


def _gguf_name(metadata: dict[str, Any] | None) -> str:
    """How a GGUF base describes itself in the run's provenance ('Smollm2 135M' by HuggingFaceTB), or ''."""
    if not isinstance(metadata, dict):
        return ""
    name, org = metadata.get("name") or metadata.get("basename") or "", metadata.get("organization")
    return f"{name!r}" + (f" by {org}" if org else "") if name else (f"by {org}" if org else "")


# ----------------------------------------------------------------------------- staging


def is_gguf_export(name: str) -> bool:
    """True for a GGUF file and the Modelfile and parity report ``ft export`` writes beside it."""
    return name.endswith(GGUF_SUFFIXES)


def _publishable(run_dir: Path, skip_weights: bool) -> list[Path]:
    """Files of the run directory to publish (no checkpoints, no hidden files, nothing outside it)."""
    weights = {"adapter_model.safetensors", "adapter_config.json", "adapter_model.bin"}
    root = run_dir.resolve()
    files = []
    for path in sorted(run_dir.rglob("*")):
        rel = path.relative_to(run_dir)
        if not path.is_file() or rel.parts[0] in _PRIVATE or any(p.startswith(".") for p in rel.parts):
            continue
        if not path.resolve().is_relative_to(root):
            # A symlink out of the run directory could publish a private file (a token, a key).
            log.warning("not uploading %s: it links outside the run directory", rel)
            continue
        if rel.name == "README.md" or (skip_weights and rel.name in weights):
            continue
        files.append(path)
    return files


def _link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        target.hardlink_to(source)
    except OSError:
        shutil.copy2(source, target)


def stage(run_dir: str | Path, repo_id: str, folder: str | Path, merged: bool = False, dtype: str | None = None,
          base_model: str | None = None, license: str | None = None, include_gguf: bool = False) -> UploadPlan:
    """Fill ``folder`` with what to publish and return the plan (files, card, GGUF exports left out).

    With ``merged``, an adapter run is merged into its base first (``ftcore.merge_run``) and the merged
    weights replace the adapter. The base is named by its Hub id everywhere (see :func:`base_model_id`);
    ft's records lose their machine paths (:func:`portable_record`).
    """
    from ftcore import load_run
    from fthub.card import model_card

    run_dir, folder = Path(run_dir), Path(folder)
    run = load_run(run_dir)
    base_id = base_model_id(run_dir, base_model)
    adapter = run.output == "adapter"
    card = str(model_card(run, repo_id, base_id, merged=merged and adapter, license=license))
    if merged and adapter:
        from ftcore import merge_run

        merge_run(run_dir, folder, dtype=dtype)
    left_out = []
    for path in _publishable(run_dir, skip_weights=merged and adapter):
        rel = path.relative_to(run_dir)
        if is_gguf_export(path.name) and not include_gguf:
            left_out.append((rel.as_posix(), path.stat().st_size))
            continue
        target = folder / rel
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.parent == run_dir and path.name in _NAMES_BASE:
            _NAMES_BASE[path.name](path, target, base_id)
        elif path.name.endswith(_RECORD_SUFFIXES) and path.name not in _NOT_RECORDS:
            shutil.copy2(path, target)  # copied, not linked: it is rewritten below and the run's copy must stay
        else:
            _link_or_copy(path, target)
    for path in folder.rglob("*"):  # the merge's files and the rewritten ones alike
        if path.is_file() and path.name.endswith(_RECORD_SUFFIXES) and path.name not in _NOT_RECORDS:
            _rewrite_record(path, run.path)
    (folder / "README.md").write_text(card, encoding="utf-8")
    files = sorted((p.relative_to(folder).as_posix(), p.stat().st_size) for p in folder.rglob("*") if p.is_file())
    return UploadPlan(repo_id=repo_id, folder=folder, files=files, card=card, left_out=left_out)


def _rewrite_record(path: Path, run_dir: Path) -> None:
    """Rewrite a staged JSON or YAML record with :func:`portable_record`, when that changes it."""
    text = path.read_text(encoding="utf-8", errors="replace")
    yaml_file = path.suffix in (".yaml", ".yml")
    try:
        data = yaml.safe_load(text) if yaml_file else json.loads(text)
    except (ValueError, yaml.YAMLError):
        return
    portable = portable_record(data, run_dir)
    if portable != data:
        path.write_text(yaml.safe_dump(portable, sort_keys=False, allow_unicode=True) if yaml_file
                        else json.dumps(portable, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def is_machine_path(value: str) -> bool:
    """True when ``value`` is an absolute path on this machine: two or more parts, its top folder exists."""
    if "\n" in value or not os.path.isabs(value):
        return False
    parts = Path(value).parts
    return len(parts) > 2 and Path(parts[0], parts[1]).exists()


def portable_record(value: Any, run_dir: Path) -> Any:
    """``value`` (a parsed JSON/YAML record) with every path of this machine replaced: the run directory by its
    name, a path inside it by its path relative to it, any other by its file name; inside a longer text, the run
    directory by its name and the home directory by ``~``."""
    if isinstance(value, dict):
        return {key: portable_record(item, run_dir) for key, item in value.items()}
    if isinstance(value, list):
        return [portable_record(item, run_dir) for item in value]
    if not isinstance(value, str):
        return value
    if is_machine_path(value):
        path = Path(value)
        if path == run_dir:
            return run_dir.name
        return path.relative_to(run_dir).as_posix() if path.is_relative_to(run_dir) else path.name
    value = value.replace(str(run_dir), run_dir.name)
    home = str(Path.home())
    return value.replace(home + os.sep, "~" + os.sep) if len(Path(home).parts) > 1 else value


def _adapter_config(source: Path, target: Path, base_id: str) -> None:
    """``adapter_config.json`` naming the base by Hub id, so peft's ``AutoPeftModel`` finds it anywhere."""
    config = json.loads(source.read_text(encoding="utf-8"))
    if config.get("base_model_name_or_path") != base_id:
        config["base_model_name_or_path"] = base_id
        config["revision"] = None  # a revision recorded for another base would not exist in this one
    target.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def _run_config(source: Path, target: Path, base_id: str) -> None:
    """``ft_config.yaml`` with ``model:`` set to the Hub id, so the published config trains elsewhere."""
    config = yaml.safe_load(source.read_text(encoding="utf-8")) or {}
    config["model"] = base_id
    target.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")


def _manifest(source: Path, target: Path, base_id: str) -> None:
    """``ft_run.json`` with the base named by Hub id rather than this machine's path."""
    manifest = json.loads(source.read_text(encoding="utf-8"))
    manifest["base_model"] = base_id
    target.write_text(json.dumps(manifest, indent=2, default=str) + "\n", encoding="utf-8")


#: Run files that name the base model, rewritten in the staged copy (the run directory is left as it is).
_NAMES_BASE = {"adapter_config.json": _adapter_config, "ft_config.yaml": _run_config, "ft_run.json": _manifest}


def _text_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and not p.name.endswith(_BINARY_SUFFIXES)]


def assert_token_absent(folder: Path, token: str) -> None:
    """Refuse to publish a staged text file that contains the token."""
    needle = token.encode()
    for path in _text_files(folder):
        if needle in path.read_bytes():
            raise HubError(f"{path.name} contains your Hugging Face token; remove it before uploading")


def assert_no_machine_path(folder: Path, run_dir: Path) -> None:
    """Refuse to publish a staged text file that still names the run directory or the home directory."""
    home = str(Path.home())
    needles = [str(run_dir).encode(), *([f"{home}{os.sep}".encode()] if len(Path(home).parts) > 1 else [])]
    for path in _text_files(folder):
        content = path.read_bytes()
        if any(needle in content for needle in needles):
            raise HubError(f"{path.relative_to(folder).as_posix()} holds a path of this machine; remove it from "
                           f"{run_dir.name} (or the file) before uploading")


# ----------------------------------------------------------------------------- the Hub


def resolve_token() -> str:
    """The Hub token from ``HF_TOKEN`` or the ``hf auth login`` store, else a :class:`HubError`."""
    from huggingface_hub import get_token

    token = get_token()
    if not token:
        raise HubError("no Hugging Face token found: set HF_TOKEN or run `hf auth login` (a token with write access)")
    return token


def _offline_guard() -> None:
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        raise HubError("HF_HUB_OFFLINE is set, so the Hub cannot be reached; unset it to upload")


def is_unreachable(exc: BaseException) -> bool:
    """True when ``exc`` means the Hub was not reached (no answer, a dropped connection, a timeout): an
    ``OSError``, or the ``TransportError`` of the HTTP client huggingface_hub uses (httpx, or httpx2 in 2.x)."""
    return isinstance(exc, OSError) or any(
        cls.__name__ == "TransportError" and cls.__module__.startswith("httpx") for cls in type(exc).__mro__)


def whoami(api: Any) -> str:
    """The user name the token belongs to; a rejected token or unreachable Hub is a :class:`HubError`."""
    from huggingface_hub.errors import HfHubHTTPError

    try:
        return api.whoami()["name"]
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status == 401:
            raise HubError(f"the Hugging Face token was rejected by {api.endpoint} (invalid or expired); "
                           "set a valid HF_TOKEN or run `hf auth login --force`") from None
        raise HubError(f"checking the token at {api.endpoint} failed (HTTP {status})") from None
    except Exception as exc:
        if not is_unreachable(exc):
            raise
        raise HubError(f"cannot reach the Hub at {api.endpoint} ({type(exc).__name__}); check the network "
                       "(and HF_ENDPOINT if set), then retry") from None


def _hub_call(what: str, repo_id: str, call: Any) -> Any:
    """Run one Hub call, turning its HTTP errors into a one-line :class:`HubError` (never echoing headers)."""
    from huggingface_hub.errors import HfHubHTTPError

    try:
        return call()
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        detail = getattr(exc, "server_message", None) or ""
        hint = " (the token needs write access to that namespace)" if status in (401, 403) else ""
        raise HubError(f"{what} {repo_id} failed: HTTP {status} {detail}".rstrip() + hint) from None
    except ValueError as exc:  # huggingface_hub reports an invalid README metadata block this way
        raise HubError(f"{what} {repo_id} failed: {exc}") from None
    except Exception as exc:
        if not is_unreachable(exc):
            raise
        raise HubError(f"{what} {repo_id} failed: the Hub could not be reached ({type(exc).__name__})") from None


def upload_run(
    run_dir: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    merged: bool = False,
    dtype: str | None = None,
    commit_message: str | None = None,
    base_model: str | None = None,
    license: str | None = None,
    include_gguf: bool = False,
    before_sending: Callable[[UploadPlan], None] | None = None,
) -> UploadResult:
    """Publish a run directory to ``repo_id`` in one commit; the token is checked before anything is sent.

    ``base_model`` is the Hub id of the run's base when the run could not record it (see :func:`base_model_id`);
    ``before_sending`` receives the plan once the files are staged and checked, before the first Hub write.
    """
    from huggingface_hub import HfApi

    check_repo_id(repo_id)
    run_dir = Path(run_dir)
    base_model_id(run_dir, base_model)  # a wrong directory or an unknown base fails before the Hub is contacted
    _offline_guard()
    token = resolve_token()
    api = HfApi(token=token)
    user = whoami(api)
    with tempfile.TemporaryDirectory(prefix="ft-upload-") as tmp:
        plan = stage(run_dir, repo_id, tmp, merged=merged, dtype=dtype, base_model=base_model, license=license,
                     include_gguf=include_gguf)
        assert_token_absent(plan.folder, token)
        assert_no_machine_path(plan.folder, run_dir.expanduser().resolve())
        if before_sending is not None:
            before_sending(plan)
        repo_url = _hub_call("creating", repo_id, lambda: api.create_repo(repo_id, private=private, exist_ok=True))
        message = commit_message or f"Upload {run_dir.name} with ft (by {user})"
        commit = _hub_call("uploading to", repo_id, lambda: api.upload_folder(repo_id=repo_id, folder_path=plan.folder, commit_message=message))
    return UploadResult(repo_url=str(repo_url), commit_url=str(getattr(commit, "commit_url", commit)), files=plan.files)


def dry_run(run_dir: str | Path, repo_id: str, merged: bool = False, base_model: str | None = None,
            license: str | None = None, include_gguf: bool = False) -> UploadPlan:
    """The files and card an upload would send, with no token and no Hub request.

    With ``merged`` the merge itself is not computed; the merged weights are listed with size ``-1``.
    """
    from ftcore import load_run
    from fthub.card import model_card

    check_repo_id(repo_id)
    run = load_run(run_dir)
    merging = merged and run.output == "adapter"
    with tempfile.TemporaryDirectory(prefix="ft-upload-") as tmp:
        plan = stage(run.path, repo_id, tmp, merged=False, base_model=base_model, license=license,
                     include_gguf=include_gguf)
        assert_no_machine_path(plan.folder, run.path)
    if not merging:
        return plan
    card = str(model_card(run, repo_id, base_model_id(run.path, base_model), merged=True, license=license))
    files = [(n, s) for n, s in plan.files if not n.startswith("adapter_") and n != "README.md"]
    files += [("README.md", len(card.encode())), ("config.json", -1), ("generation_config.json", -1), ("model.safetensors", -1)]
    return UploadPlan(repo_id, plan.folder, sorted(files), card, plan.left_out)
