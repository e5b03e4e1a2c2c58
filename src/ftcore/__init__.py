"""ftcore: the host of the ft fine-tuning CLI.

Public API for plugin authors. Importing this module is cheap: nothing heavy (torch,
transformers, peft, datasets) is imported here.
"""

from __future__ import annotations

import pluggy

from ftcore.errors import (
    ConfigError,
    DataError,
    FtError,
    ModelError,
    PluginError,
    RunDirError,
    TrainingError,
    UsageError,
)
from ftcore.specs import FormatSpec, MethodSpec, MetricSpec

__version__ = "0.1.0"

#: Version of the plugin contract. Hooks are only ever added, and each addition bumps this number.
#: A plugin that needs a hook introduced in API version N sets ``FTCORE_PLUGIN_API = N`` in its entry
#: module; an older ftcore then reports it as failed to load ("needs plugin API N") instead of
#: silently never calling the hook. Declaring ``ftcore>=<release>`` in the plugin's dependencies
#: makes pip enforce the same.
PLUGIN_API_VERSION = 1

PROJECT_NAME = "ftcore"

#: Marker for hook implementations: ``@hookimpl def setup_peft(model, method, config): ...``
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

__all__ = [
    "PLUGIN_API_VERSION",
    "ConfigError",
    "DataError",
    "FormatSpec",
    "FtError",
    "MethodSpec",
    "MetricSpec",
    "ModelError",
    "PluginError",
    "RunDirError",
    "TrainingError",
    "UsageError",
    "__version__",
    "hookimpl",
]
