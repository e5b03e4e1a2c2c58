"""Plugin contract v2 end to end: a plugin that is not ours brings a data shape and a trainer, data of a shape a
method does not train on is refused in one line, preference files are never trained as chat, and the data cache
follows the code of the plugins that read the data."""

from __future__ import annotations

import importlib
import json
import sys
import textwrap

import pytest
from data_helpers import make_config, write_jsonl

from ftcore.testing.process import run_ft

pytest.importorskip("ftpairrank", reason="install tests/plugins/ftpairrank (nox -s tests does)")

PAIRS = [{"query": f"Opposite of {a}:", "better": f" {b}", "worse": f" {a}"}
         for a, b in [("up", "down"), ("hot", "cold"), ("big", "small"), ("old", "new")]] * 4


def _config(tmp_path, model_dir, data, method):
    config = tmp_path / f"{method}.yaml"
    config.write_text(
        f"model: {model_dir}\n"
        f"method: {method}\n"
        f"output_dir: {tmp_path / 'run'}\n"
        f"data: {{train: {data}, max_seq_len: 32, cache_dir: {tmp_path / 'cache'}}}\n"
        "training: {max_steps: 8, learning_rate: 0.005, batch_size: 4, logging_steps: 1, lr_scheduler: constant}\n"
    )
    return config


def test_third_party_shape_and_trainer_train_through_ft_train(tiny_model_dir, tmp_path):
    data = write_jsonl(tmp_path / "pairs.jsonl", PAIRS)
    result = run_ft("train", "--config", str(_config(tmp_path, tiny_model_dir, data, "pairrank")))
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "run"
    manifest = json.loads((run / "ft_run.json").read_text())
    assert manifest["method"] == "pairrank" and manifest["data"]["stats"]["shape"] == "ranked_pair"
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    margins = [entry["margin"] for entry in logged if "margin" in entry]
    # Measured on an AMD EPYC: -0.03 at the first step, 2.74 at the last (steps between wander by up to 0.8).
    assert len(margins) == 8 and margins[-1] > margins[0] + 1.0, margins

    listing = json.loads(run_ft("plugins", "--json").stdout)
    plugin = [p for p in listing["plugins"] if p["dist"] == "ftpairrank"][0]
    assert plugin["shapes"] == ["ranked_pair"] and plugin["methods"] == ["pairrank"] and plugin["formats"] == ["ranked"]
    assert "ranked_pair" in run_ft("plugins").stdout


def test_data_of_another_shape_fails_in_one_line_before_the_model_loads(tiny_model_dir, tmp_path):
    data = write_jsonl(tmp_path / "pairs.jsonl", PAIRS)
    result = run_ft("train", "--config", str(_config(tmp_path, tiny_model_dir, data, "lora")))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and "unexpected" not in lines[-1], result.stderr[-2000:]
    assert "pairs.jsonl" in lines[-1] and "'ranked_pair'" in lines[-1] and "'lora'" in lines[-1]
    assert "pairrank" in lines[-1]
    assert not (tmp_path / "run").exists()


def test_format_declaring_another_shape_fails_at_config_validation(tmp_path):
    config = tmp_path / "cfg.yaml"
    config.write_text("model: some/model\nmethod: lora\ndata: {train: x.jsonl, format: ranked}\n")
    result = run_ft("config", "validate", str(config))
    assert result.returncode == 2
    assert "'ranked_pair' data, which method 'lora' does not train on" in result.stderr
    assert "pairrank" in result.stderr


