"""The external example plugin (examples/plugins/fttopn), installed with pip by nox, trains through `ft train`."""

from __future__ import annotations

import json

import pytest

from ftcore.testing.process import run_ft

pytest.importorskip("fttopn", reason="install examples/plugins/fttopn (nox -s tests does)")


def test_ft_train_with_third_party_method_and_format(tiny_model_dir, tmp_path):
    data = tmp_path / "qa.jsonl"
    with data.open("w") as handle:
        for question, answer in [("Opposite of up?", "down"), ("Opposite of hot?", "cold")] * 8:
            handle.write(json.dumps({"question": question, "answer": answer}) + "\n")
    config = tmp_path / "topn.yaml"
    config.write_text(
        f"model: {tiny_model_dir}\n"
        f"output_dir: {tmp_path / 'run'}\n"
        "method_options: {layers: 1}\n"
        f"data: {{train: {data}, max_seq_len: 32, cache_dir: {tmp_path / 'cache'}}}\n"
        "training: {max_steps: 20, learning_rate: 0.01, batch_size: 4, gradient_accumulation: 1, logging_steps: 1, lr_scheduler: constant}\n"
    )
    result = run_ft("train", "--config", str(config), "--method", "topn")
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((tmp_path / "run" / "ft_run.json").read_text())
    assert manifest["method"] == "topn"
    losses = [e["loss"] for e in map(json.loads, (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) if "loss" in e]
    assert sum(losses[-3:]) < sum(losses[:3])
    listing = json.loads(run_ft("plugins", "--json").stdout)
    topn = [p for p in listing["plugins"] if p["dist"] == "fttopn"][0]
    assert topn["methods"] == ["topn"] and topn["formats"] == ["qa"]
