"""``ft plugin new``: write a ready-to-install plugin package for a method, a dataset format, a metric or a reward.

The generated package has a pyproject with the ``ftcore`` entry point, one module with the hook
implementations, a test that subclasses ftcore's contract suite, and a README.
"""

from __future__ import annotations

import re
from pathlib import Path
from string import Template

from ftcore.errors import UsageError

KINDS = ("method", "format", "metric", "reward")

PYPROJECT = """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "$dist"
version = "0.1.0"
description = "$summary"
readme = "README.md"
requires-python = ">=3.10"
dependencies = [$dependencies]

[project.entry-points.ftcore]
$dist = "$module"

[tool.setuptools.packages.find]
where = ["src"]
"""

README = """\
# $dist

An ft plugin providing the $kind `$name`.

```bash
pip install .          # ft discovers it through the `ftcore` entry point
ft plugins             # lists $dist
pytest tests           # the ftcore contract suite for a $kind, on a tiny model
```
"""

METHOD_MODULE = '''\
"""$dist: the method `$name` for ft — LoRA on the attention projections only.

It builds on ftlora (a declared dependency), which attaches, loads and merges the LoRA adapter.
Change ``setup_peft`` to make it yours; keep heavy imports inside the hooks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from ftcore import MethodSpec, hookimpl
from ftlora import LoraOptions, attach_lora, load_lora, lora_tensor_shapes, merge_lora

#: The ftcore plugin API this plugin needs (load_adapter, merge_adapter, trained_tensor_shapes).
FTCORE_PLUGIN_API = $plugin_api


class Options(LoraOptions):
    """Options of `$name` (validated from the config's ``method_options``)."""

    target_modules: list[str] = Field(["q_proj", "k_proj", "v_proj", "o_proj"], description="Modules to adapt.")


@hookimpl
def register_methods() -> list[MethodSpec]:
    """Tell ft that this plugin provides the method `$name`."""
    return [MethodSpec("$name", "$summary", options=Options)]


@hookimpl
def setup_peft(model: Any, method: str, config: Any, options: Options | None) -> Any:
    """Attach the adapter when the run's method is `$name`; ``None`` leaves other methods alone."""
    if method != "$name":
        return None
    return attach_lora(model, options or Options(), config)


@hookimpl
def load_adapter(model: Any, path: Path, method: str) -> Any:
    """Apply a trained adapter of `$name` to its base model, for ``ft evaluate`` and ``ft generate``."""
    if method != "$name":
        return None
    return load_lora(model, path)


@hookimpl
def merge_adapter(model: Any, path: Path, method: str) -> Any:
    """Fold a trained adapter of `$name` into its base model, for ``ft merge``."""
    if method != "$name":
        return None
    return merge_lora(model, path)


@hookimpl
def trained_tensor_shapes(model: Any, method: str) -> Any:
    """The shapes of the tensors a checkpoint of `$name` holds, so ``--resume`` can check them."""
    if method != "$name":
        return None
    return lora_tensor_shapes(model)
'''

FORMAT_MODULE = '''\
"""$dist: the dataset format `$name` for ft — records with `input` and `target`.

ft reads the files; this plugin only maps each record to a canonical prompt/completion example.
"""

from __future__ import annotations

from typing import Any

from ftcore import DataError, FormatSpec, hookimpl

FIELDS = ("input", "target")


@hookimpl
def register_dataset_formats() -> list[FormatSpec]:
    """Tell ft that this plugin reads the format `$name` (detected from its columns)."""
    return [FormatSpec("$name", "$summary", columns=FIELDS)]


@hookimpl(specname="load_dataset")
def load_${module}_dataset(source: Any) -> Any:
    """Map `$name` records to prompt/completion; ``None`` for other formats."""
    if source.format != "$name":
        return None
    from datasets import Dataset

    names = {field: source.columns.get(field, field) for field in FIELDS}
    rows = []
    for i, record in enumerate(source.records):
        for column in names.values():
            if not isinstance(record.get(column), str):
                raise DataError(f"{source.where(i)}: field {column!r} must be a string (format '$name')")
        rows.append({"prompt": record[names["input"]], "completion": record[names["target"]]})
    return Dataset.from_list(rows)
'''

METRIC_MODULE = '''\
"""$dist: the metric `$name` for ft — mean ratio of prediction to reference length, in words."""

from __future__ import annotations

from typing import Any

from ftcore import MetricSpec, hookimpl


@hookimpl
def register_metrics() -> list[MetricSpec]:
    """Tell ft that this plugin computes the metric `$name`."""
    return [MetricSpec("$name", "$summary", higher_is_better=False)]


@hookimpl
def compute_metric(name: str, predictions: list[str], references: list[str], context: dict[str, Any]) -> Any:
    """Score predictions against references; ``None`` for other metrics."""
    if name != "$name":
        return None
    ratios = [len(p.split()) / max(1, len(r.split())) for p, r in zip(predictions, references, strict=True)]
    return {"$name": sum(ratios) / len(ratios) if ratios else 0.0}
'''

