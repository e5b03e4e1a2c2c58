"""ftimport: ``ft config import`` for Axolotl, LLaMA-Factory and TRL configs, through ftcore's importer hook.

Each tool is an :class:`ftcore.ImporterSpec`: the keys that identify its configs and a ``convert`` function that
gives every source key one row (mapped, ignored, unsupported, blocking or warning). Supervised configs map to
lora/qlora/full; preference and RL kinds map to ftpref's dpo/orpo/simpo/kto and ftrl's grpo; kinds ft has no
method for are blocking rows, so ftcore writes nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ftcore import ImportedConfig, ImporterSpec, hookimpl

__version__ = "0.1.0"
FTCORE_PLUGIN_API = 3


def convert_axolotl(source: dict[str, Any], base_dir: Path) -> ImportedConfig:
    """An Axolotl config as an ft config, one row per key."""
    from ftimport.axolotl import AXOLOTL
    from ftimport.rules import convert

    return convert(AXOLOTL, source, base_dir).result()


def convert_llamafactory(source: dict[str, Any], base_dir: Path) -> ImportedConfig:
    """A LLaMA-Factory config as an ft config, one row per key (datasets through dataset_info.json)."""
    from ftimport.llamafactory import LLAMAFACTORY
    from ftimport.rules import convert

    return convert(LLAMAFACTORY, source, base_dir).result()


def convert_trl(source: dict[str, Any], base_dir: Path) -> ImportedConfig:
    """A TRL config or command line as an ft config, one row per key (a command line's --config read too)."""
    from ftimport.rules import convert
    from ftimport.trl import TRL, with_config_file

    return convert(TRL, with_config_file(source, base_dir), base_dir).result()


def parse_trl(text: str) -> dict[str, Any] | None:
    """A TRL command line (``trl dpo --key value ...``) as a mapping, or None."""
    from ftimport.trl import parse_command_line

    return parse_command_line(text)


def _signatures() -> dict[str, frozenset[str]]:
    from ftimport import axolotl, llamafactory, trl

    return {"axolotl": axolotl.SIGNATURE, "llamafactory": llamafactory.SIGNATURE, "trl": trl.SIGNATURE}


@hookimpl
def register_config_importers() -> list[ImporterSpec]:
    signatures = _signatures()
    return [
        ImporterSpec("axolotl", "Axolotl YAML: adapter lora/qlora or full, rl dpo/ipo/orpo/kto/simpo/grpo",
                     convert_axolotl, signatures["axolotl"]),
        ImporterSpec("llamafactory", "LLaMA-Factory YAML: stage sft/pt/dpo/kto, datasets via dataset_info.json",
                     convert_llamafactory, signatures["llamafactory"]),
        ImporterSpec("trl", "TRL YAML or command line (trl sft|dpo|orpo|kto|grpo ...)", convert_trl,
                     signatures["trl"], parse=parse_trl),
    ]
