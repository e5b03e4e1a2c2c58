"""The config and command-line half of the bad-input corpus, through ft's real entry point (``ftcore.cli.main``)
in this process, since none of it loads a model: each case must exit non-zero with one ``error:`` line (or a
header and one ``  - `` line per config problem) that names the key or option, never ``error: unexpected``,
and must leave nothing behind. The cases that need a model, data or signals are in test_bad_inputs.py."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from ftcore.cli import main

VALID = {
    "model": "org/some-model",
    "data": "\n  train: train.jsonl",
}

# (case id, YAML of the config (after the valid model/data lines unless it sets them), words the error must contain)
CONFIGS = [
    ("unknown top-level key", "learning_rat: 0.1", ["learning_rat", "training.learning_rate"]),
    ("key of a peer", "micro_batch_size: 2", ["micro_batch_size", "training.batch_size"]),
    ("sequence_len", "sequence_len: 512", ["sequence_len", "data.max_seq_len"]),
    ("misspelt training key", "training:\n  lr: 0.1", ["training.lr", "learning_rate"]),
    ("misspelt data key", "data:\n  train: t.jsonl\n  max_seq_length: 100", ["max_seq_length", "max_seq_len"]),
    ("no model", "model: null", ["model"]),
    ("no data", "data: null", ["data"]),
    ("data without train", "data:\n  eval: e.jsonl", ["data.train"]),
    ("data.train empty list", "data:\n  train: []", ["data.train"]),
    ("data.train weight zero", "data:\n  train:\n    - {path: t.jsonl, weight: 0}", ["weight"]),
    ("data.train entry without path", "data:\n  train:\n    - {weight: 2}", ["path"]),
    ("eval_ratio one", "data:\n  train: t.jsonl\n  eval_ratio: 1.0", ["eval_ratio"]),
    ("eval_ratio negative", "data:\n  train: t.jsonl\n  eval_ratio: -0.1", ["eval_ratio"]),
    ("max_seq_len tiny", "data:\n  train: t.jsonl\n  max_seq_len: 4", ["max_seq_len"]),
    ("max_seq_len text", "data:\n  train: t.jsonl\n  max_seq_len: long", ["max_seq_len"]),
    ("overflow unknown", "data:\n  train: t.jsonl\n  overflow: wrap", ["overflow", "truncate"]),
    ("packing not a bool", "data:\n  train: t.jsonl\n  packing: sometimes", ["packing"]),
    ("num_proc zero", "data:\n  train: t.jsonl\n  num_proc: 0", ["num_proc"]),
    ("max_samples zero", "data:\n  train: t.jsonl\n  max_samples: 0", ["max_samples"]),
    ("learning_rate zero", "training:\n  learning_rate: 0", ["learning_rate"]),
    ("learning_rate text", "training:\n  learning_rate: fast", ["learning_rate"]),
    ("batch_size zero", "training:\n  batch_size: 0", ["batch_size"]),
    ("gradient_accumulation zero", "training:\n  gradient_accumulation: 0", ["gradient_accumulation"]),
    ("epochs infinite", "training:\n  epochs: .inf", ["epochs"]),
    ("epochs negative", "training:\n  epochs: -1", ["epochs"]),
    ("max_steps negative", "training:\n  max_steps: -5", ["max_steps"]),
    ("warmup_ratio one", "training:\n  warmup_ratio: 1.0", ["warmup_ratio"]),
    ("warmup_steps negative", "training:\n  warmup_steps: -1", ["warmup_steps"]),
    ("weight_decay negative", "training:\n  weight_decay: -0.1", ["weight_decay"]),
    ("max_grad_norm negative", "training:\n  max_grad_norm: -1", ["max_grad_norm"]),
    ("unknown scheduler", "training:\n  lr_scheduler: cosinus", ["lr_scheduler", "cosine"]),
    ("unknown optimizer", "training:\n  optimizer: adamw_torc", ["optimizer", "adamw_torch"]),
    ("unknown precision", "training:\n  precision: fp8", ["precision"]),
    ("logging_steps zero", "training:\n  logging_steps: 0", ["logging_steps"]),
    ("eval_steps zero", "training:\n  eval_steps: 0", ["eval_steps"]),
    ("save_steps zero", "training:\n  save_steps: 0", ["save_steps"]),
    ("save_total_limit zero", "training:\n  save_total_limit: 0", ["save_total_limit"]),
    ("nan_policy unknown", "training:\n  nan_policy: ignore", ["nan_policy"]),
    ("dataloader_workers negative", "training:\n  dataloader_workers: -1", ["dataloader_workers"]),
    ("adam_beta1 one", "training:\n  adam_beta1: 1.0", ["adam_beta1"]),
    ("adam_epsilon zero", "training:\n  adam_epsilon: 0", ["adam_epsilon"]),
    ("neftune negative", "training:\n  neftune_noise_alpha: -5", ["neftune_noise_alpha"]),
    ("scheduler kwargs not a mapping", "training:\n  lr_scheduler_kwargs: [1, 2]", ["lr_scheduler_kwargs"]),
    ("best model without eval data", "training:\n  load_best_model_at_end: true", ["load_best_model_at_end", "eval data"]),
    ("early stopping without eval data", "training:\n  early_stopping_patience: 3", ["early_stopping_patience"]),
    ("trainer_args unknown field", "training:\n  trainer_args: {gradient_acumulation_steps: 2}",
     ["gradient_acumulation_steps", "gradient_accumulation_steps"]),
    ("seed above 2**32-1", "seed: 4294967296", ["seed"]),
    ("seed negative", "seed: -1", ["seed"]),
    ("dtype unknown", "dtype: float8", ["dtype"]),
    ("attn_implementation unknown", "attn_implementation: flash", ["attn_implementation"]),
    ("trust_remote_code not a bool", "trust_remote_code: maybe", ["trust_remote_code"]),
    ("unknown method", "method: lorra", ["lorra", "lora"]),
    ("unknown lora option", "method_options: {rank: 8}", ["rank"]),
    ("lora r zero", "method_options: {r: 0}", ["r"]),
    ("lora dropout one", "method_options: {dropout: 1.0}", ["dropout"]),
    ("lora bias unknown", "method_options: {bias: some}", ["bias"]),
    ("qlora quant_type unknown", "method: qlora\nmethod_options: {quant_type: nf3}", ["quant_type"]),
    ("qlora bits 3", "method: qlora\nmethod_options: {bits: 3}", ["bits"]),
    ("method_options not a mapping", "method_options: [1]", ["method_options"]),
    ("special token role unknown", "special_tokens: {pad_tokn: '<pad>'}", ["pad_tokn", "pad_token"]),
    ("added token listed twice", "added_tokens: ['<a>', '<a>']", ["<a>"]),
    ("added token empty", "added_tokens: ['']", ["added_tokens"]),
    ("report_to not installed", "training:\n  report_to: [wandb_typo]", ["wandb_typo"]),
]


def _write(root: Path, body: str) -> Path:
    lines = {"model": "model: org/some-model", "data": "data:\n  train: train.jsonl"}
    text = textwrap.dedent(body)
    keys = {line.split(":", 1)[0] for line in text.splitlines() if line and not line.startswith(" ")}
    parts = [lines[k] for k in ("model", "data") if k not in keys] + [text]
    path = root / "cfg.yaml"
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return path


def _fail(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as stop:
        main(args)
    err = capsys.readouterr().err
    code = stop.value.code
    assert code not in (0, None), err
    lines = err.strip().splitlines()
    assert lines and lines[0].startswith("error: ") and "unexpected" not in lines[0], err
    assert all(line.startswith("  - ") for line in lines[1:]), err
    assert "Traceback" not in err
    return code, err


@pytest.mark.parametrize(("body", "words"), [pytest.param(body, words, id=name) for name, body, words in CONFIGS])
def test_bad_config_is_one_clear_error(body: str, words: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    path = _write(tmp_path, body)
    code, err = _fail(["-q", "config", "validate", str(path)], capsys)
    assert code == 2, err
    for word in words:
        assert word in err, f"{word!r} not in {err!r}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg.yaml"]


FILES = [
    ("not YAML", "model: [unclosed\n", ["cfg.yaml:2", "not valid YAML"]),
    ("a list, not a mapping", "- model: x\n", ["cfg.yaml", "mapping"]),
    ("empty file", "", ["cfg.yaml"]),
    ("a key twice", "model: a\nmodel: b\ndata:\n  train: t.jsonl\n", ["duplicate key 'model'", "line 1"]),
    ("tab indentation", "model: a\ndata:\n\ttrain: t.jsonl\n", ["cfg.yaml"]),
    ("binary garbage", "\x00\x01\x02", ["cfg.yaml"]),
]


@pytest.mark.parametrize(("text", "words"), [pytest.param(text, words, id=name) for name, text, words in FILES])
def test_unreadable_config_file(text: str, words: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    path = tmp_path / "cfg.yaml"
    path.write_text(text, encoding="utf-8")
    code, err = _fail(["-q", "config", "validate", str(path)], capsys)
    assert code == 2, err
    for word in words:
        assert word in err, f"{word!r} not in {err!r}"


USAGE = [
    ("config file missing", ["config", "validate", "{tmp}/nope.yaml"], ["nope.yaml"]),
    ("--set without =", ["config", "validate", "{cfg}", "--set", "training.max_steps"], ["--set", "KEY=VALUE"]),
    ("--set unknown key", ["config", "validate", "{cfg}", "--set", "training.max_step=3"], ["max_step", "max_steps"]),
    ("--set wrong type", ["config", "validate", "{cfg}", "--set", "training.batch_size=big"], ["batch_size"]),
    ("--method unknown", ["config", "validate", "{cfg}", "--method", "dpoo"], ["dpoo", "dpo"]),
    ("schema of an unknown method", ["config", "schema", "--method", "lorra"], ["lorra"]),
    ("train without a config or model", ["train"], ["model"]),
    ("--allow-config-change without --resume", ["train", "-c", "{cfg}", "--allow-config-change"], ["--resume"]),
    ("--nnodes without --nproc", ["train", "-c", "{cfg}", "--nnodes", "2"], ["--nproc"]),
    ("evaluate without --data", ["evaluate", "{tmp}"], ["--data"]),
    ("merge of a folder that is not a run", ["merge", "{tmp}", "-o", "{tmp}/merged"], ["ft_run.json"]),
    ("merge of a missing folder", ["merge", "{tmp}/nope", "-o", "{tmp}/merged"], ["nope"]),
    ("benchmark of a missing run", ["benchmark", "--tuned", "{tmp}/nope"], ["nope"]),
    ("recommend of an unknown method", ["recommend", "--model", "x/y", "--method", "lorra"], ["lorra", "lora"]),
    ("recommend with a negative margin", ["recommend", "--model", "x/y", "--margin", "-1"], ["--margin"]),
    ("plugin with a bad name", ["plugin", "new", "Bad Name!"], ["Bad Name!"]),
    ("plugin of an unknown kind", ["plugin", "new", "x", "--kind", "trainer"], ["--kind"]),
    ("config import of a missing file", ["config", "import", "{tmp}/axolotl.yml"], ["axolotl.yml"]),
    ("config import from an unknown tool", ["config", "import", "{cfg}", "--from", "unsloth"], ["--from"]),
    ("data preview without a config", ["data", "preview"], ["--config"]),
    ("generate without a prompt", ["generate", "{tmp}"], ["--prompt"]),
    ("evaluate with a negative temperature", ["evaluate", "{tmp}", "--data", "{cfg}", "--temperature", "-1"], ["--temperature"]),
    ("unknown command", ["trian"], ["trian", "train"]),
    ("unknown option", ["train", "--confg", "{cfg}"], ["--confg"]),
]


@pytest.mark.parametrize(("args", "words"), [pytest.param(args, words, id=name) for name, args, words in USAGE])
def test_bad_command_line(args: list[str], words: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    cfg = _write(tmp_path, "")
    argv = [a.format(tmp=tmp_path, cfg=cfg) for a in args]
    with pytest.raises(SystemExit) as stop:
        main(["-q", *argv])
    err = capsys.readouterr().err
    assert stop.value.code not in (0, None), err
    assert "Traceback" not in err and "error: unexpected" not in err, err
    for word in words:
        assert word in err, f"{word!r} not in {err!r}"
