"""The bad-input corpus of the newer surfaces, table-driven: preference data, GRPO rewards and options, ``ft export``,
``ft config import``, plugins that misbehave in each kind of hook, and disk and permission faults.

Every case is a :class:`Bad` record: ``make`` writes the case's inputs under a scratch directory and returns the
argv of ``ft``; :func:`test_bad_input` runs ``ft -q ARGV`` in this process (``ftcore.cli.main``) and asserts
what every case must show: a non-zero exit (the case's own status where it names one), exactly one ``error:``
line holding every string of ``said``, never ``error: unexpected`` or a traceback, and nothing lost or
half-written: every file and directory under the scratch directory is as it was before the command (no new
file, none changed, none removed). Most cases fail before any model loads; those that need a model use the
tiny one and at most one training step. ``test_the_corpus_is_large_enough`` counts them.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

# ----------------------------------------------------------------------------- the scratch directory of a case


class Lab:
    """A case's scratch directory (``root``) with an empty ``out/``, and the tiny model."""

    def __init__(self, root: Path, model: Path) -> None:
        self.root = root
        self.model = model
        self.out = root / "out"
        self.out.mkdir(parents=True)

    def write(self, name: str, content: str | bytes | list[Any] | dict[str, Any]) -> Path:
        """Write ``content`` to ``root/name``: text, bytes, rows (JSON lines) or a mapping (YAML)."""
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif isinstance(content, list):
            path.write_text("".join(json.dumps(row) + "\n" for row in content), encoding="utf-8")
        elif isinstance(content, dict):
            path.write_text(yaml.safe_dump(content, sort_keys=False), encoding="utf-8")
        else:
            path.write_text(content, encoding="utf-8")
        return path

    def train(self, method: str, rows: list[Any] | str | bytes, options: dict[str, Any] | None = None,
              data: dict[str, Any] | None = None, **training: Any) -> list[str]:
        """``train -c CONFIG`` of ``method`` on ``rows``, one step of batch 2 into ``out/run``."""
        source = self.write("train.jsonl", rows)
        config = {
            "model": str(self.model), "method": method, "output_dir": str(self.out / "run"),
            "method_options": options or {},
            "data": {"train": str(source), "max_seq_len": 64, **(data or {})},
            "training": {"max_steps": 1, "batch_size": 2, "logging_steps": 1, **training},
        }
        return ["train", "-c", str(self.write("config.yaml", config))]

    def validate(self, method: str, rows: list[Any], options: dict[str, Any] | None = None, **training: Any) -> list[str]:
        """``config validate CONFIG``: the same config as :meth:`train`."""
        argv = self.train(method, rows, options, **training)
        return ["config", "validate", argv[2]]

    def grpo(self, rewards: list[dict[str, Any]] | None = None, validate: bool = False, **options: Any) -> list[str]:
        """A GRPO run (or its ``config validate``) on six prompts, batch 4, four completions of 4 tokens each."""
        opts = {"num_generations": 4, "max_completion_length": 4, "rewards": rewards or [{"name": "length", "target": 4}],
                **options}
        training = {"batch_size": 4, **opts.pop("training", {})}
        data = opts.pop("data", {})
        argv = self.train("grpo", PROMPTS, opts, data=data, **training)
        return ["config", "validate", argv[2]] if validate else argv

    def run_dir(self, name: str = "run", method: str = "lora", output: str = "adapter", status: str = "complete",
                config: dict[str, Any] | None = None, **manifest: Any) -> Path:
        """A run directory as ``ft train`` leaves it, as far as the commands read before loading anything."""
        run = self.root / name
        run.mkdir()
        self.write(f"{name}/ft_config.yaml", {"model": str(self.model), "method": method,
                                               "data": {"train": "train.jsonl"}, **(config or {})})
        manifest = {"status": status, "method": method, "output": output, "base_model": str(self.model), **manifest}
        self.write(f"{name}/ft_run.json", json.dumps(manifest))
        return run

    def model_run(self, name: str = "run", config_class: str = "llama", tokenizer: bool = True,
                  method: str = "full", **manifest: Any) -> Path:
        """A full fine-tune's run directory: the tiny model's config and tokenizer, no weights."""
        import shutil

        run = self.run_dir(name, method=method, output="model", **manifest)
        for item in self.model.iterdir():
            if item.suffix in (".json", ".txt", ".model") and item.name not in ("ft_run.json",):
                shutil.copy(item, run / item.name)
        if config_class == "gpt2":
            from transformers import GPT2Config

            (run / "config.json").unlink()
            GPT2Config(n_layer=1, n_embd=8, n_head=2).save_pretrained(run)
        if not tokenizer:
            for item in run.glob("*token*"):
                item.unlink()
        return run


