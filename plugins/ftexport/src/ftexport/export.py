"""``ft export``: a run as one GGUF file plus an Ollama Modelfile, checked against the run before it is kept.

Order of work, so that nothing heavy happens before every refusal and only one model is in memory at a time:

0. the request is checked: format, type, output location (writable, not under a file, nothing replaced
   without ``--overwrite``), the ``gguf`` package, the architecture (from the model's config alone) and the
   tokenizer;
1. the run as ``ft generate`` serves it (base + adapter, or a full fine-tune's weights) computes reference
   logits and greedy generations on a few prompts (:mod:`ftexport.parity`), then is freed;
2. the weights to export are built: an adapter is folded in by the method's plugin (as ``ft merge`` does,
   in memory), a full fine-tune's weights are read as they are; they are written with the tokenizer and
   chat template by :mod:`ftexport.gguf_writer` to a staging file, renamed when complete;
3. the Modelfile is written (:mod:`ftexport.modelfile`);
4. the GGUF is judged against the run: by llama.cpp itself when llama-cpp-python is installed (its tokenizer,
   logits and greedy answers), else loaded back with transformers' GGUF loader; the result, naming its judge,
   is printed and saved as ``<name>.parity.json``. An f16 export past the tolerance is removed and the command
   fails; a quantized one is kept and its numbers reported. A check that cannot run (an error while loading
   back) removes the unverified GGUF and Modelfile; an architecture transformers cannot read back is kept,
   reported unchecked (when transformers is the judge).
"""

from __future__ import annotations

import errno
import gc
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftcore import FtError

if TYPE_CHECKING:
    from ftcore import RunInfo
    from ftexport.parity import Parity

log = logging.getLogger(__name__)

FORMATS = ("gguf",)
#: ``general.*`` keys of a GGUF base that describe the file itself rather than the model's provenance.
_NOT_CARRIED = {"general.architecture", "general.name", "general.file_type", "general.quantization_version",
                "general.alignment", "general.finetune", "general.uuid"}


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
        given = Path(output).expanduser().absolute()
        path = given if given.suffix == ".gguf" else given / name
    stem = path.name[: -len(".gguf")]
    return path, path.with_name(f"{stem}.Modelfile"), path.with_name(f"{stem}.parity.json")


def check_request(fmt: str, gguf_type: str, paths: tuple[Path, ...], overwrite: bool) -> None:
    """Refuse an unknown format or type, an output location that cannot be written, and (without ``overwrite``)
    any file that already exists: all before anything is loaded."""
    from ftexport.architectures import GGUF_TYPES

    if fmt not in FORMATS:
        raise FtError(f"--format {fmt!r} is not supported; supported: {', '.join(FORMATS)}")
    if gguf_type not in GGUF_TYPES:
        raise FtError(f"--type {gguf_type!r} is not supported; supported: {', '.join(GGUF_TYPES)}")
    if paths[0].is_dir():
        raise FtError(f"{paths[0]} is a directory; give a .gguf file name or a directory to write into")
    existing = [p for p in paths if p.exists()]
    if existing and not overwrite:
        raise FtError(f"{existing[0]} exists; choose another --output or pass --overwrite")
    check_writable(paths[0].parent)


def check_writable(directory: Path) -> None:
    """An FtError unless files can be created in ``directory`` (or, when it does not exist yet, where it would be)."""
    existing = directory
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise FtError(f"cannot write into {directory}: {existing} is a file, not a directory; choose another --output")
    probe = existing / f".ft-export-probe-{os.getpid()}"
    try:
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise FtError(f"cannot write into {directory}: {exc.strerror or exc} ({existing}); choose another --output") from exc


def check_gguf_package() -> None:
    """An FtError naming the package to install when ``gguf`` (the GGUF writer and reader) is missing."""
    try:
        import gguf  # noqa: F401
    except ImportError as exc:
        raise FtError("ft export needs the gguf package, which is not installed: pip install gguf "
                      "(it comes with ftexport's own install)") from exc


def check_judge(judge: str | None) -> None:
    """Refuse an unknown parity judge, and the llama.cpp judge where llama-cpp-python is missing."""
    from ftexport.parity import llama_cpp_version

    if judge not in (None, "llama.cpp", "transformers"):
        raise FtError(f"unknown parity judge {judge!r}; known: llama.cpp, transformers")
    if judge == "llama.cpp" and llama_cpp_version() is None:
        raise FtError("the llama.cpp parity judge needs llama-cpp-python, which is not installed (or does not load): "
                      "pip install llama-cpp-python")


