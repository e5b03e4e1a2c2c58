"""The decoding options every generating command shares (``ft evaluate``, ``ft benchmark``, ``ft generate``,
``ft chat``), and the :class:`ftcore.models.generation.GenerationSettings` they make: one meaning everywhere."""

from __future__ import annotations

from typing import Any

import click


def decoding_options(func: Any) -> Any:
    """``--max-new-tokens``, ``--temperature``, ``--top-p``, ``--sample`` and ``--seed``."""
    options = [
        click.option("--max-new-tokens", default=128, show_default=True, type=click.IntRange(1), help="Longest generated answer."),
        click.option("--temperature", default=0.0, show_default=True, type=click.FloatRange(0),
                     help="0 is greedy decoding; above 0, sampling at this temperature."),
        click.option("--top-p", default=1.0, show_default=True, type=click.FloatRange(0, 1, min_open=True),
                     help="Nucleus sampling mass (when sampling)."),
        click.option("--sample", "do_sample", is_flag=True, help="Sample (at temperature 1.0 unless --temperature)."),
        click.option("--seed", default=0, show_default=True, type=int, help="Seed of sampling (and of bootstrap resampling)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def settings_from(kwargs: dict[str, Any]) -> Any:
    """The :class:`ftcore.models.generation.GenerationSettings` of the decoding options (and ``--batch-size``)."""
    from ftcore.models.generation import GenerationSettings

    return GenerationSettings.from_options(
        max_new_tokens=kwargs["max_new_tokens"], temperature=kwargs["temperature"], top_p=kwargs["top_p"],
        sample=kwargs["do_sample"], seed=kwargs["seed"], batch_size=kwargs.get("batch_size") or 8,
    )
