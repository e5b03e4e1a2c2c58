"""Publish a run directory to the Hugging Face Hub with a model card.

``upload_run`` checks the repo id (before any request), finds the token (``HF_TOKEN`` or the token
stored by ``hf auth login``) and validates it with ``whoami`` before anything is created or uploaded,
stages the files to publish (the adapter or the merged model, tokenizer, config, manifest, metrics,
evaluation, and a generated README.md model card) in a temporary folder, then calls
``create_repo`` and ``upload_folder`` (one commit for a run directory's handful of files).

The token is passed to ``huggingface_hub`` only; it is never printed, logged, or written into the
card or any staged file (staged text files are checked for it before the upload).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ftcore.errors import HubError, UsageError

# The Hub's rules (huggingface_hub.utils.validate_repo_id) with the namespace made mandatory,
# since an upload needs to say whose repository it is.
_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
_REPO_ID = re.compile(rf"^{_PART}/{_PART}$")

#: Files of a run directory that are never published.
_PRIVATE = ("checkpoints",)
_BINARY_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth", ".msgpack", ".h5")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UploadPlan:
    """What would be (or was) published: the staged folder, its files with sizes, and the card."""

    repo_id: str
    folder: Path
    files: list[tuple[str, int]]
    card: str


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


def read_run(run_dir: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(manifest, config)`` of a run directory (ft_run.json and ft_config.yaml)."""
    from ftcore.rundir import load_run

    run = load_run(run_dir)
    return run.manifest, run.config


def base_model_of(manifest: dict[str, Any], config: dict[str, Any]) -> str | None:
    """The model a run started from, as the manifest or config names it."""
    return manifest.get("base_model") or manifest.get("model") or config.get("model")


#: Where ``ft evaluate`` leaves its results: ``RUN_DIR/eval/`` by default, or the run directory itself.
EVAL_FILES = ("eval/eval.json", "eval.json")


def read_eval(run_dir: Path) -> dict[str, Any] | None:
    """The run's evaluation results (``eval.json`` as ``ft evaluate`` writes it), if it was evaluated."""
    for name in EVAL_FILES:
        path = run_dir / name
        if path.is_file():
            try:
                return json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                return None
    return None


def is_adapter_run(run_dir: Path) -> bool:
    """True when the run saved an adapter beside its base rather than full weights (its method's ``output``)."""
    from ftcore.rundir import load_run

    return load_run(run_dir).output == "adapter"


# ----------------------------------------------------------------------------- the card


def _looks_like_hub_id(name: str | None) -> bool:
    return bool(name) and _REPO_ID.match(name) is not None and not Path(name).exists()


def _dataset_ids(config: dict[str, Any]) -> list[str]:
    sources = (config.get("data") or {}).get("train")
    sources = [sources] if isinstance(sources, (str, dict)) else list(sources or [])
    paths = [s.get("path") if isinstance(s, dict) else s for s in sources]
    return [p for p in paths if isinstance(p, str) and _looks_like_hub_id(p) and not Path(p).suffix]


def card_metadata(manifest: dict[str, Any], config: dict[str, Any], merged: bool, adapter: bool) -> dict[str, Any]:
    """The YAML front matter of the model card."""
    base = base_model_of(manifest, config)
    method = manifest.get("method") or config.get("method")
    meta: dict[str, Any] = {}
    if _looks_like_hub_id(base):
        meta["base_model"] = base
    meta["library_name"] = "peft" if adapter and not merged else "transformers"
    meta["pipeline_tag"] = "text-generation"
    tags = ["ft", "fine-tuned"] + ([method] if method else []) + (["merged"] if merged else [])
    if adapter and not merged:
        tags.append("adapter")
    meta["tags"] = list(dict.fromkeys(tags))
    datasets = _dataset_ids(config)
    if datasets:
        meta["datasets"] = datasets
    return meta


def _how_to_load(repo_id: str, base: str | None, adapter_card: bool) -> str:
    if adapter_card:
        return (
            "```python\nfrom peft import AutoPeftModelForCausalLM\nfrom transformers import AutoTokenizer\n\n"
            f'model = AutoPeftModelForCausalLM.from_pretrained("{repo_id}")\n'
            f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}")\n```\n\n'
            f"The adapter applies to `{base}`; `model.merge_and_unload()` gives a plain transformers model.\n"
        )
    return (
        "```python\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
        f'model = AutoModelForCausalLM.from_pretrained("{repo_id}")\n'
        f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}")\n```\n'
    )


def _data_section(manifest: dict[str, Any]) -> str:
    data = manifest.get("data") if isinstance(manifest.get("data"), dict) else {}
    fingerprint = manifest.get("data_fingerprint") or data.get("fingerprint")
    stats = manifest.get("data_stats") or data.get("stats")
    lines = [f"- fingerprint: `{fingerprint}`" if fingerprint else "- fingerprint: not recorded"]
    if isinstance(stats, dict):
        lines += [f"- {key}: {value}" for key, value in stats.items() if not isinstance(value, (dict, list))]
    return "\n".join(lines) + "\n"


def _eval_section(evaluation: dict[str, Any] | None) -> str:
    if not evaluation:
        return "This run has not been evaluated (`ft evaluate RUN_DIR` writes eval/eval.json).\n"
    scores = evaluation.get("scores")
    rows = [f"| {key} | {value:.4g} |" for key, value in (scores if isinstance(scores, dict) else {}).items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)]
    if not rows:
        return "No numeric scores in eval.json.\n"
    where = f" on {evaluation['n_examples']} examples" if isinstance(evaluation.get("n_examples"), int) else ""
    return f"Scores from `ft evaluate`{where}:\n\n| metric | value |\n|---|---|\n" + "\n".join(rows) + "\n"


