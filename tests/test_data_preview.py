"""``ft data preview`` offline with a local tokenizer, and the instruction method's plugin wiring."""

from __future__ import annotations

import json

from data_helpers import write_records

from ftcore.testing.process import run_ft


def test_preview_brackets_trained_spans_and_shows_lengths(tmp_path, tiny_tokenizer_dir):
    from click.testing import CliRunner

    from ftcore.cli import cli

    rows = [{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yes."},
                          {"role": "user", "content": "Two?"}, {"role": "assistant", "content": "No."}]}]
    data = write_records(tmp_path, "m", rows, "jsonl")
    config = tmp_path / "cfg.yaml"
    config.write_text(json.dumps({"model": str(tiny_tokenizer_dir), "method": "instruction", "data": {
        "train": str(data), "cache_dir": str(tmp_path / "cache"), "packing": True}}))
    result = CliRunner().invoke(cli, ["data", "preview", "--config", str(config), "-n", "1"])
    assert result.exit_code == 0, result.output
    out = result.output
    # Not a terminal: masked text plain, each assistant turn (with its end marker) inside [[ ]].
    assert "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n[[Yes.<|im_end|>\n]]<|im_start|>user\nTwo?" in out
    assert "[[No.<|im_end|>\n]]" in out
    assert "1 examples read: 1 kept" in out
    assert "length min" in out and "#" in out

    colored = CliRunner().invoke(cli, ["data", "preview", "--config", str(config), "--color"])
    assert "\x1b[32mYes.<|im_end|>\n\x1b[0m" in colored.output and "[[" not in colored.output


def test_instruction_method_is_registered_with_chat_and_attaches_lora(tiny_model_dir, fresh_plugins):
    import torch
    from transformers import AutoModelForCausalLM

    from ftcore.config.schema import build_config, validate_run_config
    from ftcore.contract.plugins import get_registry

    registry = get_registry()
    spec = registry.method("instruction")
    assert spec.chat is True and spec.output == "adapter"
    assert {"alpaca", "sharegpt", "messages"} <= set(registry.formats)
    config = build_config({"model": str(tiny_model_dir), "method": "instruction",
                           "method_options": {"r": 4, "target_modules": ["q_proj", "v_proj"]},
                           "data": {"train": "unused.jsonl"}})
    _, options = validate_run_config(config)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    model = registry.call("setup_peft", "method", "instruction", model=base, method="instruction", config=config,
                          options=options)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
    assert model.peft_config["default"].r == 4


def _messages(*turns):
    roles = ["user", "assistant"]
    return {"messages": [{"role": roles[i % 2], "content": text} for i, text in enumerate(turns)]}


