"""``ft export``: a run as one GGUF file plus an Ollama Modelfile, checked against the run before it is kept.

Order of work, so that only one model is in memory at a time:

1. the run as ``ft generate`` serves it (base + adapter, or a full fine-tune's weights) computes reference
   logits and greedy generations on a few prompts (:mod:`ftcore.parity`), then is freed;
2. the weights to export are built: an adapter is folded in by the method's plugin (``merge_adapter``, as
   ``ft merge`` does, in memory), a full fine-tune's weights are read as they are; they are written with the
   tokenizer and chat template by :mod:`ftcore.gguf_export` to a staging file, renamed when complete;
3. the Modelfile is written (:mod:`ftcore.modelfile`);
4. the GGUF is loaded back with transformers' GGUF loader and compared; the result is printed and saved as
   ``<name>.parity.json``. An f16 export past the tolerance is removed and the command fails; a quantized
   one is kept and its numbers reported.
"""

from __future__ import annotations

import gc
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftcore.errors import FtError

if TYPE_CHECKING:
    from ftcore.parity import Parity
    from ftcore.rundir import RunInfo

log = logging.getLogger(__name__)

FORMATS = ("gguf",)


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote: the GGUF file, its Modelfile and parity report, and the parity measured."""

    path: Path
    modelfile: Path
    parity_file: Path
    parity: Parity


def export_paths(run: RunInfo, output: str | Path | None, gguf_type: str) -> tuple[Path, Path, Path]:
    """``(gguf, Modelfile, parity json)``: ``output`` when it names a ``.gguf`` file, else a file in that directory
    (default ``<run>/export/``) named after the run and the type."""
    name = f"{run.path.name}-{gguf_type}.gguf"
    if output is None:
        path = run.path / "export" / name
    else:
        given = Path(output).expanduser().resolve()
        path = given if given.suffix == ".gguf" else given / name
    stem = path.name[: -len(".gguf")]
    return path, path.with_name(f"{stem}.Modelfile"), path.with_name(f"{stem}.parity.json")


def check_request(fmt: str, gguf_type: str, paths: tuple[Path, ...], overwrite: bool) -> None:
    """Refuse an unknown format or type and, without ``overwrite``, any file that already exists."""
    from ftcore.gguf_export import GGUF_TYPES

    if fmt not in FORMATS:
        raise FtError(f"--format {fmt!r} is not supported; supported: {', '.join(FORMATS)}")
    if gguf_type not in GGUF_TYPES:
        raise FtError(f"--type {gguf_type!r} is not supported; supported: {', '.join(GGUF_TYPES)}")
    if paths[0].exists() and paths[0].is_dir():
        raise FtError(f"{paths[0]} is a directory; give a .gguf file name or a directory to write into")
    existing = [p for p in paths if p.exists()]
    if existing and not overwrite:
        raise FtError(f"{existing[0]} exists; choose another --output or pass --overwrite")


def model_type_of(run: RunInfo) -> tuple[str, dict[str, Any] | None]:
    """``(model_type, rope_parameters)`` of the run's model, read from its config alone (no weights loaded)."""
    from transformers import AutoConfig

    from ftcore.models import gguf_as_model_dir, is_gguf, resolve_source

    source = str(run.path) if run.output == "model" else resolve_source(run.base_model)
    if is_gguf(source):
        source = str(gguf_as_model_dir(source))
    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=bool(run.config.get("trust_remote_code")))
    except Exception as exc:
        raise FtError(f"cannot read the model config of {run.path}: {type(exc).__name__}: {exc}") from exc
    return config.model_type, getattr(config, "rope_parameters", None)


