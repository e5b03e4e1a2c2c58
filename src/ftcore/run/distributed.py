"""Several processes, one run: who am I, waiting for each other, and what a multi-process layout needs.

``ft train`` started by ``torchrun`` or ``accelerate launch`` runs the same code in every process; the
launcher sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``. This module answers from those variables
without importing torch, and only touches ``torch.distributed`` (through accelerate's ``PartialState``,
the object ``Trainer`` itself builds) when there really are several processes. It also turns the
``training.fsdp`` / ``training.deepspeed`` sections into ``TrainingArguments`` keywords and checks that the
world size, batch settings and data fit together, so a bad layout fails with one line, not a hang.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftcore.errors import ConfigError

if TYPE_CHECKING:
    from ftcore.config.schema import FtConfig

log = logging.getLogger(__name__)

#: FSDP sharding strategies; FSDP2 (the default) knows only the first two.
SHARDING = ("full_shard", "shard_grad_op", "hybrid_shard", "hybrid_shard_zero2", "no_shard")

#: ``fsdp_config`` keys transformers reads, besides the ones ft names itself.
FSDP_PASSTHROUGH = {
    "activation_checkpointing", "auto_wrap_policy", "backward_prefetch", "cpu_ram_efficient_loading",
    "forward_prefetch", "limit_all_gathers", "min_num_params", "reshard_after_forward", "state_dict_type",
    "sync_module_states", "use_orig_params", "version",
}
FSDP_KEYS = {"sharding", "offload", "layer_class"} | FSDP_PASSTHROUGH


# ----------------------------------------------------------------------------- ranks


def rank() -> int:
    """Global rank of this process (0 in a single-process run)."""
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    """Number of processes of the run (1 unless a launcher started several)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_distributed() -> bool:
    """True when a launcher started more than one process."""
    return world_size() > 1


def _state() -> Any:
    """accelerate's process state; creating it joins the process group the way ``Trainer`` does."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def device_arguments() -> dict[str, Any]:
    """``TrainingArguments`` keywords for several processes without GPUs: ``use_cpu``, so that accelerate
    runs them as multi-CPU data parallel over gloo instead of as independent single processes."""
    if not is_distributed():
        return {}
    import torch

    return {} if torch.cuda.is_available() else {"use_cpu": True}


def wait_for_everyone() -> None:
    """A barrier across all processes (nothing in a single-process run)."""
    if is_distributed():
        _state().wait_for_everyone()


def leave() -> None:
    """Leave the process group once this rank's part of the run is done (nothing in a single-process run).

    A process that exits with its group alive can be aborted while the interpreter shuts down: gloo's worker
    threads still hold Python objects (``terminate called without an active exception``, SIGABRT). torchrun
    reports that rank as failed and stops the others, rank 0 in the middle of saving. Leaving is local (no
    barrier), so a rank never waits here for rank 0 to finish writing.
    """
    if not is_distributed():
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


SHARED_CHECK = ".ft-shared-check"


def check_shared_output(staging: Path) -> None:
    """Every rank must see the staging directory rank 0 just made: the output must be on shared storage.

    Rank 0 writes a random token there and broadcasts it; each rank reads the file and all ranks share
    what they saw, so that every rank fails alike (no rank is left waiting) with one line naming the ranks
    and hosts that do not see it. Nothing in a single-process run.
    """
    if not is_distributed():
        return
    import secrets
    import socket

    import torch.distributed as dist

    _state()
    token = [secrets.token_hex(8) if rank() == 0 else None]
    if rank() == 0:
        (staging / SHARED_CHECK).write_text(token[0] or "", encoding="utf-8")
    dist.broadcast_object_list(token, src=0)
    try:
        seen = (staging / SHARED_CHECK).read_text(encoding="utf-8") == token[0]
    except OSError:
        seen = False
    views: list[Any] = [None] * world_size()
    dist.all_gather_object(views, (seen, socket.gethostname()))
    if rank() == 0:
        (staging / SHARED_CHECK).unlink(missing_ok=True)
    blind = [f"rank {r} on {host}" for r, (ok, host) in enumerate(views) if not ok]
    if blind:
        raise ConfigError(f"output_dir: {', '.join(blind)} cannot see {staging}, which rank 0 created; output_dir "
                          "must be on storage that every machine shares (checkpoints hold every rank's files)")


@contextmanager
def local_main_process_first() -> Iterator[None]:
    """Run the block on each machine's first process, then on the others (which then find its cache)."""
    if not is_distributed():
        yield
        return
    with _state().local_main_process_first():
        yield


def log_rank(message: str, *args: Any) -> None:
    """Log ``message`` prefixed by this process's rank, on every rank (how tests see that each one trained)."""
    if is_distributed():
        log.info("rank %d/%d: " + message, rank(), world_size(), *args)