@dataclass(frozen=True)
class Bad:
    """One bad input: ``make(lab)`` writes what the case needs and returns ft's argv (without ``-q``); the error
    line must hold each string of ``said`` (``{root}`` stands for the scratch directory); ``status`` the exit
    status (``None``: any non-zero); ``bad_hook`` installs the misbehaving plugin, broken as ``hook:how``."""

    id: str
    surface: str
    make: Callable[[Lab], list[str]]
    said: tuple[str, ...] = ()
    status: int | None = None
    bad_hook: str | None = None
    #: The command fails after training saved a checkpoint: it may leave ``out/.run.tmp-partial`` for
    #: ``--resume`` (the run's work is kept, not lost), and nothing else.
    resumable: bool = False


WORDS = [("up", "down"), ("hot", "cold"), ("big", "small"), ("old", "new")]
PAIRS = [{"prompt": f"Opposite of {a}:", "chosen": f" {b}", "rejected": f" {a}"} for a, b in WORDS]
UNPAIRED = [{"prompt": f"Opposite of {a}:", "completion": f" {b}", "label": True} for a, b in WORDS] + \
           [{"prompt": f"Opposite of {a}:", "completion": f" {a}", "label": False} for a, b in WORDS]
PROMPTS = [{"prompt": f"Count: {w}"} for w in ("one two", "red", "cat dog")] * 2
LONG = "Opposite of " + " ".join(["very"] * 80) + " up:"


def with_(rows: list[dict[str, Any]], **changes: Any) -> list[dict[str, Any]]:
    """``rows`` with ``changes`` applied to every row (a value of ``...`` removes the key)."""
    out = []
    for row in rows:
        row = {**row, **changes}
        out.append({k: v for k, v in row.items() if v is not ...})
    return out


# ----------------------------------------------------------------------------- preference data

PAIRED = ("dpo", "orpo", "simpo")

PREFERENCE: list[Bad] = []
for _method in PAIRED:
    PREFERENCE += [
        Bad(f"{_method}-empty-file", "preference", lambda lab, m=_method: lab.train(m, ""), ("train.jsonl",)),
        Bad(f"{_method}-identical-pairs", "preference",
            lambda lab, m=_method: lab.train(m, [{**r, "rejected": r["chosen"]} for r in PAIRS]),
            ("train.jsonl:1", "rejected", "identical to chosen")),
        Bad(f"{_method}-no-rejected-column", "preference", lambda lab, m=_method: lab.train(m, with_(PAIRS, rejected=...)),
            ("train.jsonl",)),
        Bad(f"{_method}-all-prompts-over-max-seq-len", "preference",
            lambda lab, m=_method: lab.train(m, with_(PAIRS, prompt=LONG)), ("max_seq_len",)),
        Bad(f"{_method}-chosen-a-number", "preference", lambda lab, m=_method: lab.train(m, with_(PAIRS, chosen=3)),
            ("train.jsonl", "chosen")),
        Bad(f"{_method}-rejected-null", "preference", lambda lab, m=_method: lab.train(m, with_(PAIRS, rejected=None)),
            ("train.jsonl", "rejected")),
        Bad(f"{_method}-empty-chosen", "preference", lambda lab, m=_method: lab.train(m, with_(PAIRS, chosen="")),
            ("train.jsonl:1", "chosen", "is empty")),
        Bad(f"{_method}-prompt-a-list-of-numbers", "preference",
            lambda lab, m=_method: lab.train(m, with_(PAIRS, prompt=[1, 2])), ("train.jsonl", "prompt")),
    ]
PREFERENCE += [
    Bad("kto-empty-file", "preference", lambda lab: lab.train("kto", ""), ("train.jsonl",)),
    Bad("kto-label-a-word", "preference", lambda lab: lab.train("kto", with_(UNPAIRED, label="yes")),
        ("train.jsonl", "label")),
    Bad("kto-no-label-column", "preference", lambda lab: lab.train("kto", with_(UNPAIRED, label=...)), ("train.jsonl",)),
    Bad("kto-all-prompts-over-max-seq-len", "preference", lambda lab: lab.train("kto", with_(UNPAIRED, prompt=LONG)),
        ("max_seq_len",)),
    Bad("kto-completion-a-number", "preference", lambda lab: lab.train("kto", with_(UNPAIRED, completion=5)),
        ("train.jsonl", "completion")),
    Bad("kto-label-null", "preference", lambda lab: lab.train("kto", with_(UNPAIRED, label=None)),
        ("train.jsonl", "label")),
    Bad("kto-empty-completion", "preference", lambda lab: lab.train("kto", with_(UNPAIRED, completion=" ")),
        ("train.jsonl", "completion", "is empty")),
    Bad("kto-given-pairs", "preference", lambda lab: lab.train("kto", PAIRS), ("kto",)),
    Bad("dpo-given-unpaired", "preference", lambda lab: lab.train("dpo", UNPAIRED), ("dpo",)),
    Bad("dpo-given-plain-text", "preference", lambda lab: lab.train("dpo", [{"text": "hello"}] * 4), ("dpo",)),
    Bad("dpo-unknown-loss-type", "preference", lambda lab: lab.validate("dpo", PAIRS, {"loss_type": "sigmod"}),
        ("method_options.loss_type", "did you mean 'sigmoid'"), status=2),
    Bad("dpo-negative-beta", "preference", lambda lab: lab.validate("dpo", PAIRS, {"beta": -1}),
        ("method_options.beta",), status=2),
    Bad("kto-unknown-option", "preference", lambda lab: lab.validate("kto", UNPAIRED, {"desirable_weigth": 1.0}),
        ("method_options.desirable_weigth", "did you mean"), status=2),
    Bad("simpo-gamma-a-word", "preference", lambda lab: lab.validate("simpo", PAIRS, {"gamma": "high"}),
        ("method_options.gamma",), status=2),
]