@pytest.mark.parametrize("rows", [
    # LLaMA-Factory's dpo_en_demo.json layout: a sharegpt conversation plus chosen/rejected answers.
    [{"conversations": [{"from": "human", "value": "Hi"}], "chosen": {"from": "gpt", "value": "Hello!"},
      "rejected": {"from": "gpt", "value": "Go away."}}],
    # Its kto_en_demo.json layout: messages plus a good/bad label.
    [{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Go away."}], "label": False}],
], ids=["dpo-sharegpt", "kto-messages"])
def test_preference_files_are_never_trained_as_chat(rows, tiny_tokenizer_dir, tmp_path, fresh_plugins):
    from transformers import AutoTokenizer

    from ftcore.data import prepare_data
    from ftcore.errors import DataError

    path = write_jsonl(tmp_path / "prefs.jsonl", rows * 4)
    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    # Without a preference plugin the layout matches no format; with ftpref it is preference data, refused here.
    with pytest.raises(DataError, match="cannot detect the data format|data, which method 'instruction' does not train"):
        prepare_data(make_config(str(path), tmp_path, method="instruction"), tokenizer)


PLUGIN_V1 = '''
from ftcore import FormatSpec, hookimpl, map_records

@hookimpl
def register_dataset_formats():
    return [FormatSpec("shout", "prompt/completion, shouted", columns=("said",), shape="completion")]

@hookimpl(specname="load_dataset")
def load_shout(source):
    if source.format != "shout":
        return None
    return map_records(source, ["said"], lambda r: {"prompt": r["said"], "completion": " " + r["said"].%s()})
'''


def test_data_cache_follows_the_code_of_the_format_plugin(tiny_tokenizer_dir, tmp_path, fresh_plugins, monkeypatch):
    from transformers import AutoTokenizer

    from ftcore.contract.plugins import register_plugin, unregister_plugin
    from ftcore.data import cache, prepare_data

    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    module_dir = tmp_path / "site"
    module_dir.mkdir()
    monkeypatch.syspath_prepend(str(module_dir))
    data = write_jsonl(tmp_path / "said.jsonl", [{"said": "hello"}, {"said": "bye"}])
    config = make_config(str(data), tmp_path, format="shout")

    def prepared(case: str):
        (module_dir / "ftshout.py").write_text(textwrap.dedent(PLUGIN_V1 % case))
        sys.modules.pop("ftshout", None)
        importlib.invalidate_caches()
        cache._source_digest.cache_clear()
        register_plugin(importlib.import_module("ftshout"), "ftshout")
        try:
            return prepare_data(config, tokenizer)
        finally:
            unregister_plugin("ftshout")

    upper = prepared("upper")
    assert prepared("upper").stats["cache_hit"] is True
    lower = prepared("lower")
    assert lower.stats["cache_hit"] is False and lower.fingerprint != upper.fingerprint
    assert tokenizer.decode(lower.train[0]["input_ids"]) != tokenizer.decode(upper.train[0]["input_ids"])


def test_tiny_model_for_hand_runs_in_one_command(tmp_path):
    import subprocess

    out = subprocess.run([sys.executable, "-m", "ftcore.testing.fixtures", str(tmp_path / "tiny")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "tiny" / "model.safetensors").is_file() and (tmp_path / "tiny" / "tokenizer.json").is_file()


def test_data_preview_shows_a_plugin_shape(tiny_model_dir, tmp_path):
    data = write_jsonl(tmp_path / "pairs.jsonl", PAIRS)
    result = run_ft("data", "preview", "--config", str(_config(tmp_path, tiny_model_dir, data, "pairrank")), "-n", "1")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "shape ranked_pair" in result.stdout and "better_ids" in result.stdout


def test_grpo_on_gsm8k_style_data_with_a_third_party_reward(tiny_model_dir, tmp_path):
    """GSM8K-style records train through a columns mapping, with ftrl's answer_match and a reward another plugin
    (ftpairrank) registers, named in the config like any other."""
    pytest.importorskip("ftrl", reason="install plugins/ftrl")
    data = write_jsonl(tmp_path / "gsm8k.jsonl", [
        {"question": f"What is {a} plus {b}?", "answer": f"{a} + {b} = {a + b}\n#### {a + b}"}
        for a, b in [(2, 3), (4, 5), (1, 1), (6, 2)]] * 2)
    config = tmp_path / "grpo.yaml"
    config.write_text(
        f"model: {tiny_model_dir}\nmethod: grpo\noutput_dir: {tmp_path / 'run'}\n"
        "method_options: {num_generations: 4, max_completion_length: 6, rewards: [{name: answer_match}, "
        "{name: few_words, weight: 0.5}]}\n"
        f"data: {{train: {data}, columns: {{prompt: question}}, max_seq_len: 32, cache_dir: {tmp_path / 'cache'}}}\n"
        "training: {max_steps: 2, batch_size: 4, logging_steps: 1, learning_rate: 0.001}\n")
    result = run_ft("train", "--config", str(config))
    assert result.returncode == 0, result.stderr[-3000:]
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [entry for entry in logged if "reward" in entry]
    assert len(steps) == 2
    assert all("rewards/answer_match/mean" in e and "rewards/few_words/mean" in e for e in steps)
    assert all(0 < e["rewards/few_words/mean"] <= 1 for e in steps)
