"""The example configs and the sample-data generator: valid, documented, runnable."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from ftcore.config.schema import load_config, validate_run_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "examples" / "configs").glob("*.yaml"))

pytestmark = pytest.mark.usefixtures("single_thread")



def test_every_method_has_an_example() -> None:
    assert {"lora.yaml", "qlora.yaml", "full.yaml", "instruction.yaml"} <= {p.name for p in CONFIGS}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_example_config_is_valid_and_starts_with_its_command(path: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith(f"# ft train --config examples/configs/{path.name}"), first
    if "reward_model" in path.read_text(encoding="utf-8"):  # its reward needs runs/rm: a stand-in reward model's config
        (tmp_path / "runs" / "rm").mkdir(parents=True)
        (tmp_path / "runs" / "rm" / "config.json").write_text('{"architectures": ["LlamaForSequenceClassification"]}')
        monkeypatch.chdir(tmp_path)
    config = load_config(path)
    spec, _ = validate_run_config(config)
    assert spec.name == config.method


def test_sample_data_is_the_reversal_task(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        from generate_sample_data import main
    finally:
        sys.path.remove(str(ROOT / "examples"))
    main(["--out-dir", str(tmp_path), "--examples", "40"])
    train = [json.loads(line) for line in (tmp_path / "instructions.jsonl").read_text().splitlines()]
    test = [json.loads(line) for line in (tmp_path / "instructions_test.jsonl").read_text().splitlines()]
    text = [json.loads(line) for line in (tmp_path / "sample.jsonl").read_text().splitlines()]
    assert len(train) == len(text) == 40 and len(test) == 50
    for record in train + test:
        assert record["output"].split() == record["input"].split()[::-1]
    assert not {r["input"] for r in train} & {r["input"] for r in test}
    assert text[0]["text"].endswith(train[0]["output"])


def test_lora_example_trains_on_the_sample_data(tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The lora example, pointed at the tiny model, runs on what generate_sample_data writes."""
    from ftcore.jobs.train import run_training

    sys.path.insert(0, str(ROOT / "examples"))
    try:
        from generate_sample_data import main
    finally:
        sys.path.remove(str(ROOT / "examples"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FT_CACHE_DIR", str(tmp_path / "cache"))
    main(["--examples", "32"])
    config = load_config(ROOT / "examples" / "configs" / "lora.yaml",
                         [f"model={tiny_model_dir}", "training.max_steps=3", "method_options.target_modules=auto"])
    result = run_training(config)
    assert result.run_dir == tmp_path / "runs" / "lora"
    assert result.manifest["global_step"] == 3
