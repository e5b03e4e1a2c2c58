"""ftimport: Axolotl, LLaMA-Factory and TRL configs (in each tool's documented layout, in tests/configs/) become ft
configs through ``ft config import``; every source key gets a row; preference and RL kinds map to ft's methods or
are refused with nothing written; the imports train the tiny model."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ftcore.config.schema import build_config
from ftcore.errors import ConfigError, PluginError
from ftcore.jobs.config_import import import_config

CONFIGS = Path(__file__).parent / "configs"
ALPACA = [{"instruction": f"Repeat the word {w}.", "input": "", "output": f"{w} {w}"}
          for w in ["red", "green", "blue", "cat", "dog", "bird", "fish", "tree"] * 2]
CHAT = [{"messages": [{"role": "user", "content": f"Say {w}."}, {"role": "assistant", "content": w}]}
        for w in ["one", "two", "three", "four", "five", "six", "seven", "eight"] * 2]
WORDS = [("up", "down"), ("hot", "cold"), ("big", "small"), ("old", "new")] * 3


def run_ft(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The real ``ft`` entry point in a subprocess."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "ftcore", *args], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=300)


def load(name: str | Path, tool: str | None = None) -> tuple[dict[str, Any], dict[str, tuple[str, str, str]]]:
    """The imported config and ``{source key: (status, ft key, note)}``."""
    _, result = import_config(CONFIGS / name if isinstance(name, str) else name, tool)
    return result.config, {r.key: (r.status, r.target, r.note) for r in result.rows}


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def needs(*dists: str) -> None:
    """Skip unless the plugins ft trains these methods with are installed (nox -s tests installs them all)."""
    missing = [d for d in dists if importlib.util.find_spec(d) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} installed")


# ----------------------------------------------------------------------------- every tool, every key


def test_every_source_key_gets_one_row() -> None:
    for path in [*CONFIGS.glob("*.y*ml")]:
        _, result = import_config(path)
        source = yaml.safe_load(path.read_text())
        top = [r.key for r in result.rows if "[" not in r.key and "." not in r.key and not r.key.startswith("(")]
        assert sorted(top) == sorted(source), path.name
        assert all(r.note for r in result.rows if r.status in ("unsupported", "blocking", "warning")), path.name


@pytest.mark.parametrize(("name", "tool"), [("axolotl_lora.yml", "axolotl"), ("axolotl_dpo.yml", "axolotl"),
                                            ("llamafactory_lora_sft.yaml", "llamafactory"),
                                            ("llamafactory_kto.yaml", "llamafactory"),
                                            ("trl_sft_full.yaml", "trl"), ("trl_grpo.yaml", "trl"),
                                            ("trl_dpo_cli.sh", "trl")])
def test_tool_is_detected(name: str, tool: str) -> None:
    assert import_config(CONFIGS / name)[0] == tool


def test_undetectable_config_asks_for_from(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"pass --from axolotl\|llamafactory\|trl"):
        import_config(write(tmp_path / "x.yaml", "foo: 1\n"))
    with pytest.raises(PluginError, match="unknown importer 'unsloth'.*installed importers: axolotl, llamafactory, trl"):
        import_config(tmp_path / "x.yaml", "unsloth")


# ----------------------------------------------------------------------------- supervised


def test_axolotl_lora_keys() -> None:
    raw, rows = load("axolotl_lora.yml")
    assert raw["method"] == "lora" and raw["model"] == "NousResearch/Llama-3.2-1B"
    assert raw["method_options"] == {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": ["q_proj", "v_proj"]}
    assert raw["data"]["train"] == [{"path": "data/alpaca_demo.jsonl", "format": "alpaca"}]
    t = raw["training"]
    assert (t["batch_size"], t["gradient_accumulation"], t["epochs"], t["learning_rate"]) == (2, 2, 1.0, 2e-4)
    assert raw["attn_implementation"] == "sdpa" and raw["seed"] == 1234
    assert rows["micro_batch_size"][:2] == ("mapped", "training.batch_size")
    assert rows["datasets[0].type"][:2] == ("mapped", "data.train[0].format")


def test_axolotl_full_tokens_and_remote_code_warning() -> None:
    raw, rows = load("axolotl_full.yml")
    assert raw["method"] == "full" and "method_options" not in raw
    assert raw["special_tokens"] == {"pad_token": "<|pad|>"} and raw["added_tokens"] == ["<tool_call>"]
    assert rows["trust_remote_code"][0] == "warning" and "trust" in rows["trust_remote_code"][2]
    assert raw["trust_remote_code"] is True


def test_llamafactory_keys_defaults_and_relative_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(CONFIGS)
    raw, rows = load(Path("llamafactory_lora_sft.yaml"))
    assert raw["method"] == "lora"
    # LLaMA-Factory's defaults where ft's differ, each with a row: alpha twice the rank, dropout 0.
    assert raw["method_options"] == {"r": 8, "target_modules": "all-linear", "alpha": 16, "dropout": 0.0}
    assert rows["(lora_dropout default)"][:2] == ("mapped", "method_options.dropout")
    assert raw["data"]["train"] == [{"path": "data/alpaca_demo.json", "format": "alpaca"},
                                    {"path": "data/identity.json", "format": "alpaca"}]
    assert rows["trust_remote_code"][0] == "warning"
    full, rows = load("llamafactory_full_sft.yaml")
    assert full["method"] == "full" and full["training"]["deepspeed"] == "examples/deepspeed/ds_z3_config.json"
    cpus = os.cpu_count() or 1
    dpo, rows = load("llamafactory_dpo.yaml")
    assert dpo["data"]["num_proc"] == min(16, cpus)
    if cpus < 16:
        assert "capped" in rows["preprocessing_num_workers"][2]


def test_trl_keys() -> None:
    raw, rows = load("trl_sft_full.yaml")
    assert raw["method"] == "full" and raw["dtype"] == "bfloat16"
    assert raw["data"]["train"] == [{"path": "trl-lib/Capybara", "split": "train"}]
    assert raw["training"]["trainer_args"] == {"logging_first_step": True, "bf16_full_eval": False}
    cli, rows = load("trl_sft_cli.sh")
    assert cli["method"] == "lora" and cli["method_options"] == {"r": 32, "alpha": 16}
    assert rows["command"][:2] == ("mapped", "method: lora")


# ----------------------------------------------------------------------------- preference and RL kinds


def test_axolotl_rl_kinds() -> None:
    dpo, rows = load("axolotl_dpo.yml")
    assert dpo["method"] == "dpo" and dpo["method_options"]["base"] == "lora"
    assert dpo["method_options"]["beta"] == 0.2 and dpo["method_options"]["target_modules"] == "all-linear"
    assert dpo["data"]["train"] == [{"path": "data/intel_pairs.jsonl", "format": "preference", "split": "train"}]
    assert dpo["data"]["columns"] == {"prompt": "question"}
    assert rows["rl"][:2] == ("mapped", "method: dpo")
    kto, _ = load("axolotl_kto.yml")
    assert kto["method"] == "kto" and kto["method_options"]["undesirable_weight"] == 1.5
    assert kto["data"]["train"][0]["format"] == "unpaired"
    grpo, rows = load("axolotl_grpo.yml")
    options = grpo["method_options"]
    assert grpo["method"] == "grpo" and (options["num_generations"], options["max_completion_length"]) == (2, 16)
    assert options["rewards"] == [{"name": "python", "function": "rewards:word_reward", "weight": 1.0}]
    assert (options["beta"], options["temperature"], options["generation"]) == (0.001, 0.9, "transformers")
    assert grpo["data"]["train"][0]["format"] == "prompt"
    ipo, _ = load(write_tmp({"base_model": "m", "rl": "ipo", "adapter": "lora"}))
    assert ipo["method"] == "dpo" and ipo["method_options"]["loss_type"] == "ipo"


def write_tmp(source: dict[str, Any], name: str = "cfg.yaml") -> Path:
    import tempfile

    folder = Path(tempfile.mkdtemp())
    return write(folder / name, yaml.safe_dump(source))


def test_llamafactory_stages() -> None:
    dpo, rows = load("llamafactory_dpo.yaml")
    assert dpo["method"] == "dpo" and dpo["method_options"]["beta"] == 0.1 and dpo["method_options"]["base"] == "lora"
    assert dpo["data"]["train"][0]["format"] == "sharegpt_preference"
    assert rows["stage"][:2] == ("mapped", "method: dpo") and rows["pref_beta"][:2] == ("mapped", "method_options.beta")
    kto, _ = load("llamafactory_kto.yaml")
    assert kto["method"] == "kto" and kto["data"]["train"][0]["format"] == "messages_unpaired"
    for loss, method in (("orpo", "orpo"), ("simpo", "simpo"), ("ipo", "dpo")):
        raw, _ = load(write_tmp({"model_name_or_path": "m", "stage": "dpo", "pref_loss": loss}))
        assert raw["method"] == method
    folder = write_tmp({"model_name_or_path": "m", "stage": "pt", "dataset": "c4_demo", "dataset_dir": "data"}).parent
    write(folder / "data" / "dataset_info.json", json.dumps({"c4_demo": {"file_name": "c4_demo.jsonl",
                                                                         "columns": {"prompt": "body"}}}))
    pt, rows = load(folder / "cfg.yaml")
    assert pt["method"] == "lora" and pt["data"]["train"][0]["format"] == "text"
    assert pt["data"]["columns"] == {"text": "body"} and pt["data"]["train"][0]["path"].endswith("data/c4_demo.jsonl")
    simpo, rows = load(write_tmp({"model_name_or_path": "m", "stage": "dpo", "pref_loss": "simpo"}))
    assert simpo["method_options"]["beta"] == 0.1 and "2.0" in rows["(pref_beta default)"][2]


def test_trl_commands_and_keys() -> None:
    dpo, rows = load("trl_dpo_cli.sh")
    assert dpo["method"] == "dpo" and dpo["method_options"] == {"r": 32, "alpha": 16, "beta": 0.1,
                                                                 "loss_type": "ipo", "base": "lora"}
    kto, _ = load("trl_kto.yaml")
    assert kto["method"] == "kto" and kto["method_options"]["desirable_weight"] == 1.0
    grpo, rows = load("trl_grpo.yaml")
    assert grpo["method"] == "grpo"
    assert grpo["method_options"]["rewards"] == [
        {"name": "answer_match", "column": "solution", "weight": 1.0},
        {"name": "python", "function": "rewards:word_reward", "weight": 0.5}]
    assert grpo["method_options"]["scale_rewards"] == "group"
    script = write_tmp({}, "run.sh")
    script.write_text("python trl/scripts/orpo.py --model_name_or_path m --dataset_name d --beta 0.2\n")
    orpo, rows = load(script)
    assert orpo["method"] == "orpo" and orpo["method_options"] == {"beta": 0.2, "base": "full"}


@pytest.mark.parametrize(("text", "name", "why"), [
    ("stage: ppo\nmodel_name_or_path: m\nfinetuning_type: lora\n", "lf.yaml", "PPO is not a method ft offers"),
    ("stage: rm\nmodel_name_or_path: m\nfinetuning_type: lora\n", "lf.yaml", "reward-model training"),
    ("stage: dpo\npref_loss: kto_pair\nmodel_name_or_path: m\nfinetuning_type: lora\n", "lf.yaml", "kto_pair"),
    ("base_model: m\nadapter: lora\nrl: gspo\nmicro_batch_size: 1\n", "ax.yml", "rl 'gspo' is not a method"),
    ("trl reward --model_name_or_path m --dataset_name d --output_dir o\n", "t.sh", "reward-model training"),
    ("python ppo.py --model_name_or_path m --dataset_name d\n", "t.sh", "PPO is not a method"),
    ("model_name_or_path: m\ndataset_name: d\nbeta: 0.1\nuse_peft: true\n", "t.yaml", "does not say which"),
])
def test_kinds_ft_lacks_are_refused_and_nothing_is_written(tmp_path: Path, text: str, name: str, why: str) -> None:
    source = write(tmp_path / name, text)
    result = run_ft("config", "import", str(source), "-o", str(tmp_path / "ft.yaml"))
    assert result.returncode != 0 and not (tmp_path / "ft.yaml").exists()
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and why in last and "no config written" in last, result.stderr
    assert ", 1 blocking" in result.stdout
    piped = run_ft("config", "import", str(source))
    assert piped.returncode != 0 and piped.stdout == ""


# ----------------------------------------------------------------------------- the command


def test_cli_writes_config_and_prints_the_table(tmp_path: Path) -> None:
    out = tmp_path / "ft.yaml"
    result = run_ft("config", "import", str(CONFIGS / "axolotl_lora.yml"), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "micro_batch_size" in result.stdout and "training.batch_size" in result.stdout
    assert "51 keys: 34 mapped, 17 ignored, 0 unsupported, 0 blocking, 0 warnings" in result.stdout
    assert yaml.safe_load(out.read_text())["training"]["batch_size"] == 2
    piped = run_ft("config", "import", "--from", "trl", str(CONFIGS / "trl_sft_lora.yaml"))
    assert yaml.safe_load(piped.stdout)["method"] == "lora" and "source key" in piped.stderr


def test_output_is_never_replaced_without_overwrite(tmp_path: Path) -> None:
    out = write(tmp_path / "ft.yaml", "mine: 1\n")
    result = run_ft("config", "import", str(CONFIGS / "axolotl_lora.yml"), "-o", str(out))
    assert result.returncode != 0 and out.read_text() == "mine: 1\n"
    assert result.stderr.strip() == f"error: -o {out}: the file exists; pass --overwrite to replace it"
    again = run_ft("config", "import", str(CONFIGS / "axolotl_lora.yml"), "-o", str(out), "--overwrite")
    assert again.returncode == 0 and yaml.safe_load(out.read_text())["method"] == "lora"


@pytest.mark.parametrize("case", ["binary", "nested", "under_file", "read_only", "huge_file"])
def test_bad_inputs_and_targets_are_one_line(tmp_path: Path, case: str) -> None:
    source, out = CONFIGS / "axolotl_lora.yml", tmp_path / "ft.yaml"
    if case == "binary":
        source = tmp_path / "model.safetensors"
        source.write_bytes(b"\x89PNG\x00\x01\x02" * 100)
    elif case == "nested":
        source = write(tmp_path / "deep.yaml", "a: " + "[" * 5000 + "]" * 5000 + "\n")
    elif case == "under_file":
        out = write(tmp_path / "file", "") / "ft.yaml"
    elif case == "read_only":
        out = Path("/proc/ft-import-test.yaml")
    else:
        source = tmp_path / "big.yaml"
        source.write_text("x" * 6_000_000)
    result = run_ft("config", "import", str(source), "-o", str(out))
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "unexpected" not in result.stderr and not out.exists()


def test_values_of_the_wrong_kind_are_rows_not_crashes(tmp_path: Path) -> None:
    raw, rows = load(write_tmp({"base_model": "m", "learning_rate": "fast", "datasets": 3, 7: "x",
                                "micro_batch_size": 2}))
    assert rows["learning_rate"][0] == "unsupported" and "cannot read 'fast'" in rows["learning_rate"][2]
    assert rows["7"][0] == "unsupported" and raw["training"]["batch_size"] == 2


def test_huge_config_table_stays_readable(tmp_path: Path) -> None:
    source = {"base_model": "m", "adapter": "lora", "micro_batch_size": 1,
              **{f"made_up_key_{i}": i for i in range(5000)}}
    path = write(tmp_path / "big.yml", yaml.safe_dump(source))
    result = run_ft("config", "import", str(path), "-o", str(tmp_path / "ft.yaml"))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) < 30
    assert any("... 4990 more" in line and "not an axolotl key ft knows" in line for line in lines)
    assert "5003 keys: 3 mapped, 0 ignored, 5000 unsupported, 0 blocking, 0 warnings" in result.stdout


def test_no_importer_installed_says_what_to_install(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "ftcore", "config", "import", str(CONFIGS / "axolotl_lora.yml")],
                            capture_output=True, text=True, env={**os.environ, "FT_PLUGINS": "-ftimport"})
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith("error: ft config import needs an importer plugin")
    assert "pip install ftimport" in result.stderr


def test_a_third_party_importer_registers_through_the_hook(tmp_path: Path) -> None:
    from ftcore import ImportedConfig, ImporterSpec, ImportRow, hookimpl
    from ftcore.contract.plugins import register_plugin, unregister_plugin

    def convert(source: dict[str, Any], base_dir: Path) -> ImportedConfig:
        return ImportedConfig({"model": source["checkpoint"], "method": "lora", "data": {"train": source["file"]}},
                              [ImportRow("checkpoint", "mapped", "model"), ImportRow("file", "mapped", "data.train")])

    class Unsloth:
        @hookimpl
        def register_config_importers(self) -> list[ImporterSpec]:
            return [ImporterSpec("unsloth", "a made-up tool", convert, frozenset({"checkpoint"}))]

    info = register_plugin(Unsloth(), "unsloth-importer")
    try:
        assert info.error is None and info.importers == ["unsloth"]
        name, result = import_config(write(tmp_path / "u.yaml", "checkpoint: m\nfile: d.jsonl\n"))
        assert name == "unsloth" and result.config["model"] == "m" and len(result.rows) == 2
        with pytest.raises(PluginError, match=r"plugin 'unsloth-importer' .*failed in importer 'unsloth': KeyError"):
            import_config(write(tmp_path / "bad.yaml", "checkpoint: m\n"))
    finally:
        unregister_plugin("unsloth-importer")


def test_validate_refuses_a_missing_deepspeed_file_as_train_does(tmp_path: Path) -> None:
    needs("ftfull")
    config = write(tmp_path / "ft.yaml", "model: m\nmethod: full\ndata: {train: d.jsonl}\n"
                                         "training: {deepspeed: ds_missing.json}\n")
    result = run_ft("config", "validate", str(config), cwd=tmp_path)
    assert result.returncode != 0 and "training.deepspeed: file not found: ds_missing.json" in result.stderr


# ----------------------------------------------------------------------------- imported configs train


def train_imported(raw: dict[str, Any], tiny_model_dir: Path, tmp_path: Path) -> dict[str, Any]:
    """Point the import at the tiny model, take 2 CPU-friendly steps without trackers, and train it."""
    from ftcore.jobs.train import run_training

    raw = {**raw, "model": str(tiny_model_dir), "output_dir": str(tmp_path / "run"), "dtype": "auto",
           "trust_remote_code": False}
    raw.pop("attn_implementation", None)
    raw["data"] = {**raw["data"], "cache_dir": str(tmp_path / "cache"), "num_proc": None, "max_seq_len": 128}
    raw["data"].pop("num_proc")
    raw["training"] = {**raw.get("training", {}), "max_steps": 2, "report_to": [], "precision": "fp32",
                       "optimizer": "adamw_torch", "save_steps": 2, "eval_steps": None, "logging_steps": 1,
                       "batch_size": 2, "gradient_accumulation": 1, "gradient_checkpointing": False}
    raw["training"].pop("deepspeed", None)
    result = run_training(build_config(raw))
    assert result.manifest["global_step"] == 2
    return result.manifest


def write_rows(path: Path, rows: list[dict[str, Any]], lines: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) if lines else json.dumps(rows), encoding="utf-8")


def test_supervised_imports_train(tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    needs("ftlora", "ftinstruct", "ftfull")
    monkeypatch.chdir(tmp_path)
    write_rows(tmp_path / "data" / "alpaca_demo.jsonl", ALPACA)
    manifest = train_imported(load("axolotl_lora.yml")[0], tiny_model_dir, tmp_path / "a")
    assert manifest["method"] == "lora"
    shutil.copy(CONFIGS / "llamafactory_full_sft.yaml", tmp_path)
    shutil.copy(CONFIGS / "data" / "dataset_info.json", tmp_path / "data")
    write_rows(tmp_path / "data" / "alpaca_demo.json", ALPACA, lines=False)
    raw, _ = load(tmp_path / "llamafactory_full_sft.yaml")
    assert raw["data"]["train"] == [{"path": "data/alpaca_demo.json", "format": "alpaca"}]
    assert train_imported(raw, tiny_model_dir, tmp_path / "b")["method"] == "full"


REWARDS_PY = '''
def word_reward(prompts, completions, examples):
    return [float(len(c.split()) <= 3) for c in completions]
'''


def kind_data(tmp_path: Path) -> None:
    """The files each kind's imports name, in each tool's layout."""
    data = tmp_path / "data"
    write_rows(data / "intel_pairs.jsonl", [{"system": "", "question": f"Opposite of {a}?", "chosen": b,
                                             "rejected": a} for a, b in WORDS])
    write_rows(data / "kto.jsonl", [{"prompt": f"Opposite of {a}?", "completion": x, "label": x == b}
                                    for a, b in WORDS for x in (a, b)])
    write_rows(data / "prompts.jsonl", [{"prompt": f"Opposite of {a}?"} for a, _ in WORDS])
    write_rows(data / "dpo_en_demo.json", [{"conversations": [{"from": "human", "value": f"Opposite of {a}?"}],
                                            "chosen": {"from": "gpt", "value": b},
                                            "rejected": {"from": "gpt", "value": a}} for a, b in WORDS], lines=False)
    write_rows(data / "kto_en_demo.json", [{"messages": [{"role": "user", "content": f"Opposite of {a}?"},
                                                         {"role": "assistant", "content": x}], "label": x == b}
                                           for a, b in WORDS for x in (a, b)], lines=False)
    shutil.copy(CONFIGS / "data" / "dataset_info.json", data)
    write(tmp_path / "rewards.py", REWARDS_PY)


@pytest.mark.parametrize("name", ["axolotl_dpo.yml", "axolotl_kto.yml", "axolotl_grpo.yml", "llamafactory_dpo.yaml",
                                  "llamafactory_kto.yaml", "trl_dpo_cli.sh", "trl_kto.yaml", "trl_grpo.yaml"])
def test_preference_and_rl_imports_train(name: str, tmp_path: Path, tiny_model_dir: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    needs("ftlora", "ftpref", "ftrl")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    kind_data(tmp_path)
    raw, _ = load(name)
    if name.startswith("trl"):  # a Hub dataset in TRL's config: the same kind of rows from a file
        write_rows(tmp_path / "pairs.jsonl", [{"prompt": f"Opposite of {a}?", "chosen": b, "rejected": a}
                                              for a, b in WORDS])
        write_rows(tmp_path / "math.jsonl", [{"prompt": f"What is {i} + {i}?", "solution": str(2 * i)}
                                             for i in range(8)])
        files = {"dpo": "pairs.jsonl", "kto": "data/kto.jsonl", "grpo": "math.jsonl"}
        raw["data"] = {**raw["data"], "train": files[raw["method"]]}
    options = raw["method_options"]
    if raw["method"] == "grpo":
        options.update(num_generations=2, max_completion_length=4)
    manifest = train_imported(raw, tiny_model_dir, tmp_path)
    assert manifest["method"] == raw["method"] and raw["method"] in ("dpo", "kto", "grpo")