# ----------------------------------------------------------------------------- GRPO: rewards and options


def nan_reward(prompts, completions, examples):
    return [float("nan")] * len(completions)


def exiting_reward(prompts, completions, examples):
    sys.exit(4)


not_callable = 3

GRPO: list[Bad] = [
    Bad("grpo-unknown-reward", "grpo", lambda lab: lab.grpo([{"name": "lenght", "target": 4}], validate=True),
        ("lenght", "did you mean 'length'"), status=2),
    Bad("grpo-reward-unknown-option", "grpo", lambda lab: lab.grpo([{"name": "length", "targt": 4}], validate=True),
        ("method_options.rewards.0.targt", "did you mean 'target'"), status=2),
    Bad("grpo-reward-option-wrong-type", "grpo", lambda lab: lab.grpo([{"name": "length", "target": "four"}], validate=True),
        ("method_options.rewards.0.target",), status=2),
    Bad("grpo-reward-option-missing", "grpo", lambda lab: lab.grpo([{"name": "format"}], validate=True),
        ("method_options.rewards.0.pattern", "missing"), status=2),
    Bad("grpo-reward-no-name", "grpo", lambda lab: lab.grpo([{"target": 4}], validate=True),
        ("method_options.rewards.0.name",), status=2),
    Bad("grpo-reward-weight-a-word", "grpo", lambda lab: lab.grpo([{"name": "length", "target": 4, "weight": "x"}],
                                                                   validate=True),
        ("method_options.rewards.0.weight",), status=2),
    Bad("grpo-no-rewards", "grpo",
        lambda lab: ["config", "validate", lab.train("grpo", PROMPTS, {"rewards": []}, batch_size=4)[2]],
        ("method_options.rewards",), status=2),
    Bad("grpo-rewards-missing", "grpo",
        lambda lab: ["config", "validate", lab.train("grpo", PROMPTS, {"num_generations": 4}, batch_size=4)[2]],
        ("method_options.rewards", "missing"), status=2),
    Bad("grpo-python-reward-without-function", "grpo", lambda lab: lab.grpo([{"name": "python"}], validate=True),
        ("method_options.rewards.0.function",), status=2),
    Bad("grpo-python-reward-module-missing", "grpo",
        lambda lab: lab.grpo([{"name": "python", "function": "no_such_module_ft:score"}]),
        ("no_such_module_ft:score",)),
    Bad("grpo-python-reward-function-missing", "grpo",
        lambda lab: lab.grpo([{"name": "python", "function": "test_bad_corpus:no_such_function"}]),
        ("test_bad_corpus:no_such_function",)),
    Bad("grpo-python-reward-no-colon", "grpo", lambda lab: lab.grpo([{"name": "python", "function": "test_bad_corpus"}]),
        ("method_options.rewards.0.function: expected module:function", "'test_bad_corpus'"), status=2),
    Bad("grpo-python-reward-not-callable", "grpo",
        lambda lab: lab.grpo([{"name": "python", "function": "test_bad_corpus:not_callable"}]),
        ("test_bad_corpus:not_callable",)),
    Bad("grpo-python-reward-nan", "grpo", lambda lab: lab.grpo([{"name": "python", "function": "test_bad_corpus:nan_reward"}]),
        ("reward 'python'", "test_bad_corpus:nan_reward", "not a finite number")),
    Bad("grpo-python-reward-sys-exit", "grpo",
        lambda lab: lab.grpo([{"name": "python", "function": "test_bad_corpus:exiting_reward"}]),
        ("reward 'python'", "test_bad_corpus:exiting_reward", "SystemExit(4)")),
    Bad("grpo-num-generations-1", "grpo", lambda lab: lab.grpo(validate=True, num_generations=1),
        ("method_options.num_generations",), status=2),
    Bad("grpo-num-generations-0", "grpo", lambda lab: lab.grpo(validate=True, num_generations=0),
        ("method_options.num_generations",), status=2),
    Bad("grpo-num-generations-a-word", "grpo", lambda lab: lab.grpo(validate=True, num_generations="four"),
        ("method_options.num_generations",), status=2),
    Bad("grpo-num-generations-not-dividing-the-batch", "grpo", lambda lab: lab.grpo(validate=True, num_generations=3),
        ("method_options.num_generations: 3 must divide the 4 completions of a step",), status=2),
    Bad("grpo-num-generations-over-the-batch", "grpo", lambda lab: lab.grpo(validate=True, num_generations=8),
        ("method_options.num_generations: 8 must divide the 4 completions",), status=2),
    Bad("grpo-num-generations-vs-accumulation-at-train", "grpo",
        lambda lab: lab.grpo(num_generations=3, training={"batch_size": 2, "gradient_accumulation": 2}),
        ("method_options.num_generations: 3 must divide the 4 completions", "gradient_accumulation 2"), status=2),
    Bad("grpo-num-generations-vs-eval-batch", "grpo",
        lambda lab: lab.grpo(validate=True, training={"eval_batch_size": 2, "eval_steps": 1}, data={"eval_ratio": 0.5}),
        ("method_options.num_generations: 4 must divide the evaluation batch of 2",), status=2),
    Bad("grpo-zero-completion-length", "grpo", lambda lab: lab.grpo(validate=True, max_completion_length=0),
        ("method_options.max_completion_length",), status=2),
    Bad("grpo-zero-temperature", "grpo", lambda lab: lab.grpo(validate=True, temperature=0),
        ("method_options.temperature",), status=2),
    Bad("grpo-unknown-loss", "grpo", lambda lab: lab.grpo(validate=True, loss_type="dapoo"),
        ("method_options.loss_type", "did you mean 'dapo'"), status=2),
    Bad("grpo-given-pairs", "grpo", lambda lab: lab.train("grpo", PAIRS, {"rewards": [{"name": "length", "target": 4}]},
                                                          batch_size=4),
        ("{root}/train.jsonl", "the examples are 'preference' data, which method 'grpo' does not train on")),
    Bad("grpo-empty-prompts", "grpo", lambda lab: lab.train("grpo", [{"prompt": ""}] * 4,
                                                            {"rewards": [{"name": "length", "target": 4}]}, batch_size=4),
        ("train.jsonl", "prompt")),
]