def _flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _versions_section(manifest: dict[str, Any]) -> str:
    versions = manifest.get("versions") if isinstance(manifest.get("versions"), dict) else {}
    flat = {k: v for k, v in _flatten(versions).items() if isinstance(v, (str, int, float))}
    if not flat:
        return "Not recorded.\n"
    return "| package | version |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in flat.items()) + "\n"


def model_card(run_dir: str | Path, repo_id: str, merged: bool = False) -> str:
    """The README.md model card of a run: YAML metadata, how to load it, config, data, scores, versions."""
    run_dir = Path(run_dir)
    manifest, config = read_run(run_dir)
    adapter = is_adapter_run(run_dir)
    base = base_model_of(manifest, config)
    method = manifest.get("method") or config.get("method") or "unknown"
    metadata = yaml.safe_dump(card_metadata(manifest, config, merged, adapter), sort_keys=False)
    kind = "merged model" if merged and adapter else ("LoRA-style adapter" if adapter else "full model")
    config_yaml = yaml.safe_dump(config, sort_keys=False, allow_unicode=True).rstrip()
    return (
        f"---\n{metadata}---\n\n# {repo_id.split('/')[-1]}\n\n"
        f"A {kind} fine-tuned from `{base}` with ft (finetune-cli) "
        f"(method `{method}`).\n\n"
        f"## How to load\n\n{_how_to_load(repo_id, base, adapter and not merged)}\n"
        f"## Training configuration\n\n```yaml\n{config_yaml}\n```\n\n"
        f"## Training data\n\n{_data_section(manifest)}\n"
        f"## Evaluation\n\n{_eval_section(read_eval(run_dir))}\n"
        f"## Versions\n\n{_versions_section(manifest)}"
    )


# ----------------------------------------------------------------------------- staging


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


def stage(run_dir: str | Path, repo_id: str, folder: str | Path, merged: bool = False, dtype: str | None = None) -> UploadPlan:
    """Fill ``folder`` with what to publish and return the plan (files and card).

    With ``merged``, an adapter run is merged into its base first (``ftcore.merge``) and the merged
    weights replace the adapter.
    """
    run_dir, folder = Path(run_dir), Path(folder)
    adapter = is_adapter_run(run_dir)
    card = model_card(run_dir, repo_id, merged=merged and adapter)
    if merged and adapter:
        from ftcore.merge import merge_run

        merge_run(run_dir, folder, dtype=dtype)
    for path in _publishable(run_dir, skip_weights=merged and adapter):
        target = folder / path.relative_to(run_dir)
        if not target.exists():
            _link_or_copy(path, target)
    (folder / "README.md").write_text(card, encoding="utf-8")
    files = sorted((str(p.relative_to(folder)), p.stat().st_size) for p in folder.rglob("*") if p.is_file())
    return UploadPlan(repo_id=repo_id, folder=folder, files=files, card=card)


def assert_token_absent(folder: Path, token: str) -> None:
    """Refuse to publish a staged text file that contains the token."""
    needle = token.encode()
    for path in folder.rglob("*"):
        if path.is_file() and not path.name.endswith(_BINARY_SUFFIXES) and needle in path.read_bytes():
            raise HubError(f"{path.name} contains your Hugging Face token; remove it before uploading")


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
    except OSError as exc:
        raise HubError(f"cannot reach {api.endpoint}: {type(exc).__name__}") from None


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
    except OSError as exc:
        raise HubError(f"{what} {repo_id} failed: {type(exc).__name__}") from None


def upload_run(
    run_dir: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    merged: bool = False,
    dtype: str | None = None,
    commit_message: str | None = None,
) -> UploadResult:
    """Publish a run directory to ``repo_id`` in one commit; the token is checked before anything is sent."""
    from huggingface_hub import HfApi

    check_repo_id(repo_id)
    run_dir = Path(run_dir)
    read_run(run_dir)  # a wrong directory fails here, before the Hub is contacted
    _offline_guard()
    token = resolve_token()
    api = HfApi(token=token)
    user = whoami(api)
    with tempfile.TemporaryDirectory(prefix="ft-upload-") as tmp:
        plan = stage(run_dir, repo_id, tmp, merged=merged, dtype=dtype)
        assert_token_absent(plan.folder, token)
        repo_url = _hub_call("creating", repo_id, lambda: api.create_repo(repo_id, private=private, exist_ok=True))
        message = commit_message or f"Upload {run_dir.name} with ft (by {user})"
        commit = _hub_call("uploading to", repo_id, lambda: api.upload_folder(repo_id=repo_id, folder_path=plan.folder, commit_message=message))
    return UploadResult(repo_url=str(repo_url), commit_url=str(getattr(commit, "commit_url", commit)), files=plan.files)


def dry_run(run_dir: str | Path, repo_id: str, merged: bool = False) -> UploadPlan:
    """The files and card an upload would send, with no token and no Hub request.

    With ``merged`` the merge itself is not computed; the merged weights are listed with size ``-1``.
    """
    check_repo_id(repo_id)
    run_dir = Path(run_dir)
    read_run(run_dir)
    merging = merged and is_adapter_run(run_dir)
    with tempfile.TemporaryDirectory(prefix="ft-upload-") as tmp:
        plan = stage(run_dir, repo_id, tmp, merged=False)
    if not merging:
        return plan
    card = model_card(run_dir, repo_id, merged=True)
    files = [(n, s) for n, s in plan.files if not n.startswith("adapter_") and n != "README.md"]
    files += [("README.md", len(card.encode())), ("config.json", -1), ("generation_config.json", -1), ("model.safetensors", -1)]
    return UploadPlan(repo_id, plan.folder, sorted(files), card)
