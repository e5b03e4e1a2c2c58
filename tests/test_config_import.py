"""`ft config import`: Axolotl, LLaMA-Factory and TRL configs (written in each tool's documented layout, in
tests/peer_configs/) become ft configs, every source key gets an outcome, and the result trains the tiny model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import run_ft
from test_train_support import single_thread  # noqa: F401

from ftcore.config import build_config
from ftcore.errors import ConfigError
from ftcore.peers import IGNORED, MAPPED, UNSUPPORTED, convert, detect_peer, import_file

PEER_CONFIGS = Path(__file__).parent / "peer_configs"
ALPACA = [{"instruction": f"Repeat the word {w}.", "input": "", "output": f"{w} {w}"}
          for w in ["red", "green", "blue", "cat", "dog", "bird", "fish", "tree"] * 2]
CHAT = [{"messages": [{"role": "user", "content": f"Say {w}."}, {"role": "assistant", "content": w}]}
        for w in ["one", "two", "three", "four", "five", "six", "seven", "eight"] * 2]


def outcomes(conv) -> dict[str, tuple[str, str]]:
    return {o.key: (o.status, o.target) for o in conv.keys}


def test_every_source_key_gets_one_outcome() -> None:
    for path in PEER_CONFIGS.glob("*.y*ml"):
        conv = import_file(path)
        source = yaml.safe_load(path.read_text())
        top = [o.key for o in conv.keys if "[" not in o.key]
        assert sorted(top) == sorted(source), path.name
        assert all(o.status in (MAPPED, IGNORED, UNSUPPORTED) for o in conv.keys)
        assert all(o.note for o in conv.keys if o.status == UNSUPPORTED), path.name


@pytest.mark.parametrize(("name", "peer"), [("axolotl_lora.yml", "axolotl"), ("axolotl_qlora.yml", "axolotl"),
                                            ("llamafactory_lora_sft.yaml", "llamafactory"),
                                            ("llamafactory_qlora_sft.yaml", "llamafactory"),
                                            ("trl_sft_full.yaml", "trl"), ("trl_sft_lora.yaml", "trl")])
def test_peer_is_detected(name: str, peer: str) -> None:
    assert detect_peer(yaml.safe_load((PEER_CONFIGS / name).read_text())) == peer


def test_undetectable_config_asks_for_from() -> None:
    with pytest.raises(ConfigError, match="pass --from axolotl|llamafactory|trl"):
        detect_peer({"foo": 1})
    with pytest.raises(ConfigError, match="not a known tool"):
        convert({}, "unsloth")


def test_axolotl_lora_keys(fake_trackers: None) -> None:
    conv = import_file(PEER_CONFIGS / "axolotl_lora.yml")
    raw, seen = conv.raw, outcomes(conv)
    assert raw["method"] == "lora" and raw["model"] == "NousResearch/Llama-3.2-1B"
    assert raw["method_options"] == {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": ["q_proj", "v_proj"]}
    assert raw["data"]["train"] == [{"path": "data/alpaca_demo.jsonl", "format": "alpaca"}]
    assert raw["data"] | {"train": None} == {"train": None, "eval_ratio": 0.1, "max_seq_len": 256, "packing": True,
                                             "train_on_inputs": False}
    t = raw["training"]
    assert (t["batch_size"], t["gradient_accumulation"], t["epochs"], t["learning_rate"]) == (2, 2, 1.0, 2e-4)
    assert (t["report_to"], t["project"], t["neftune_noise_alpha"], t["precision"]) == (["wandb"], "ft-import", 5.0, "auto")
    assert raw["attn_implementation"] == "sdpa" and raw["seed"] == 1234
    assert seen["micro_batch_size"] == (MAPPED, "training.batch_size")
    assert seen["datasets[0].type"] == (MAPPED, "data.train[0].format")
    assert seen["dataset_prepared_path"][0] == IGNORED
    build_config(raw)


def test_axolotl_qlora_and_unsupported_keys() -> None:
    conv = import_file(PEER_CONFIGS / "axolotl_qlora.yml")
    assert conv.raw["method"] == "qlora"
    assert conv.raw["method_options"]["target_modules"] == "all-linear"
    assert conv.raw["data"]["train"] == [{"path": "data/chat_demo.jsonl", "format": "messages"}]
    assert outcomes(conv)["evals_per_epoch"][0] == UNSUPPORTED
    full = convert({"base_model": "m", "lora_r": 8, "datasets": [{"path": "x", "type": "input_output"}]}, "axolotl")
    assert full.raw["method"] == "full"
    assert outcomes(full)["lora_r"][0] == IGNORED
    assert outcomes(full)["datasets[0].type"][0] == UNSUPPORTED


def test_llamafactory_keys_and_dataset_info() -> None:
    conv = import_file(PEER_CONFIGS / "llamafactory_lora_sft.yaml")
    raw, data_dir = conv.raw, PEER_CONFIGS / "data"
    assert raw["method"] == "lora"
    # LLaMA-Factory's alpha defaults to twice the rank; lora_target: all is every linear layer.
    assert raw["method_options"] == {"r": 8, "target_modules": "all-linear", "alpha": 16}
    assert raw["data"]["train"] == [{"path": str(data_dir / "alpaca_demo.json"), "format": "alpaca"},
                                    {"path": str(data_dir / "identity.json"), "format": "alpaca"}]
    assert (raw["data"]["max_seq_len"], raw["data"]["max_samples"], raw["data"]["eval_ratio"]) == (256, 40, 0.1)
    assert raw["data"]["chat_template"] == "tokenizer"
    assert raw["training"]["precision"] == "bf16" and "report_to" not in raw["training"]
    qlora = import_file(PEER_CONFIGS / "llamafactory_qlora_sft.yaml").raw
    assert qlora["method"] == "qlora" and qlora["method_options"]["target_modules"] == ["q_proj", "v_proj"]
    assert qlora["data"]["train"] == [{"path": str(data_dir / "chat_demo.json"), "format": "messages"}]
    assert qlora["attn_implementation"] == "sdpa" and qlora["training"]["report_to"] == ["tensorboard"]
    dpo = convert({"model_name_or_path": "m", "stage": "dpo", "quantization_bit": 8}, "llamafactory")
    assert outcomes(dpo)["stage"][0] == UNSUPPORTED and outcomes(dpo)["quantization_bit"][0] == UNSUPPORTED


def test_trl_keys(fake_trackers: None) -> None:
    conv = import_file(PEER_CONFIGS / "trl_sft_full.yaml")
    raw, seen = conv.raw, outcomes(conv)
    assert raw["method"] == "full" and raw["dtype"] == "bfloat16"
    assert raw["data"]["train"] == [{"path": "trl-lib/Capybara", "split": "train"}]
    assert raw["data"]["eval"] == [{"path": "trl-lib/Capybara", "split": "test"}]
    assert raw["data"]["train_on_inputs"] is False and raw["data"]["packing"] is True
    t = raw["training"]
    assert t["lr_scheduler"] == "cosine_with_min_lr" and t["lr_scheduler_kwargs"] == {"min_lr_rate": 0.1}
    assert t["run_name"] == "capybara-sft" and t["report_to"] == ["wandb"]
    assert t["trainer_args"] == {"logging_first_step": True, "bf16_full_eval": False}
    assert seen["push_to_hub"][0] == IGNORED
    lora = import_file(PEER_CONFIGS / "trl_sft_lora.yaml").raw
    assert lora["method"] == "lora" and lora["method_options"]["target_modules"] == "all-linear"
    build_config(raw)


def test_trl_command_line_imports() -> None:
    conv = import_file(PEER_CONFIGS / "trl_sft_cli.sh")
    raw = conv.raw
    assert conv.peer == "trl" and raw["method"] == "lora" and raw["method_options"] == {"r": 32, "alpha": 16}
    assert raw["data"] == {"train": [{"path": "trl-lib/Capybara"}], "packing": True}
    assert raw["training"]["learning_rate"] == 2e-4 and raw["training"]["gradient_accumulation"] == 8
    assert len(conv.keys) == 12


def test_cli_writes_config_and_prints_the_table(tmp_path: Path) -> None:
    out = tmp_path / "ft.yaml"
    result = run_ft("config", "import", str(PEER_CONFIGS / "axolotl_lora.yml"), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "micro_batch_size" in result.stdout and "training.batch_size" in result.stdout
    assert "51 keys: 33 mapped, 18 ignored, 0 unsupported" in result.stdout
    assert yaml.safe_load(out.read_text())["training"]["batch_size"] == 2
    piped = run_ft("config", "import", "--from", "trl", str(PEER_CONFIGS / "trl_sft_lora.yaml"))
    assert yaml.safe_load(piped.stdout)["method"] == "lora" and "source key" in piped.stderr


# ----------------------------------------------------------------------------- trained from the import


def write_json(path: Path, rows: list[dict[str, Any]], lines: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r) + "\n" for r in rows) if lines else json.dumps(rows)
    path.write_text(text, encoding="utf-8")


def train_imported(raw: dict[str, Any], tiny_model_dir: Path, tmp_path: Path) -> dict[str, Any]:
    """Point the import at the tiny model, take 3 CPU-friendly steps without trackers, and train it."""
    from ftcore.train import run_training

    raw = {**raw, "model": str(tiny_model_dir), "output_dir": str(tmp_path / "run"), "dtype": "auto"}
    raw.pop("attn_implementation", None)
    raw["data"] = {**raw["data"], "cache_dir": str(tmp_path / "cache")}
    raw["training"] = {**raw.get("training", {}), "max_steps": 3, "report_to": [], "precision": "fp32",
                       "optimizer": "adamw_torch", "save_steps": 3, "eval_steps": None, "logging_steps": 1}
    result = run_training(build_config(raw))
    assert result.manifest["global_step"] == 3 and result.manifest["train_loss"] > 0
    return result.manifest


@pytest.mark.usefixtures("single_thread")
def test_axolotl_lora_import_trains(tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_json(tmp_path / "data" / "alpaca_demo.jsonl", ALPACA, lines=True)
    manifest = train_imported(import_file(PEER_CONFIGS / "axolotl_lora.yml").raw, tiny_model_dir, tmp_path)
    assert manifest["method"] == "lora" and manifest["data"]["stats"]["packing"] is True


@pytest.mark.usefixtures("single_thread")
def test_llamafactory_qlora_import_trains(tmp_path: Path, tiny_model_dir: Path) -> None:
    shutil.copy(PEER_CONFIGS / "llamafactory_qlora_sft.yaml", tmp_path)
    (tmp_path / "data").mkdir()
    shutil.copy(PEER_CONFIGS / "data" / "dataset_info.json", tmp_path / "data")
    write_json(tmp_path / "data" / "chat_demo.json", CHAT, lines=False)
    raw = import_file(tmp_path / "llamafactory_qlora_sft.yaml").raw
    assert raw["training"]["neftune_noise_alpha"] == 5.0
    manifest = train_imported(raw, tiny_model_dir, tmp_path)
    assert manifest["method"] == "qlora"


@pytest.mark.usefixtures("single_thread")
def test_trl_full_import_trains(tmp_path: Path, tiny_model_dir: Path) -> None:
    write_json(tmp_path / "capybara.jsonl", CHAT, lines=True)
    raw = import_file(PEER_CONFIGS / "trl_sft_full.yaml").raw
    raw["data"] = {**raw["data"], "train": str(tmp_path / "capybara.jsonl"), "eval": None}
    raw["training"] = {**raw["training"], "gradient_accumulation": 1}
    manifest = train_imported(raw, tiny_model_dir, tmp_path)
    assert manifest["method"] == "full" and manifest["trainer_args"] == {"logging_first_step": True,
                                                                          "bf16_full_eval": False}


def test_cli_notes_what_the_imported_config_still_needs(tmp_path: Path) -> None:
    peer = tmp_path / "axolotl.yml"
    peer.write_text("base_model: m\nmicro_batch_size: 2\nsequence_len: 128\nlora_r: 4\n")
    result = run_ft("config", "import", str(peer), "-o", str(tmp_path / "ft.yaml"))
    assert result.returncode == 0, result.stderr
    assert "note: the imported config still needs a fix: data.train: required key is missing" in result.stderr
    # No adapter: Axolotl fine-tunes fully, so the LoRA rank means nothing.
    assert ["lora_r", "ignored"] in [line.split()[:2] for line in result.stdout.splitlines()]
