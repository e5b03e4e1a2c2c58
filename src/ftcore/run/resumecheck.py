"""``--resume`` with a changed config: compare with what the checkpoint's run started with.

A fresh run records its resolved config (``ft_config.yaml``) and data fingerprint in its staging directory
when it begins; a finished run has both in its directory. ``--resume`` compares the new config key by key
(and the data fingerprint) with them: changes that only extend or observe the run (more steps, logging,
eval and checkpoint cadence, trackers) are allowed and recorded in the manifest; any other change alters
the optimisation or the data, which the checkpoint's optimizer and scheduler state do not follow, so it is
refused unless the user passes ``--allow-config-change``. Imports nothing heavy.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftcore.artifacts import rundir
from ftcore.errors import UsageError

if TYPE_CHECKING:
    from ftcore.config.schema import FtConfig

log = logging.getLogger(__name__)

#: Keys whose change leaves the optimisation and the data as they were: allowed on --resume.
SAFE_CHANGES = frozenset({
    "output_dir", "training.max_steps", "training.epochs", "training.logging_steps", "training.eval_steps",
    "training.save_steps", "training.save_total_limit", "training.report_to", "training.dataloader_workers",
    "training.eval_batch_size", "training.nan_policy", "data.cache_dir", "data.num_proc",
})

Changes = dict[str, list[Any]]


def flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}`` (lists and empty mappings stay values)."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_changes(saved: dict[str, Any], new: dict[str, Any]) -> Changes:
    """``{key: [saved value, new value]}`` for every key that differs."""
    old, now = flatten(saved), flatten(new)
    return {key: [old.get(key), now.get(key)] for key in sorted(old.keys() | now.keys()) if old.get(key) != now.get(key)}


def saved_config(run_dir: Path) -> dict[str, Any] | None:
    """The config a run (or staging) directory recorded, or None when it has none."""
    import yaml

    try:
        data = yaml.safe_load((run_dir / rundir.CONFIG).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None


def saved_fingerprint(run_dir: Path) -> str | None:
    """The data fingerprint a run directory's manifest, or a staging directory's marker, recorded."""
    for name, path in ((rundir.MANIFEST, ("data", "fingerprint")), (rundir.STAGING_MARKER, ("data_fingerprint",))):
        try:
            value: Any = json.loads((run_dir / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if value:
            return str(value)
    return None


def check_config(run_dir: Path, config: FtConfig, allow: bool) -> Changes:
    """The allowed changes of ``config`` against ``run_dir``'s recorded config; UsageError for any other."""
    import yaml

    from ftcore.config.schema import config_to_yaml

    saved = saved_config(run_dir)
    if saved is None:
        log.debug("no recorded config in %s: resuming without comparing", run_dir)
        return {}
    changes = config_changes(saved, yaml.safe_load(config_to_yaml(config)))
    _refuse_unsafe(changes, allow, run_dir)
    return changes


def check_data(run_dir: Path, fingerprint: str | None, allow: bool) -> Changes:
    """``{"data.fingerprint": [old, new]}`` when the data changed (refused unless ``allow``), else ``{}``."""
    old = saved_fingerprint(run_dir)
    if not old or not fingerprint or old == fingerprint:
        return {}
    changes = {"data.fingerprint": [old, fingerprint]}
    _refuse_unsafe(changes, allow, run_dir)
    return changes


def _refuse_unsafe(changes: Changes, allow: bool, run_dir: Path) -> None:
    unsafe = [key for key in changes if key not in SAFE_CHANGES]
    if not unsafe:
        return
    listed = ", ".join(f"{key} ({_short(changes[key][0])} -> {_short(changes[key][1])})" for key in unsafe)
    if not allow:
        raise UsageError(
            f"--resume: the run in {run_dir} was trained with another config or data: {listed}; these change the "
            "optimisation or the data, so resume with the original config, start a new run, or pass "
            "--allow-config-change to continue with the new values anyway"
        )
    log.warning("--allow-config-change: continuing with changed %s; the optimizer and scheduler state come from the "
                "checkpoint, so a new learning rate or schedule may not take effect", listed)


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 120 else text[:117] + "..."
