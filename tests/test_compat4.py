"""Files ft writes for transformers 4.x as well as 5 (``ftcore.artifacts.portable``), and the logic of ``nox -s compat4``.

The nox session runs ``tests/compat/check_v4.py`` under transformers 4.57; here the same check runs under
transformers 5 on a fixture made by ``tests/compat/make_fixture.py``, and must both pass and catch a change.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "compat"))

pytest.importorskip("gguf")

pytestmark = pytest.mark.usefixtures("single_thread")


def test_portable_config_keeps_what_5_reads_and_adds_what_4_reads() -> None:
    from ftcore.artifacts.portable import portable_config, portable_tokenizer_config

    config = {
        "model_type": "llama",
        "dtype": "bfloat16",
        "rope_parameters": {"rope_type": "default", "rope_theta": 1e5},
        "text_config": {
            "model_type": "llama",
            "rope_parameters": {"rope_type": "llama3", "rope_theta": 5e5, "factor": 8.0},
        },
    }
    out = portable_config(config)
    assert (
        out["rope_theta"] == 1e5 and "rope_scaling" not in out and out["rope_parameters"] == config["rope_parameters"]
    )
    assert out["torch_dtype"] == "bfloat16" and out["dtype"] == "bfloat16"
    assert out["text_config"]["rope_theta"] == 5e5
    assert out["text_config"]["rope_scaling"] == {"rope_type": "llama3", "factor": 8.0}

    tokenizer = portable_tokenizer_config(
        {"tokenizer_class": "TokenizersBackend", "extra_special_tokens": ["<a>", "<b>"]}
    )
    assert tokenizer == {"tokenizer_class": "PreTrainedTokenizerFast", "additional_special_tokens": ["<a>", "<b>"]}
    named = {"tokenizer_class": "GPT2Tokenizer", "extra_special_tokens": {"image_token": "<img>"}}
    assert portable_tokenizer_config(named) == named  # classes and mappings 4.x knows stay as they are


def test_compat_check_passes_on_ft_output_and_catches_a_difference(tmp_path: Path) -> None:
    from check_v4 import check
    from make_fixture import ROPE_THETA, build

    expected = build(tmp_path)
    config = json.loads((tmp_path / "merged" / "config.json").read_text())
    assert config["rope_theta"] == ROPE_THETA and config["rope_parameters"]["rope_theta"] == ROPE_THETA
    tokenizer_config = json.loads((tmp_path / "merged" / "tokenizer_config.json").read_text())
    assert tokenizer_config["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert expected["tokenizer"]["ids"][0] and len(expected["logits"]) == 2
    assert check(tmp_path) == []

    # the check compares for real: a changed expectation is reported, each kind on its own line
    expected["rope_theta"] = 10000.0
    expected["tokenizer"]["ids"][1] = expected["tokenizer"]["ids"][1][:-1]
    expected["logits"][0][0][0] += 1.0
    (tmp_path / "expected.json").write_text(json.dumps(expected))
    problems = check(tmp_path)
    assert any(p.startswith("merged: rope_theta is 100000.0, expected 10000.0") for p in problems)
    assert any(p.startswith("merged: tokenizer is") for p in problems)
    assert "merged: logits differ by 1.00e+00" in problems
    assert any(p.startswith("gguf: rope_theta is 100000.0") for p in problems)
    assert any(p.startswith("gguf: tokenizer ids is") for p in problems)
