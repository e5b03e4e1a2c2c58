"""What a plugin registers: methods, dataset formats and metrics, described by small frozen records.

A plugin returns these from the registration hooks (``register_methods``, ``register_dataset_formats``,
``register_metrics``); the host checks names, rejects duplicates and remembers which distribution
provided each one, so ``ft plugins`` and error messages can list what is installed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from pydantic import BaseModel

_NAME = re.compile(r"^[a-z][a-z0-9_\-]{0,63}$")


def check_name(kind: str, name: str) -> str:
    """Return ``name`` if it is a valid method/format/metric name, else raise ``ValueError``."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"invalid {kind} name {name!r}: use lowercase letters, digits, '-' or '_', starting with a letter"
        )
    return name


@dataclass(frozen=True)
class MethodSpec:
    """A training method such as ``lora``.

    :param name: what users write after ``--method``.
    :param summary: one line for ``ft plugins`` and ``--help``.
    :param options: pydantic model validating the config's ``method_options`` for this method
        (ftcore itself does not know them); ``None`` means the method takes no options.
    :param output: ``"adapter"`` when the run saves a PEFT adapter, ``"model"`` for full weights.
    :param chat: ``True`` when the method expects instruction/chat data (masking and chat template on).
    """

    name: str
    summary: str = ""
    options: type[BaseModel] | None = None
    output: Literal["adapter", "model"] = "adapter"
    chat: bool = False

    def __post_init__(self) -> None:
        check_name("method", self.name)


@dataclass(frozen=True)
class FormatSpec:
    """A dataset format such as ``alpaca``.

    :param name: what users write in ``data.format``.
    :param summary: one line for ``ft plugins``.
    :param columns: the columns that identify this format when ``format`` is not given; auto-detection
        picks the format with the most matching columns, all of which must be present.
    :param packing: ``False`` when examples of this format must never be packed together.
    """

    name: str
    summary: str = ""
    columns: tuple[str, ...] = field(default_factory=tuple)
    packing: bool = True

    def __post_init__(self) -> None:
        check_name("format", self.name)


@dataclass(frozen=True)
class MetricSpec:
    """A metric such as ``rouge``.

    :param name: what users write in ``--metrics``.
    :param summary: one line for ``ft plugins``.
    :param needs: ``"generation"`` when it scores generated text against references, ``"loss"`` when it
        needs the model's token-level loss on the references (perplexity), handed over in ``context``.
    :param higher_is_better: direction for reports (perplexity: ``False``).
    """

    name: str
    summary: str = ""
    needs: Literal["generation", "loss"] = "generation"
    higher_is_better: bool = True

    def __post_init__(self) -> None:
        check_name("metric", self.name)