def export_run(
    run_dir: str | Path,
    *,
    fmt: str = "gguf",
    gguf_type: str = "f16",
    output: str | Path | None = None,
    overwrite: bool = False,
    prompts: list[str] | tuple[str, ...] | None = None,
    max_new_tokens: int = 16,
) -> ExportResult:
    """Export the run in ``run_dir`` as GGUF with a Modelfile, then check it against the run (see the module doc).

    Raises FtError for an unsupported format, type or architecture, an existing file without ``overwrite``,
    and an f16 export whose parity check fails.
    """
    from ftcore.gguf_export import check_supported, check_tokenizer
    from ftcore.parity import DEFAULT_PROMPTS
    from ftcore.rundir import load_run

    run = load_run(run_dir)
    paths = export_paths(run, output, gguf_type)
    check_request(fmt, gguf_type, paths, overwrite)
    model_type, rope = model_type_of(run)
    check_supported(model_type, gguf_type, rope)
    check_tokenizer(_tokenizer(run))
    reference, stop_ids = _reference(run, list(prompts or DEFAULT_PROMPTS), max_new_tokens)
    path, modelfile, parity_file = paths
    _write(run, path, modelfile, gguf_type)
    parity = _check(path, reference, gguf_type, max_new_tokens, stop_ids)
    parity_file.write_text(
        json.dumps({"file": path.name, "run": str(run.path), **parity.as_json()}, indent=2) + "\n", encoding="utf-8"
    )
    if parity.problems:
        path.unlink(missing_ok=True)
        modelfile.unlink(missing_ok=True)
        raise FtError(
            f"{parity.line()} — {'; '.join(parity.problems)}; {path.name} was removed (numbers in {parity_file})"
        )
    return ExportResult(path, modelfile, parity_file, parity)


def _reference(run: RunInfo, prompts: list[str], max_new_tokens: int) -> tuple[Any, list[int]]:
    from ftcore.generation import stop_token_ids
    from ftcore.models import load_for_inference
    from ftcore.parity import reference_outputs

    model, tokenizer = load_for_inference(run.path, dtype="float32", device="cpu")
    stop_ids = stop_token_ids(model, tokenizer)
    reference = reference_outputs(model, tokenizer, prompts, max_new_tokens, stop_ids)
    del model
    gc.collect()
    return reference, stop_ids


def _tokenizer(run: RunInfo) -> Any:
    from ftcore.models import LoadOptions, load_tokenizer_from

    return load_tokenizer_from(str(run.path), LoadOptions(trust_remote_code=bool(run.config.get("trust_remote_code"))))


def _export_model(run: RunInfo) -> Any:
    """The weights to export, float32 on CPU: adapter folded in by the method's plugin, or the full fine-tune."""
    from ftcore.merge import merged_model
    from ftcore.models import LoadOptions, load_pretrained, require_causal_lm

    require_causal_lm(run, "be exported as a text generator")
    if run.output == "adapter":
        model, _ = merged_model(run.path, device="cpu")
        return model.float()
    options = LoadOptions("float32", bool(run.config.get("trust_remote_code")), bool(run.config.get("allow_pickle")))
    return load_pretrained(str(run.path), options, device="cpu")


def _write(run: RunInfo, path: Path, modelfile: Path, gguf_type: str) -> None:
    """Write the GGUF (staged, then renamed) and its Modelfile."""
    from ftcore.gguf_export import write_gguf
    from ftcore.modelfile import write_modelfile

    tokenizer = _tokenizer(run)
    model = _export_model(run)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write_gguf(model, tokenizer, staging, gguf_type, run.path.name)
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)
    write_modelfile(modelfile, path, tokenizer, getattr(model, "generation_config", None))
    del model
    gc.collect()


def _check(path: Path, reference: Any, gguf_type: str, max_new_tokens: int, stop_ids: list[int]) -> Parity:
    """Load ``path`` with transformers' GGUF loader and compare it with the reference."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ftcore.parity import compare

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32).eval()
    except Exception as exc:
        raise FtError(f"{path}: transformers cannot load the exported GGUF back: {type(exc).__name__}: {exc}") from exc
    return compare(reference, model, tokenizer, gguf_type, max_new_tokens, stop_ids)