# ----------------------------------------------------------------------------- ft export (ftexport)


def export_existing(lab: Lab) -> list[str]:
    run = lab.model_run()
    lab.write("out/m.gguf", "keep me")
    return ["export", str(run), "-o", str(lab.out / "m.gguf")]


EXPORT: list[Bad] = [
    Bad("export-missing-run", "export", lambda lab: ["export", str(lab.root / "nope")], ("{root}/nope",)),
    Bad("export-run-is-a-file", "export", lambda lab: ["export", str(lab.write("afile", "x"))], ("{root}/afile",),
        status=2),
    Bad("export-dir-without-manifest", "export", lambda lab: ["export", str(lab.write("empty/readme", "x").parent)],
        ("{root}/empty",)),
    Bad("export-run-without-tokenizer", "export", lambda lab: ["export", str(lab.model_run(tokenizer=False))],
        ("tokenizer", "{root}/run")),
    Bad("export-unsupported-architecture", "export", lambda lab: ["export", str(lab.model_run(config_class="gpt2"))],
        ("architecture 'gpt2'",)),
    Bad("export-unsupported-type", "export", lambda lab: ["export", str(lab.model_run()), "--type", "q4_0"],
        ("--type", "'q4_0'"), status=2),
    Bad("export-unsupported-format", "export", lambda lab: ["export", str(lab.model_run()), "--format", "onnx"],
        ("--format", "'onnx'"), status=2),
    Bad("export-output-under-a-file", "export",
        lambda lab: ["export", str(lab.model_run()), "-o", str(lab.write("out/afile", "x") / "m.gguf")],
        ("{root}/out/afile is a file",)),
    Bad("export-output-read-only", "export", lambda lab: ["export", str(lab.model_run()), "-o", "/proc/ft-corpus/m.gguf"],
        ("/proc/ft-corpus",)),
    Bad("export-output-exists", "export", export_existing, ("{root}/out/m.gguf exists", "--overwrite")),
    Bad("export-reward-model-run", "export",
        lambda lab: ["export", str(lab.model_run(method="rm", model_kind="sequence_classification"))],
        ("{root}/run is a sequence_classification model",)),
]

# ----------------------------------------------------------------------------- ft config import (ftimport)

AXOLOTL = {"base_model": "HuggingFaceTB/SmolLM2-135M", "adapter": "lora", "lora_r": 8, "micro_batch_size": 2,
           "datasets": [{"path": "data.jsonl", "type": "alpaca"}]}


def import_(lab: Lab, source: Path, *extra: str) -> list[str]:
    return ["config", "import", str(source), "-o", str(lab.out / "ft.yaml"), *extra]


def import_existing(lab: Lab) -> list[str]:
    lab.write("out/ft.yaml", "mine: 1\n")
    return import_(lab, lab.write("axolotl.yml", AXOLOTL))