def quiet_replicas() -> None:
    """On ranks other than 0, keep ft's log to warnings and the per-rank lines of this module."""
    if rank() == 0 or not is_distributed():
        return
    logging.getLogger("ftcore").setLevel(logging.WARNING)
    log.setLevel(logging.INFO)


def rank_callback(seed: int) -> Any:
    """A ``TrainerCallback`` that seeds each rank apart and logs a line per rank at every logging step.

    The model is built before this runs, with the same seed everywhere, so every rank starts from the same
    weights; from the first step on, dropout and other training randomness use ``seed + rank``. A resumed run
    then restores each rank's saved random state (``rng_state_<rank>.pth``) over this seed.
    """
    from transformers import TrainerCallback, set_seed

    class RankCallback(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            set_seed(seed + rank())
            log_rank("training from step %d to %d (seed %d)", state.global_step, state.max_steps, seed + rank())

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
            if logs and "loss" in logs:
                log_rank("step %d/%d loss %.4g", state.global_step, state.max_steps, logs["loss"])

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            log_rank("finished at step %d", state.global_step)

    return RankCallback()


# ----------------------------------------------------------------------------- layout checks


def check_layout(config: FtConfig, processes: int | None = None) -> None:
    """Fail early when the FSDP/DeepSpeed settings are malformed or contradict the number of processes.

    (FSDP and DeepSpeed together is refused when the config is validated.)
    """
    t = config.training
    processes = processes or world_size()
    if t.fsdp is not None:
        _check_fsdp_keys(t.fsdp)
        if not _has_gpu():
            # accelerate runs CPU processes as plain data parallel and would silently drop the FSDP settings.
            raise ConfigError("training.fsdp: FSDP shards a model over GPUs and none is visible; "
                              "remove training.fsdp to train data-parallel on CPU")
    if t.deepspeed:
        _check_deepspeed_batches(config, load_deepspeed(t.deepspeed), processes)


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def check_data_fits(config: FtConfig, rows: int, processes: int | None = None) -> None:
    """Every process needs at least one micro-batch of real examples per epoch."""
    processes = processes or world_size()
    need = processes * config.training.batch_size
    if processes > 1 and rows < need:
        raise ConfigError(
            f"training.batch_size: {processes} processes x batch_size {config.training.batch_size} need at least "
            f"{need} training examples per step, but the data has {rows}; lower training.batch_size, start fewer "
            "processes, or add data"
        )


def _check_fsdp_keys(settings: dict[str, Any]) -> None:
    for key in settings:
        if key not in FSDP_KEYS:
            from ftcore.util.suggest import did_you_mean

            raise ConfigError(f"training.fsdp.{key}: unknown key{did_you_mean(key, FSDP_KEYS, cutoff=0.6)}; known: {', '.join(sorted(FSDP_KEYS))}")
    if settings.get("state_dict_type", "FULL_STATE_DICT") != "FULL_STATE_DICT":
        raise ConfigError("training.fsdp.state_dict_type: the run directory needs FULL_STATE_DICT (full safetensors weights)")
    sharding = settings.get("sharding", "full_shard")
    if sharding not in SHARDING:
        raise ConfigError(f"training.fsdp.sharding: {sharding!r} is not one of {', '.join(SHARDING)}")
    if int(settings.get("version", 2)) == 2 and sharding not in SHARDING[:2]:
        raise ConfigError(f"training.fsdp.sharding: {sharding} needs FSDP1; set training.fsdp.version: 1")


def load_deepspeed(value: str | dict[str, Any]) -> dict[str, Any]:
    """The DeepSpeed config as a mapping: an inline dict, or the JSON file a path names."""
    if isinstance(value, dict):
        return dict(value)
    path = Path(value).expanduser()
    if not path.is_file():
        raise ConfigError(f"training.deepspeed: file not found: {path}")
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"training.deepspeed: {path}:{exc.lineno}: not valid JSON: {exc.msg}") from exc
    if not isinstance(loaded, dict):
        raise ConfigError(f"training.deepspeed: {path}: expected a JSON object")
    return loaded


def _check_deepspeed_batches(config: FtConfig, ds: dict[str, Any], processes: int) -> None:
    """A number (not ``"auto"``) in the DeepSpeed config must agree with ft's batch settings."""
    t = config.training
    expected = {
        "train_micro_batch_size_per_gpu": (t.batch_size, "training.batch_size"),
        "gradient_accumulation_steps": (t.gradient_accumulation, "training.gradient_accumulation"),
        "train_batch_size": (t.batch_size * t.gradient_accumulation * processes,
                             f"batch_size x gradient_accumulation x {processes} processes"),
    }
    for key, (want, source) in expected.items():
        value = ds.get(key, "auto")
        if value != "auto" and value != want:
            raise ConfigError(
                f"training.deepspeed.{key}: {value} does not match {source} = {want}; set it to \"auto\" "
                "so ft's training settings decide it"
            )


# ----------------------------------------------------------------------------- TrainingArguments


