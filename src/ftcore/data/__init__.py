"""ftcore's data pipeline: read files or Hub datasets, map formats, tokenize, mask, pack, cache.

Importing this package is cheap; ``datasets`` and ``torch`` are imported inside the functions that use them.
"""

from __future__ import annotations

from ftcore.data.formats import FieldProblem, get_list, get_str, map_records
from ftcore.data.pipeline import (
    PreparedData,
    as_supervised,
    load_examples,
    prepare_data,
    prompt_and_reference,
    prompt_token_ids,
)
from ftcore.data.sources import DataSource

__all__ = [
    "DataSource",
    "FieldProblem",
    "PreparedData",
    "as_supervised",
    "get_list",
    "get_str",
    "load_examples",
    "map_records",
    "prepare_data",
    "prompt_and_reference",
    "prompt_token_ids",
]