IMPORT: list[Bad] = [
    Bad("import-missing-file", "import", lambda lab: import_(lab, lab.root / "nope.yml"), ("{root}/nope.yml",)),
    Bad("import-binary-file", "import", lambda lab: import_(lab, lab.write("model.bin", b"\x89PNG\x00\x01" * 50)),
        ("{root}/model.bin",)),
    Bad("import-directory", "import", lambda lab: import_(lab, lab.write("adir/x", "").parent), ("{root}/adir",),
        status=2),
    Bad("import-deeply-nested", "import", lambda lab: import_(lab, lab.write("deep.yml", "a: " + "[" * 3000 + "]" * 3000)),
        ("{root}/deep.yml",)),
    Bad("import-not-yaml", "import", lambda lab: import_(lab, lab.write("bad.yml", "a: [1, 2\nb: {")), ("{root}/bad.yml",)),
    Bad("import-top-level-list", "import", lambda lab: import_(lab, lab.write("list.yml", "- a\n- b\n")),
        ("{root}/list.yml",)),
    Bad("import-empty-file", "import", lambda lab: import_(lab, lab.write("empty.yml", "")), ("{root}/empty.yml",)),
    Bad("import-undetectable-tool", "import", lambda lab: import_(lab, lab.write("other.yml", {"foo": 1})), ("--from",)),
    Bad("import-unknown-tool", "import", lambda lab: import_(lab, lab.write("axolotl.yml", AXOLOTL), "--from", "axolotol"),
        ("axolotol", "did you mean 'axolotl'")),
    Bad("import-output-exists", "import", import_existing, ("{root}/out/ft.yaml", "--overwrite")),
    Bad("import-output-under-a-file", "import",
        lambda lab: ["config", "import", str(lab.write("axolotl.yml", AXOLOTL)), "-o",
                     str(lab.write("out/afile", "x") / "ft.yaml")], ("{root}/out/afile",)),
    Bad("import-output-read-only", "import",
        lambda lab: ["config", "import", str(lab.write("axolotl.yml", AXOLOTL)), "-o", "/proc/ft-corpus.yaml"],
        ("/proc/ft-corpus.yaml",)),
    Bad("import-kind-ft-lacks", "import",
        lambda lab: import_(lab, lab.write("ppo.yml", {**AXOLOTL, "rl": "ppo"})), ("rl",)),
]

# ----------------------------------------------------------------------------- plugins that misbehave in a hook

BAD_PLUGIN = """
    import os
    import sys

    from ftcore import FormatSpec, ImportedConfig, ImporterSpec, MethodSpec, MetricSpec, RewardSpec, ShapeSpec, hookimpl
    from ftlora import kit
    from ftlora.options import LoraOptions


    def bad(hook):
        how = os.environ.get("FT_BAD_HOOK", "")
        if how == hook + ":raise":
            raise RuntimeError("broken " + hook)
        if how == hook + ":exit":
            sys.exit(7)
        return how == hook + ":none"


    def convert(source, base_dir):
        bad("convert")
        return ImportedConfig({"model": "m", "data": {"train": "t.jsonl"}})


    @hookimpl
    def register_methods():
        bad("register_methods")
        return [MethodSpec("badm", "misbehaves on demand", options=LoraOptions,
                           shapes=("badshape", "completion", "text", "messages"))]


    @hookimpl
    def register_shapes():
        return [ShapeSpec("badshape", "one badtext column", columns=("badtext",))]


    @hookimpl
    def register_dataset_formats():
        return [FormatSpec("badf", "badtext rows", columns=("badtext",), shape="badshape", packing=False)]


    @hookimpl
    def register_metrics():
        return [MetricSpec("badmetric", "misbehaves on demand")]


    @hookimpl
    def register_rewards():
        return [RewardSpec("badreward", "misbehaves on demand")]


    @hookimpl
    def register_config_importers():
        bad("register_config_importers")
        return [ImporterSpec("badimp", "misbehaves on demand", convert)]


    @hookimpl
    def register_commands(cli):
        bad("register_commands")

        @cli.command("badcmd")
        def badcmd():
            bad("badcmd")


    @hookimpl
    def run_started(config, run_dir):
        bad("run_started")


    @hookimpl
    def run_finished(config, run_dir, manifest):
        bad("run_finished")


    @hookimpl
    def model_load_kwargs(method, config, options):
        bad("model_load_kwargs")


    @hookimpl
    def setup_peft(model, config, options):
        if bad("setup_peft"):
            return None
        return kit.setup_peft(model=model, config=config, options=options)


    @hookimpl
    def make_trainer():
        bad("make_trainer")


    @hookimpl
    def memory_profile(shape, setup):
        bad("memory_profile")


    @hookimpl
    def load_adapter(model, path):
        bad("load_adapter")
        return model


    @hookimpl
    def merge_adapter(model, path):
        bad("merge_adapter")
        return model


    @hookimpl
    def load_dataset(source):
        if bad("load_dataset"):
            return None
        from datasets import Dataset

        return Dataset.from_list([{"badtext": "hello there"}] * 4)


    @hookimpl
    def encode_examples(examples):
        if bad("encode_examples"):
            return None
        raise AssertionError("never reached in the corpus")


    @hookimpl
    def compute_metric(name, predictions, references):
        bad("compute_metric")


    @hookimpl
    def setup_reward(name, options, context):
        bad("setup_reward")


    @hookimpl
    def compute_reward(name, prompts, completions, examples, options):
        bad("compute_reward")
        return [1.0] * len(completions)


    @hookimpl
    def teardown_reward(name, options, state):
        bad("teardown_reward")
"""