REWARD_MODULE = '''\
"""$dist: the reward `$name` for ft — favours completions near a target length, in words.

Methods that learn from rewards (grpo) name it in their options: ``rewards: [{name: $name, target: 20}]``.
``setup_reward`` runs once per run (load a model there: ft keeps what it returns and passes it back as
``state``); ``compute_reward`` scores each batch. Keep heavy imports inside the hooks.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ftcore import RewardSpec, hookimpl

#: The ftcore plugin API this plugin needs (setup_reward, validated reward options).
FTCORE_PLUGIN_API = $plugin_api


class Options(BaseModel):
    """Options of `$name` (the other keys of its entry in ``rewards:``), validated and given to the hooks."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    target: int = Field(20, ge=1, description="Target length in words.")


@hookimpl
def register_rewards() -> list[RewardSpec]:
    """Tell ft that this plugin computes the reward `$name`."""
    return [RewardSpec("$name", "$summary", options=Options)]


@hookimpl
def setup_reward(name: str, options: Options, context: Any) -> Any:
    """Once per run: what the reward needs (a model on ``context.device``, say); here nothing."""
    return None


@hookimpl
def compute_reward(name: str, completions: list[str], options: Options, state: Any) -> list[float] | None:
    """One score per completion: 1 at the target length, less the further off; ``None`` for other rewards."""
    if name != "$name":
        return None
    return [1.0 / (1.0 + abs(len(c.split()) - options.target) / options.target) for c in completions]
'''

TESTS = {
    "method": '''\
"""The ftcore contract suite for the method `$name`, on ftcore's tiny test model."""

from ftcore.testing.suites import MethodContract


class TestMethod(MethodContract):
    method = "$name"
    options = {"r": 4}
    bad_options = [{"r": 0}, {"rank": 4}]
''',
    "format": '''\
"""The ftcore contract suite for the dataset format `$name`."""

from ftcore.testing.suites import FormatContract


class TestFormat(FormatContract):
    format = "$name"
    records = [{"input": "Say hi", "target": "hi"}, {"input": "Say bye", "target": "bye"}]
    expected = [{"prompt": "Say hi", "completion": "hi"}, {"prompt": "Say bye", "completion": "bye"}]
    bad_record = {"input": "no target"}
''',
    "metric": '''\
"""The ftcore contract suite for the metric `$name`."""

from ftcore.testing.suites import MetricContract


class TestMetric(MetricContract):
    metric = "$name"
    cases = [
        (["a b", "c"], ["a b", "c d"], {"$name": 0.75}),
        (["one two three"], ["one"], {"$name": 3.0}),
    ]
''',
    "reward": '''\
"""The ftcore contract suite for the reward `$name`."""

from ftcore.testing.suites import RewardContract


class TestReward(RewardContract):
    reward = "$name"
    options = {"target": 2}
    bad_options = [{"target": 0}, {"targt": 2}]
    cases = [(["a b", "a b c d"], [1.0, 0.5])]
''',
}

MODULES = {"method": METHOD_MODULE, "format": FORMAT_MODULE, "metric": METRIC_MODULE, "reward": REWARD_MODULE}
#: What each kind of generated plugin imports besides ftcore (a method builds on ftlora's LoRA).
DEPENDENCIES = {"method": ("ftlora>=0.1.0", "pydantic>=2.6"), "format": ("datasets>=3.0",), "metric": (),
                "reward": ("pydantic>=2.6",)}
SUMMARIES = {
    "method": "LoRA on the attention projections only",
    "format": "records with input and target; loss on the target",
    "metric": "mean prediction/reference length ratio (words)",
    "reward": "closeness of a completion's length to a target (words)",
}


def new_plugin(name: str, kind: str, output: str | Path = ".") -> Path:
    """Write a plugin package providing the ``kind`` named ``name`` under ``output``; return its folder."""
    from ftcore import PLUGIN_API_VERSION, __version__
    from ftcore.specs import check_name

    if kind not in KINDS:
        raise UsageError(f"unknown plugin kind {kind!r}; choose one of {', '.join(KINDS)}")
    try:
        check_name(kind, name)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    module = "ft_" + re.sub(r"[^a-z0-9]", "_", name)
    dist = module.replace("_", "-")
    root = Path(output) / dist
    if root.exists():
        raise UsageError(f"{root} already exists; choose another name or --output")
    values = {
        "name": name, "kind": kind, "dist": dist, "module": module,
        "summary": SUMMARIES[kind], "plugin_api": PLUGIN_API_VERSION,
        "dependencies": ", ".join(f'"{d}"' for d in (f"ftcore>={__version__}", *DEPENDENCIES[kind])),
    }
    files = {
        "pyproject.toml": PYPROJECT,
        "README.md": README,
        f"src/{module}/__init__.py": MODULES[kind],
        f"tests/test_{module}.py": TESTS[kind],
    }
    for relative, template in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Template(template).substitute(values), encoding="utf-8")
    return root