def fsdp_arguments(settings: dict[str, Any] | None, model: Any = None) -> dict[str, Any]:
    """``TrainingArguments`` keywords for ``training.fsdp``: FSDP on, with transformer-based auto-wrap.

    ``sharding`` (full_shard, shard_grad_op, ...) and ``offload`` are ft's names; ``layer_class`` (the
    decoder layer class to wrap) defaults to the model's ``_no_split_modules``; the other keys pass through to
    transformers' ``fsdp_config``.
    """
    if settings is None:
        return {}
    _check_fsdp_keys(settings)
    rest = {k: v for k, v in settings.items() if k in FSDP_PASSTHROUGH}
    version = int(rest.setdefault("version", 2))
    sharding = settings.get("sharding", "full_shard")
    if version == 2:
        rest.setdefault("reshard_after_forward", sharding == "full_shard")
    else:
        rest.setdefault("reshard_after_forward", sharding)
    rest["cpu_offload"] = bool(settings.get("offload", False))
    rest.setdefault("auto_wrap_policy", "TRANSFORMER_BASED_WRAP")
    layers = settings.get("layer_class") or decoder_layer_classes(model)
    if layers:
        rest["transformer_layer_cls_to_wrap"] = [layers] if isinstance(layers, str) else list(layers)
    return {"fsdp": True, "fsdp_config": rest}


def decoder_layer_classes(model: Any) -> list[str]:
    """Class names in the model's ``_no_split_modules`` that it really contains (its decoder layers)."""
    if model is None:
        return []
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    names = list(getattr(base, "_no_split_modules", None) or [])
    present = {type(m).__name__ for m in base.modules()}
    return [name for name in names if name in present]


def shards_model(config: FtConfig) -> bool:
    """True when FSDP or DeepSpeed holds the weights, so saving them takes every rank."""
    return config.training.fsdp is not None or bool(config.training.deepspeed)


def save_sharded_model(trainer: Any, directory: Path, dtype: str | None = None) -> str | None:
    """Gather the full weights from all ranks and write them (rank 0) as ``save_pretrained`` would; return the
    floating dtype the files hold.

    Call on every rank. ``Trainer.save_model`` knows how to gather FSDP and ZeRO-3 parameters; the pickled
    training arguments it adds are not part of a run directory. FSDP with mixed precision keeps trainable
    parameters in float32 whatever they loaded in, so the gathered weights of a bfloat16 model would be saved
    in float32: with ``dtype`` (the dtype the weights loaded in) they are cast back, and a line says so.
    """
    log_rank("gathering the weights (fsdp: %s, deepspeed: %s)", trainer.is_fsdp_enabled, trainer.is_deepspeed_enabled)
    trainer.save_model(str(directory))
    if rank() != 0:
        return None
    (directory / "training_args.bin").unlink(missing_ok=True)
    return cast_saved_weights(directory, dtype)


def cast_saved_weights(directory: Path, dtype: str | None) -> str | None:
    """Cast the floating tensors of the model's ``*.safetensors`` files in ``directory`` to ``dtype`` (and
    ``config.json``'s dtype); return the dtype the files now hold. Nothing changes when they already are in
    ``dtype`` or it is None; an adapter's files are left as they are (adapters train and stay in float32)."""
    import json

    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    files = [path for path in sorted(directory.glob("*.safetensors")) if not path.name.startswith("adapter")]
    held = None
    for path in files:
        with safe_open(str(path), framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 (safe_open has keys(), not iteration)
                sliced = handle.get_slice(key)
                held = {"F32": "float32", "BF16": "bfloat16", "F16": "float16"}.get(sliced.get_dtype(), held)
                if held:
                    break
        if held:
            break
    if dtype is None or held is None or held == dtype:
        return held
    target = getattr(torch, dtype)
    for path in files:
        tensors = load_file(str(path))
        save_file({k: v.to(target) if v.is_floating_point() else v for k, v in tensors.items()}, str(path),
                  metadata={"format": "pt"})
    config_path = directory / "config.json"
    if config_path.is_file():
        config = json.loads(config_path.read_text(encoding="utf-8"))
        for key in ("dtype", "torch_dtype"):
            if key in config:
                config[key] = dtype
        config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    log.warning("the sharded model trained its weights in %s (FSDP keeps trainable weights in float32); saved in %s, "
                "the dtype they loaded in", held, dtype)
    return dtype


def deepspeed_argument(value: str | dict[str, Any] | None) -> dict[str, Any] | None:
    """The DeepSpeed config for ``TrainingArguments`` (a dict), or None; needs the deepspeed package."""
    if not value:
        return None
    import importlib.util

    config = load_deepspeed(value)
    if importlib.util.find_spec("deepspeed") is None:
        raise ConfigError("training.deepspeed: the deepspeed package is not installed (pip install deepspeed, on Linux with CUDA)")
    return config