PLUGIN = "ft-badhooks"


def badm_train(lab: Lab, **data: Any) -> list[str]:
    rows = [{"text": f"Repeat: {a} {b}"} for a, b in WORDS]
    return lab.train("badm", rows, data=data)


def badf_train(lab: Lab) -> list[str]:
    return badm_train(lab, format="badf")


def badm_run(lab: Lab) -> Path:
    """A finished run of ``badm`` with the tiny model's tokenizer (and no adapter: the broken hook comes first)."""
    import shutil

    run = lab.run_dir(method="badm")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (lab.model / name).exists():
            shutil.copy(lab.model / name, run / name)
    return run


def evaluate_badmetric(lab: Lab) -> list[str]:
    data = lab.write("held.jsonl", [{"prompt": "a", "completion": "b"}])
    return ["evaluate", str(lab.model), "--data", str(data), "--metrics", "badmetric", "--max-new-tokens", "2",
            "--output", str(lab.out / "eval")]


def grpo_badreward(lab: Lab) -> list[str]:
    return lab.grpo([{"name": "badreward"}])


HOOK_CASES: list[tuple[str, Callable[[Lab], list[str]], tuple[str, ...], tuple[str, ...]]] = [
    # hook, the command that reaches it, what the line says, how it is broken
    ("register_methods", badm_train, ("badm", PLUGIN), ("raise", "exit")),
    ("register_config_importers", lambda lab: import_(lab, lab.write("a.yml", AXOLOTL), "--from", "badimp"),
     ("badimp", PLUGIN), ("raise", "exit")),
    ("convert", lambda lab: import_(lab, lab.write("a.yml", AXOLOTL), "--from", "badimp"), ("badimp",), ("raise", "exit")),
    ("register_commands", lambda lab: ["badcmd"], ("badcmd",), ("raise", "exit")),
    ("badcmd", lambda lab: ["badcmd"], (PLUGIN,), ("raise", "exit")),
    ("model_load_kwargs", badm_train, (PLUGIN, "model_load_kwargs"), ("raise", "exit")),
    ("setup_peft", badm_train, (PLUGIN, "setup_peft"), ("raise", "exit", "none")),
    ("memory_profile", lambda lab: ["recommend", "--model", str(lab.model), "--method", "badm", "--memory", "8"],
     (PLUGIN, "memory_profile"), ("raise", "exit")),
    ("make_trainer", badm_train, (PLUGIN, "make_trainer"), ("raise", "exit")),
    ("run_started", badm_train, (PLUGIN, "run_started"), ("raise", "exit")),
    ("run_finished", badm_train, (PLUGIN, "run_finished"), ("raise", "exit")),
    ("load_dataset", badf_train, (PLUGIN, "load_dataset"), ("raise", "exit", "none")),
    ("encode_examples", badf_train, (PLUGIN, "encode_examples"), ("raise", "exit", "none")),
    ("load_adapter", lambda lab: ["generate", str(badm_run(lab)), "-p", "hello", "--max-new-tokens", "1"],
     (PLUGIN, "load_adapter"), ("raise", "exit")),
    ("merge_adapter", lambda lab: ["merge", str(badm_run(lab)), "--output", str(lab.out / "merged")],
     (PLUGIN, "merge_adapter"), ("raise", "exit")),
    ("compute_metric", evaluate_badmetric, (PLUGIN, "compute_metric"), ("raise", "exit")),
    ("setup_reward", grpo_badreward, (PLUGIN, "setup_reward"), ("raise", "exit")),
    ("compute_reward", grpo_badreward, ("badreward", PLUGIN), ("raise", "exit")),
    ("teardown_reward", grpo_badreward, (PLUGIN, "teardown_reward"), ("raise", "exit")),
]
HOOKS: list[Bad] = [
    Bad(f"hook-{hook}-{how}", "plugin hooks", make, said + (("SystemExit(7)",) if how == "exit" else
                                                            ("RuntimeError: broken",) if how == "raise" else ()),
        bad_hook=f"{hook}:{how}", resumable=hook in ("run_finished", "teardown_reward"))
    for hook, make, said, hows in HOOK_CASES for how in hows
]

# ----------------------------------------------------------------------------- disk and permission faults


def lora_train(lab: Lab, *extra: str, output: Path | str | None = None) -> list[str]:
    rows = [{"text": f"Repeat: {a} {b}"} for a, b in WORDS]
    argv = lab.train("lora", rows)
    return argv + (["-o", str(output)] if output is not None else []) + list(extra)


def finished_run(lab: Lab) -> list[str]:
    run = lab.run_dir("out/run")
    lab.write("out/run/adapter_model.safetensors", b"weights")
    return lora_train(lab, output=run)


def eval_again(lab: Lab, *extra: str) -> list[str]:
    data = lab.write("held.jsonl", [{"prompt": "a", "completion": "b"}])
    lab.write("out/eval/eval.json", '{"scores": {"rouge1": 0.5}}\n')
    lab.write("out/eval/predictions.jsonl", '{"index": 0}\n')
    return ["evaluate", str(lab.model), "--data", str(data), "--output", str(lab.out / "eval"), *extra]