def model_config(run: RunInfo) -> dict[str, Any]:
    """The run's model config as a mapping, read without loading weights (a GGUF base: from its metadata)."""
    from transformers import AutoConfig

    trust = bool(run.config.get("trust_remote_code"))
    source = str(run.path) if run.output == "model" else run.base_model
    try:
        if source.lower().endswith(".gguf"):
            path = Path(source)
            config = AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name, trust_remote_code=trust)
        else:
            config = AutoConfig.from_pretrained(source, trust_remote_code=trust)
    except Exception as exc:
        raise FtError(f"cannot read the model config of {run.path}: {type(exc).__name__}: {exc}") from exc
    return config.to_dict()


def base_gguf_metadata(run: RunInfo) -> tuple[str | None, list[tuple[str, Any, Any]]]:
    """``(tokenizer.ggml.pre, carried general.* keys)`` of the run's base when it is a GGUF file, else ``(None, [])``.

    The base's own pre-tokenizer name is what llama.cpp's converter chose for that tokenizer; its license and
    source keys say where the weights came from, which the export keeps.
    """
    import gguf

    base = Path(str(run.manifest.get("base_model") or run.config.get("model") or ""))
    if base.suffix.lower() != ".gguf" or not base.is_file():
        return None, []
    reader = gguf.GGUFReader(str(base))
    pre_field = reader.fields.get("tokenizer.ggml.pre")
    pre = pre_field.contents() if pre_field is not None else None
    carried = [(key, field.contents(), field.types[0]) for key, field in reader.fields.items()
               if key.startswith("general.") and key not in _NOT_CARRIED]
    return pre, carried


def export_run(
    run_dir: str | Path,
    *,
    fmt: str = "gguf",
    gguf_type: str = "f16",
    output: str | Path | None = None,
    overwrite: bool = False,
    prompts: list[str] | tuple[str, ...] | None = None,
    max_new_tokens: int = 16,
    judge: str | None = None,
) -> ExportResult:
    """Export the run in ``run_dir`` as GGUF with a Modelfile, then check it against the run (see the module doc).

    ``judge``: "llama.cpp" or "transformers" to insist on one parity judge; by default llama.cpp where
    llama-cpp-python is installed, transformers' GGUF loader otherwise.

    Raises FtError for an unsupported format, type, architecture or tokenizer, an output location that cannot
    be written, an existing file without ``overwrite``, and an f16 export whose parity check fails.
    """
    from ftcore import load_run
    from ftexport.architectures import check_supported
    from ftexport.gguf_writer import check_tokenizer
    from ftexport.parity import DEFAULT_PROMPTS

    run = load_run(run_dir)
    paths = export_paths(run, output, gguf_type)
    check_request(fmt, gguf_type, paths, overwrite)
    check_gguf_package()
    check_judge(judge)
    config = model_config(run)
    arch = check_supported(config.get("model_type", ""), gguf_type, config)
    tokenizer = _tokenizer(run)
    check_tokenizer(tokenizer)
    reference, stop_ids = _reference(run, list(prompts or DEFAULT_PROMPTS), max_new_tokens)
    path, modelfile, parity_file = paths
    _write(run, tokenizer, path, modelfile, gguf_type)
    try:
        parity = _check(path, reference, gguf_type, max_new_tokens, stop_ids, arch.unreadable(config), judge)
        _write_text(parity_file, json.dumps({"file": path.name, "run": run.path.name, **parity.as_json()}, indent=2)
                    + "\n")
    except BaseException:  # an unverified export is not kept (nor an older report beside it)
        for written in paths:
            written.unlink(missing_ok=True)
        raise
    if parity.problems:
        path.unlink(missing_ok=True)
        modelfile.unlink(missing_ok=True)
        raise FtError(
            f"{parity.line()} — {'; '.join(parity.problems)}; {path.name} was removed (numbers in {parity_file})"
        )
    return ExportResult(path, modelfile, parity_file, parity)


def _reference(run: RunInfo, prompts: list[str], max_new_tokens: int) -> tuple[Any, list[int]]:
    from ftcore import load_for_inference, stop_token_ids
    from ftexport.parity import reference_outputs

    model, tokenizer = load_for_inference(run.path, dtype="float32", device="cpu")
    stop_ids = stop_token_ids(model, tokenizer)
    reference = reference_outputs(model, tokenizer, prompts, max_new_tokens, stop_ids)
    del model
    gc.collect()
    return reference, stop_ids


def _tokenizer(run: RunInfo) -> Any:
    """The run's tokenizer as ft serves it (pad falls back to eos)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(run.path), trust_remote_code=bool(run.config.get("trust_remote_code")))
    except Exception as exc:
        raise FtError(f"cannot load the tokenizer of {run.path}: {type(exc).__name__}: {exc}") from exc
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _export_model(run: RunInfo) -> Any:
    """The weights to export, float32 on CPU: adapter folded in by the method's plugin, or the full fine-tune."""
    from ftcore import load_for_inference, merged_model

    if run.output == "adapter":
        model, _ = merged_model(run.path, device="cpu")
        return model.float()
    return load_for_inference(run.path, dtype="float32", device="cpu")[0]


