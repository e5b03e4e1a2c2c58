"""ftcore: the host of the ft fine-tuning CLI.

Public API for plugin authors. Importing this module is cheap: nothing heavy (torch,
transformers, peft, datasets) is imported here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

from ftcore.contract.specs import (
    CORE_SHAPES,
    FormatSpec,
    ImportedConfig,
    ImporterSpec,
    ImportRow,
    MemoryProfile,
    MethodSpec,
    MetricResult,
    MetricSpec,
    RewardSpec,
    ShapeSpec,
)
from ftcore.errors import (
    ConfigError,
    DataError,
    FtError,
    HubError,
    ModelError,
    PluginError,
    RunDirError,
    TrainingError,
    UsageError,
)

if TYPE_CHECKING:
    from ftcore.artifacts.provenance import is_hub_id
    from ftcore.artifacts.rundir import RunInfo, load_run
    from ftcore.config.keys import check_trainer_args
    from ftcore.config.schema import DataConfig, FtConfig
    from ftcore.contract.plugins import provider, reward_scores, reward_spec
    from ftcore.data.encode import EncodeOptions
    from ftcore.data.formats import FieldProblem, get_list, get_str, map_records
    from ftcore.data.messages import chat_message, text_content, tool_calls, tools_json, train_flag
    from ftcore.data.sources import DataSource
    from ftcore.data.templates import render_chat, with_system_prompt
    from ftcore.jobs.merge import merge_run, merged_model
    from ftcore.models.generation import stop_token_ids
    from ftcore.models.loading import enable_gradient_checkpointing, load_for_inference

__version__ = "0.1.0"

#: Names importable from ``ftcore`` that live in modules importing pydantic/yaml (still no torch): loaded on
#: first use so that ``import ftcore`` stays cheap.
_LAZY = {
    "added_token_ids": "ftcore.models.loading",
    "DataConfig": "ftcore.config.schema",
    "FtConfig": "ftcore.config.schema",
    "DataSource": "ftcore.data.sources",
    "EncodeOptions": "ftcore.data.encode",
    "FieldProblem": "ftcore.data.formats",
    "get_list": "ftcore.data.formats",
    "get_str": "ftcore.data.formats",
    "map_records": "ftcore.data.formats",
    "chat_message": "ftcore.data.messages",
    "text_content": "ftcore.data.messages",
    "render_chat": "ftcore.data.templates",
    "with_system_prompt": "ftcore.data.templates",
    "help_examples": "ftcore.commands.output",
    "check_trainer_args": "ftcore.config.keys",
    "load_run": "ftcore.artifacts.rundir",
    "RunInfo": "ftcore.artifacts.rundir",
    "is_hub_id": "ftcore.artifacts.provenance",
    "merge_run": "ftcore.jobs.merge",
    "load_for_inference": "ftcore.models.loading",
    "merged_model": "ftcore.jobs.merge",
    "stop_token_ids": "ftcore.models.generation",
    "enable_gradient_checkpointing": "ftcore.models.loading",
    "tool_calls": "ftcore.data.messages",
    "tools_json": "ftcore.data.messages",
    "train_flag": "ftcore.data.messages",
    "reward_spec": "ftcore.contract.plugins",
    "provider": "ftcore.contract.plugins",
    "reward_scores": "ftcore.contract.plugins",
    "RewardEntry": "ftcore.contract.rewards",
    "RewardContext": "ftcore.contract.rewards",
    "RunRewards": "ftcore.contract.rewards",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ftcore' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


#: Version of the plugin contract. Hooks are only ever added, and each addition bumps this number.
#: A plugin that needs a hook introduced in API version N sets ``FTCORE_PLUGIN_API = N`` in its entry
#: module; an older ftcore then reports it as failed to load ("needs plugin API N") instead of
#: silently never calling the hook. Declaring ``ftcore>=<release>`` in the plugin's dependencies
#: makes pip enforce the same.
PLUGIN_API_VERSION = 3

PROJECT_NAME = "ftcore"

#: Marker for hook implementations: ``@hookimpl def setup_peft(model, method, config): ...``
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

__all__ = [
    "CORE_SHAPES",
    "PLUGIN_API_VERSION",
    "ConfigError",
    "DataConfig",
    "DataError",
    "DataSource",
    "EncodeOptions",
    "FieldProblem",
    "FormatSpec",
    "FtConfig",
    "FtError",
    "HubError",
    "ImportRow",
    "ImportedConfig",
    "ImporterSpec",
    "MethodSpec",
    "MetricResult",
    "MetricSpec",
    "ModelError",
    "PluginError",
    "RewardSpec",
    "RunInfo",
    "RewardEntry",
    "RewardContext",
    "RunRewards",
    "RunDirError",
    "ShapeSpec",
    "TrainingError",
    "UsageError",
    "__version__",
    "chat_message",
    "get_list",
    "get_str",
    "help_examples",
    "hookimpl",
    "is_hub_id",
    "load_run",
    "merge_run",
    "load_for_inference",
    "map_records",
    "merged_model",
    "added_token_ids",
    "check_trainer_args",
    "render_chat",
    "stop_token_ids",
    "text_content",
    "with_system_prompt",
    "enable_gradient_checkpointing",
    "tool_calls",
    "tools_json",
    "train_flag",
    "reward_spec",
    "provider",
    "reward_scores",
    "MemoryProfile",
]