def eval_partial(lab: Lab) -> list[str]:
    data = lab.write("held.jsonl", [{"prompt": "a", "completion": "b"}])
    lab.write("out/eval/predictions.jsonl", '{"index": 0}\n')
    return ["evaluate", str(lab.model), "--data", str(data), "--output", str(lab.out / "eval")]


def eval_run_default(lab: Lab) -> list[str]:
    run = lab.run_dir()
    lab.write("run/eval/eval.json", "{}\n")
    data = lab.write("held.jsonl", [{"prompt": "a", "completion": "b"}])
    return ["evaluate", str(run), "--data", str(data)]


def merge_into_nonempty(lab: Lab) -> list[str]:
    lab.write("out/merged/keep.txt", "keep me")
    return ["merge", str(lab.run_dir()), "--output", str(lab.out / "merged")]


DISK: list[Bad] = [
    Bad("train-output-under-a-file", "disk", lambda lab: lora_train(lab, output=lab.write("out/afile", "x") / "run"),
        ("{root}/out/afile is a file, not a directory",)),
    Bad("train-output-is-a-file", "disk", lambda lab: lora_train(lab, output=lab.write("out/afile", "x")),
        ("{root}/out/afile",)),
    Bad("train-output-read-only", "disk", lambda lab: lora_train(lab, output="/proc/ft-corpus/run"), ("/proc/ft-corpus",)),
    Bad("train-output-finished-run", "disk", finished_run, ("{root}/out/run", "--overwrite")),
    Bad("train-data-is-a-directory", "disk",
        lambda lab: ["train", "-c", str(lab.write("c2.yaml", {
            "model": str(lab.model), "data": {"train": str(lab.write("d/x.jsonl", "").parent)},
            "output_dir": str(lab.out / "run")}))], ("{root}/d",)),
    Bad("train-data-missing", "disk", lambda lab: ["train", "-c", str(lab.write("c2.yaml", {
        "model": str(lab.model), "data": {"train": str(lab.root / "nope.jsonl")}, "output_dir": str(lab.out / "run")}))],
        ("{root}/nope.jsonl",)),
    Bad("train-config-missing", "disk", lambda lab: ["train", "-c", str(lab.root / "nope.yaml")], ("{root}/nope.yaml",),
        status=2),
    Bad("train-config-binary", "disk", lambda lab: ["train", "-c", str(lab.write("c.yaml", b"\xff\xfe\x00bin"))],
        ("{root}/c.yaml",), status=2),
    Bad("merge-output-not-empty", "disk", merge_into_nonempty, ("{root}/out/merged", "--overwrite")),
    Bad("merge-output-under-a-file", "disk",
        lambda lab: ["merge", str(lab.run_dir()), "--output", str(lab.write("out/afile", "x") / "m")],
        ("{root}/out/afile is a file",)),
    Bad("merge-output-read-only", "disk", lambda lab: ["merge", str(lab.run_dir()), "--output", "/proc/ft-corpus/m"],
        ("/proc/ft-corpus",)),
    Bad("merge-missing-run", "disk", lambda lab: ["merge", str(lab.root / "nope"), "--output", str(lab.out / "m")],
        ("{root}/nope",)),
    Bad("evaluate-existing-eval-json", "disk", eval_again,
        ("{root}/out/eval/eval.json exists", "--overwrite")),
    Bad("evaluate-existing-predictions", "disk", eval_partial,
        ("{root}/out/eval/predictions.jsonl exists", "--overwrite")),
    Bad("evaluate-existing-default-output", "disk", eval_run_default, ("{root}/run/eval/eval.json exists", "--overwrite")),
    Bad("evaluate-output-under-a-file", "disk",
        lambda lab: ["evaluate", str(lab.model), "--data", str(lab.write("h.jsonl", [{"prompt": "a", "completion": "b"}])),
                     "--output", str(lab.write("out/afile", "x") / "eval")], ("{root}/out/afile is a file",)),
    Bad("evaluate-output-read-only", "disk",
        lambda lab: ["evaluate", str(lab.model), "--data", str(lab.write("h.jsonl", [{"prompt": "a", "completion": "b"}])),
                     "--output", "/proc/ft-corpus/eval"], ("/proc/ft-corpus",)),
    Bad("evaluate-data-missing", "disk",
        lambda lab: ["evaluate", str(lab.model), "--data", str(lab.root / "nope.jsonl"), "--output", str(lab.out / "e")],
        ("{root}/nope.jsonl",)),
    Bad("export-output-is-a-directory-of-files", "disk",
        lambda lab: ["export", str(lab.model_run()), "-o", str(lab.write("out/m.gguf/x", "").parent)],
        ("{root}/out/m.gguf",)),
]