def _write(run: RunInfo, tokenizer: Any, path: Path, modelfile: Path, gguf_type: str) -> None:
    """Write the GGUF (staged, then renamed) and its Modelfile; a write error is one line and leaves nothing."""
    from ftexport.gguf_writer import write_gguf
    from ftexport.modelfile import modelfile_text

    pre, carried = base_gguf_metadata(run)
    model = _export_model(run)
    staging = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    created = [d for d in (path.parent, *path.parent.parents) if not d.exists()]
    replaced = False
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_gguf(model, tokenizer, staging, gguf_type, run.path.name, pre=pre, carried=carried)
        os.replace(staging, path)
        replaced = True
        modelfile.write_text(modelfile_text(path.name, tokenizer, getattr(model, "generation_config", None)),
                             encoding="utf-8")
    except OSError as exc:
        staging.unlink(missing_ok=True)
        if replaced:  # the new GGUF without its Modelfile; an older pair (--overwrite) is left alone otherwise
            path.unlink(missing_ok=True)
            modelfile.unlink(missing_ok=True)
        for directory in created:  # the folders this export made, innermost first (empty again now)
            directory.rmdir()
        raise _write_error(path, exc) from exc
    finally:
        staging.unlink(missing_ok=True)
    del model
    gc.collect()


def _write_text(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise _write_error(path, exc) from exc


def _write_error(path: Path, exc: OSError) -> FtError:
    """One line for a failed write: the path, and for a full disk the space left."""
    free = shutil.disk_usage(next(p for p in path.parents if p.exists())).free
    # numpy's tofile reports a short write without an errno ("N requested and M written"): with the device
    # all but full, that is the disk filling up too
    if exc.errno == errno.ENOSPC or (exc.errno is None and free < 2**20):
        return FtError(f"no space left on the device of {path} ({free / 2**20:.0f} MiB free); nothing was kept, "
                       "free some space or choose another --output")
    return FtError(f"cannot write {path}: {exc.strerror or exc}; nothing was kept")


def _check(path: Path, reference: Any, gguf_type: str, max_new_tokens: int, stop_ids: list[int],
           unreadable: str | None, judge: str | None) -> Parity:
    """Judge ``path`` against the reference with llama.cpp when llama-cpp-python is installed (or ``judge`` says
    "llama.cpp"), else with transformers' GGUF loader (or say why that cannot read it)."""
    from ftexport.parity import compare, judge_with_llama_cpp, llama_cpp_version

    if llama_cpp_version() is not None and judge != "transformers":
        try:
            judged = judge_with_llama_cpp(str(path), reference, max_new_tokens, stop_ids)
        except Exception as exc:
            raise FtError(f"{path}: llama.cpp cannot load or run the exported GGUF: {type(exc).__name__}: {exc}; "
                          "the unverified GGUF and Modelfile were removed") from exc
        return compare(reference, judged, gguf_type)
    return _check_with_transformers(path, reference, gguf_type, max_new_tokens, stop_ids, unreadable)


def _check_with_transformers(path: Path, reference: Any, gguf_type: str, max_new_tokens: int, stop_ids: list[int],
                             unreadable: str | None) -> Parity:
    """Load ``path`` with transformers' GGUF loader and compare it with the reference (or say why it cannot)."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ftexport.parity import compare, judge_with_transformers, unchecked

    if unreadable:
        return unchecked(gguf_type, f"transformers {transformers.__version__}", len(reference.ids), unreadable)
    try:
        tokenizer = _as_llama_cpp_reads(AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name))
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32).eval()
    except Exception as exc:
        raise FtError(f"{path}: transformers cannot load the exported GGUF back: {type(exc).__name__}: {exc}; "
                      "the unverified GGUF and Modelfile were removed") from exc
    return compare(reference, judge_with_transformers(model, tokenizer, reference, max_new_tokens, stop_ids), gguf_type)


def _as_llama_cpp_reads(tokenizer: Any) -> Any:
    """transformers' rebuild of a SentencePiece-style GGUF vocabulary puts ``▁`` before the text's first piece only;
    llama.cpp, reading ``add_space_prefix``, puts one after every special token too (as SentencePiece does). The
    judge stands in for llama.cpp, so it reads the text as llama.cpp does."""
    import json

    from tokenizers import pre_tokenizers

    from ftexport.spm import prefix_only_first

    backend = tokenizer.backend_tokenizer
    if prefix_only_first(json.loads(backend.to_str())):
        backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=False)
    return tokenizer