def test_preview_without_config_audits_the_data(tmp_path, tiny_tokenizer_dir):
    """``ft data preview FILE... --model M``: every warning of the audit, per-source facts, and --json."""
    from click.testing import CliRunner

    from ftcore.cli import cli
    from ftcore.data.audit import PLACEHOLDER

    chats = write_records(tmp_path, "chats", [
        _messages("Hi {{name}}!", "Hello."),       # an unfilled placeholder
        _messages("Hi {{name}}!", "Hello."),       # ... and a duplicate of line 1
        _messages("Anything?", " "),               # an empty answer
        _messages("Only a question"),              # nothing to train
        _messages("Long?", "word " * 60),          # cut by max_seq_len 32
    ], "jsonl")
    kto = write_records(tmp_path, "kto", [{"prompt": "2+2=", "completion": "4", "label": True}], "jsonl")
    args = ["data", "preview", str(chats), str(kto), "--model", str(tiny_tokenizer_dir), "--method", "lora",
            "--set", "data.max_seq_len=32", "--set", f"data.cache_dir={tmp_path / 'cache'}"]
    result = CliRunner().invoke(cli, [*args, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    audit = report["audit"]
    assert [(s["path"], s["format"], s["shape"], s["examples"], s["kept"]) for s in audit["sources"]] == [
        (str(chats), "messages", "messages", 5, 4), (str(kto), "completion", "completion", 1, 1)]
    chats_info = audit["sources"][0]
    assert chats_info["lengths"]["max"] > 32 and chats_info["lengths"]["min"] < 32
    assert 0 < chats_info["trained_tokens"] < chats_info["tokens"]
    assert chats_info["trained_share"] == round(chats_info["trained_tokens"] / chats_info["tokens"], 4)
    messages = {w["code"]: w["message"] for w in audit["warnings"]}
    assert set(messages) == {"nothing_trained", "placeholders", "duplicates", "empty_answers", "truncated_answers",
                             "preference_data"}
    assert messages["nothing_trained"].startswith(f"1 example (16.7%) dropped: no trained tokens (no assistant turn or "
                                                  f"empty response), e.g. {chats}:4")
    assert messages["placeholders"].startswith(f"2 examples contain unresolved template placeholders, e.g. {chats}:1 "
                                               "{{name}}")
    assert messages["duplicates"] == f"1 example (16.7%) repeats earlier ones, e.g. {chats}:2 repeats {chats}:1"
    assert messages["empty_answers"].startswith(f"1 example has an empty answer (the model learns to say nothing), "
                                                f"e.g. {chats}:3")
    assert messages["truncated_answers"].startswith(f"1 example (16.7%) is longer than max_seq_len (32) and loses the end "
                                                    f"of its answer, e.g. {chats}:5")
    assert messages["preference_data"].startswith(f"{kto}: records have 'label' columns, as unpaired preference (KTO) "
                                                  "data do, but format 'completion' trains them")
    # The examples come with their token ids, labels and marked text.
    first = report["examples"][0]
    assert first["text"].endswith("[[Hello.<|im_end|>\n]]") and len(first["input_ids"]) == len(first["labels"])
    assert PLACEHOLDER.search(first["text"])

    text = CliRunner().invoke(cli, [*args, "--no-color", "-n", "1"])
    assert text.exit_code == 0, text.output
    assert f"{chats}: format messages, shape messages; 5 examples, 4 kept; {chats_info['trained_tokens']} of " \
           f"{chats_info['tokens']} tokens trained" in text.stdout
    assert f"warning: {messages['duplicates']}" in text.stdout


def test_preview_without_a_model_checks_records(tmp_path):
    from click.testing import CliRunner

    from ftcore.cli import cli

    folder = tmp_path / "data"
    folder.mkdir()
    write_records(folder, "alpaca", [{"instruction": "Say hi", "output": "Hi."}, {"instruction": "Say hi", "output": "Hi."}],
                  "jsonl")
    (folder / "notes.md").write_text("notes")
    result = CliRunner().invoke(cli, ["data", "preview", str(folder)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "(no --model: records are checked, not tokenized; method lora)"
    assert lines[2] == '{"messages": [{"role": "user", "content": "Say hi"}, {"role": "assistant", "content": "Hi."}]}'
    assert f"{folder / 'alpaca.jsonl'}: format alpaca, shape messages; 2 examples" in lines
    assert f"warning: 1 example (50.0%) repeats earlier ones, e.g. {folder / 'alpaca.jsonl'}:2 repeats " \
           f"{folder / 'alpaca.jsonl'}:1" in lines
    assert lines[-1].startswith(f"warning: {folder}: skipped 1 file that ft does not read as data") and "notes.md" in lines[-1]

    # Without --method, a method that trains on the data's shape: KTO data is previewed for kto.
    kto = write_records(tmp_path, "kto", [{"prompt": "2+2=", "completion": "4", "label": True}], "jsonl")
    result = CliRunner().invoke(cli, ["data", "preview", str(kto)])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "(no --model: records are checked, not tokenized; method kto)"
    assert f"{kto}: format unpaired, shape unpaired_preference; 1 example" in result.stdout

    result = run_ft("data", "preview")
    assert result.returncode == 2
    assert result.stderr.strip() == ("error: ft data preview: give a data FILE (or several), or --config "
                                     "(ft data preview train.jsonl --model MODEL)")


def test_record_checks_are_the_same_with_and_without_a_tokenizer_for_preference_pairs(tmp_path, tiny_tokenizer_dir):
    from click.testing import CliRunner

    from ftcore.cli import cli

    pair = {"prompt": "Who are you?", "chosen": "I am {{name}}.", "rejected": "No idea."}
    real = {"prompt": "Show a GitHub Actions step.", "chosen": "Use token: ${{ secrets.GITHUB_TOKEN }} in `{{ x }}`.",
            "rejected": "Set {{ secrets.GITHUB_TOKEN }} and\n```yaml\nname: {{ name }}\n```"}
    data = write_records(tmp_path, "pairs", [pair, real, pair], "jsonl")
    base = ["data", "preview", str(data), "--method", "dpo", "--json", "--set", f"data.cache_dir={tmp_path / 'c'}"]
    found = []
    for extra in ([], ["--model", str(tiny_tokenizer_dir)]):
        result = CliRunner().invoke(cli, [*base, *extra])
        assert result.exit_code == 0, result.output
        found.append({w["code"]: w["message"] for w in json.loads(result.stdout)["audit"]["warnings"]})
    without, with_tokenizer = found
    assert without == with_tokenizer
    # Template syntax inside real content (GitHub Actions expressions, code) is not an unfilled placeholder.
    assert without["placeholders"].startswith(f"2 examples contain unresolved template placeholders, e.g. {data}:1 "
                                              "{{name}}, " + f"{data}:3 ")
    assert without["duplicates"].startswith(f"1 example (33.3%) repeats earlier ones, e.g. {data}:3 repeats {data}:1")