# /sys refuses new files even to root (chmod does not stop root): a location without write permission.
HELD = [{"prompt": "a", "completion": "b"}]
DISK += [
    Bad("train-output-no-permission", "disk", lambda lab: lora_train(lab, output="/sys/ft-corpus/run"),
        ("/sys/ft-corpus/run cannot be written", "/sys")),
    Bad("merge-output-no-permission", "disk", lambda lab: ["merge", str(lab.run_dir()), "--output", "/sys/ft-corpus/m"],
        ("/sys/ft-corpus/m cannot be written",)),
    Bad("evaluate-output-no-permission", "disk",
        lambda lab: ["evaluate", str(lab.model), "--data", str(lab.write("h.jsonl", HELD)), "--output", "/sys/ft-corpus/e"],
        ("/sys/ft-corpus/e cannot be written",)),
    Bad("export-output-no-permission", "disk", lambda lab: ["export", str(lab.model_run()), "-o", "/sys/ft-corpus.gguf"],
        ("/sys",)),
    Bad("import-output-no-permission", "disk",
        lambda lab: ["config", "import", str(lab.write("axolotl.yml", AXOLOTL)), "-o", "/sys/ft-corpus.yaml"],
        ("/sys/ft-corpus.yaml",)),
]

CORPUS: list[Bad] = PREFERENCE + GRPO + EXPORT + IMPORT + HOOKS + DISK

# ----------------------------------------------------------------------------- running a case


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with its bytes (``None`` for a directory)."""
    return {str(p.relative_to(root)): (None if p.is_dir() else p.read_bytes()) for p in sorted(root.rglob("*"))}


@pytest.fixture
def lab(tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch, fresh_plugins) -> Lab:
    monkeypatch.setenv("FT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.syspath_prepend(str(Path(__file__).parent))  # the python rewards above
    # As in a fresh process: no handler of an earlier case's main() (bound to that case's captured stderr).
    monkeypatch.setattr(logging.getLogger("ftcore"), "handlers", [])
    return Lab(tmp_path / "case", tiny_model_dir)


def install_bad_plugin(fake_site: Any, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    import importlib

    from ftcore.contract.plugins import reset_plugin_manager

    fake_site.add(PLUGIN, BAD_PLUGIN)
    monkeypatch.syspath_prepend(str(fake_site))
    monkeypatch.setenv("FT_BAD_HOOK", how)
    importlib.invalidate_caches()
    reset_plugin_manager()


@pytest.mark.parametrize("case", CORPUS, ids=[case.id for case in CORPUS])
def test_bad_input(case: Bad, lab: Lab, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                   request: pytest.FixtureRequest, single_thread) -> None:
    from ftcore.cli import main

    if case.bad_hook:
        install_bad_plugin(request.getfixturevalue("fake_site"), monkeypatch, case.bad_hook)
    argv = case.make(lab)
    before = snapshot(lab.root)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:  # a command that returns instead ended silently
        main(["-q", *argv])
    status, stderr = exited.value.code, capsys.readouterr().err
    assert isinstance(status, int) and status != 0, (status, stderr[-3000:])
    if case.status is not None:
        assert status == case.status, stderr[-3000:]
    lines = stderr.splitlines()
    # ft's own line, or click's for a command line it refuses itself (exit status 2, after a usage line)
    errors = [i for i, line in enumerate(lines) if line.startswith("error: ") or
              (status == 2 and line.startswith("Error: "))]
    assert len(errors) == 1, stderr[-3000:]
    assert "Traceback" not in stderr and "error: unexpected" not in stderr, stderr[-3000:]
    # The line, and the ``  - problem`` lines of an invalid config with several problems.
    message = lines[errors[0]]
    for line in lines[errors[0] + 1:]:
        if not line.startswith("  - "):
            break
        message += "\n" + line
    if os.environ.get("FT_CORPUS_SHOW"):  # FT_CORPUS_SHOW=1 pytest -k ...: each case's message, to read them
        sys.__stderr__.write(f"\n[{case.id}] {message}\n")
    for said in case.said:
        said = said.replace("{root}", str(lab.root))
        assert said in message, (said, message)
    after = snapshot(lab.root)
    if case.resumable and "out/.run.tmp-partial" in after:
        from ftcore.artifacts.rundir import latest_checkpoint

        staging = lab.out / ".run.tmp-partial"
        assert latest_checkpoint(staging / "checkpoints") is not None, sorted(after)
        after = {path: data for path, data in after.items() if not path.startswith("out/.run.tmp-partial")}
    assert after == before, "the command changed, added or removed files"


def test_the_corpus_is_large_enough() -> None:
    """At least 100 cases, every surface of issue 31 among them, and no two with one id."""
    ids = [case.id for case in CORPUS]
    assert len(ids) == len(set(ids)), [i for i, n in Counter(ids).items() if n > 1]
    counts = Counter(case.surface for case in CORPUS)
    assert set(counts) == {"preference", "grpo", "export", "import", "plugin hooks", "disk"}, counts
    assert len(CORPUS) >= 100, counts


if __name__ == "__main__":  # python tests/test_bad_corpus.py: the corpus's size by surface
    for surface, n in Counter(case.surface for case in CORPUS).items():
        print(f"{surface:14} {n}")
    print(f"{'total':14} {len(CORPUS)}")
