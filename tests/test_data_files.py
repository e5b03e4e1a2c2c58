"""Files and mapping: .txt corpora, compressed files, nested column paths, per-source format and columns,
checked columns keys, skipped files; tokenization in worker processes and its progress; exact ids and labels."""

from __future__ import annotations

import bz2
import gzip
import json
import logging
import subprocess
import sys

import pytest
from data_helpers import chatml, expected, make_config, write_jsonl

from ftcore.errors import DataError

ASSISTANT = "<|im_start|>assistant\n"
EOT = "<|endoftext|>"


@pytest.fixture(scope="module")
def tokenizer(tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_tokenizer_dir)


def prepare(train, tmp_path, tokenizer, **data):
    from ftcore.data import prepare_data

    return prepare_data(make_config(train, tmp_path, **data), tokenizer)


def rows_of(prepared):
    return [(row["input_ids"], row["labels"]) for row in prepared.train]


def test_txt_one_example_per_line(tokenizer, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("The cat is red.\n\n  \nA dog ran.\n", encoding="utf-8")
    prepared = prepare(str(corpus), tmp_path, tokenizer)
    assert rows_of(prepared) == [expected(tokenizer, [("The cat is red." + EOT, True)]),
                                 expected(tokenizer, [("A dog ran." + EOT, True)])]
    assert prepared.stats["sources"][0]["format"] == "text"


def test_txt_documents_split_on_blank_lines_and_compressed(tokenizer, tmp_path):
    corpus = tmp_path / "corpus.txt.gz"
    corpus.write_bytes(gzip.compress(b"The cat is red.\nIt sat.\n\n\nA dog ran.\n"))
    prepared = prepare(str(corpus), tmp_path, tokenizer, text_split="blank_line")
    assert rows_of(prepared) == [expected(tokenizer, [("The cat is red.\nIt sat." + EOT, True)]),
                                 expected(tokenizer, [("A dog ran." + EOT, True)])]
    whole = prepare([{"path": str(corpus), "text_split": "file"}], tmp_path / "w", tokenizer)
    assert rows_of(whole) == [expected(tokenizer, [("The cat is red.\nIt sat.\n\n\nA dog ran." + EOT, True)])]


@pytest.mark.parametrize("suffix", [".jsonl.gz", ".json.bz2"])
def test_compressed_json_files_with_line_numbers(suffix, tokenizer, tmp_path):
    rows = [{"instruction": "Say hello", "output": "Hello."}, {"instruction": "Bye", "output": ""}]
    text = "".join(json.dumps(r) + "\n" for r in rows) if suffix.startswith(".jsonl") else json.dumps(rows, indent=1)
    path = tmp_path / f"data{suffix}"
    path.write_bytes((gzip if suffix.endswith(".gz") else bz2).compress(text.encode()))
    prepared = prepare(str(path), tmp_path, tokenizer)
    assert rows_of(prepared)[0] == expected(tokenizer, [(chatml("user", "Say hello") + ASSISTANT, False),
                                                       ("Hello.<|im_end|>\n", True)])
    assert prepared.stats["sources"][0]["format"] == "alpaca"
    # Errors still name the line inside the compressed file.
    bad = tmp_path / "bad.jsonl.gz"
    bad.write_bytes(gzip.compress(b'{"text": "a"}\n{"text": 3}\n'))
    with pytest.raises(DataError, match=r"bad\.jsonl\.gz:2: field 'text' is a number but a string in .*:1"):
        prepare(str(bad), tmp_path, tokenizer)
    broken = tmp_path / "broken.jsonl.gz"
    broken.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match=r"broken\.jsonl\.gz: not a readable gz file"):
        prepare(str(broken), tmp_path, tokenizer)


def test_nested_column_paths(tokenizer, tmp_path):
    # Stanford Alpaca's seed tasks: the input and output sit in a list of instances.
    rows = [{"instruction": "Add the numbers.", "meta": {"id": 7},
             "instances": [{"input": "2 and 3", "output": "5"}, {"input": "x", "output": "y"}]},
            {"instruction": "Greet.", "instances": [{"input": "", "output": "Hello."}]}]
    path = write_jsonl(tmp_path / "seed_tasks.jsonl", rows)
    columns = {"input": "instances[0].input", "output": "instances[0].output"}
    prepared = prepare(str(path), tmp_path, tokenizer, columns=columns)
    assert prepared.stats["sources"][0]["format"] == "alpaca"
    assert rows_of(prepared)[0] == expected(tokenizer, [(chatml("user", "Add the numbers.\n\n2 and 3") + ASSISTANT, False),
                                                       ("5<|im_end|>\n", True)])
    assert rows_of(prepared)[1] == expected(tokenizer, [(chatml("user", "Greet.") + ASSISTANT, False),
                                                       ("Hello.<|im_end|>\n", True)])
    # A path that a record lacks is a missing field of that record, named by its line.
    with pytest.raises(DataError, match=r"seed_tasks\.jsonl:2: field output \(column 'instances\[1\]\.output'\) missing"):
        prepare(str(path), tmp_path / "b", tokenizer, columns={"output": "instances[1].output"})
    with pytest.raises(DataError, match=r"^data\.columns\.output: 'instances\[0' is not a field path"):
        prepare(str(path), tmp_path / "c", tokenizer, columns={"output": "instances[0"})


def test_mix_with_per_source_format_and_columns(tokenizer, tmp_path):
    alpaca = write_jsonl(tmp_path / "alpaca.jsonl", [{"instruction": "Say hello", "output": "Hello."}])
    gsm8k = write_jsonl(tmp_path / "gsm8k.jsonl", [{"question": "One plus two?", "answer": "It is 3.\n#### 3"}])
    train = [{"path": str(alpaca)},
             {"path": str(gsm8k), "format": "completion", "columns": {"prompt": "question", "completion": "answer"}}]
    prepared = prepare(train, tmp_path, tokenizer)
    assert rows_of(prepared) == [
        expected(tokenizer, [(chatml("user", "Say hello") + ASSISTANT, False), ("Hello.<|im_end|>\n", True)]),
        expected(tokenizer, [("One plus two?", False), ("It is 3.\n#### 3" + EOT, True)]),
    ]
    assert [s["format"] for s in prepared.stats["audit"]["sources"]] == ["alpaca", "completion"]
    assert [s["shape"] for s in prepared.stats["audit"]["sources"]] == ["messages", "completion"]


def test_columns_keys_are_checked(tokenizer, tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [{"question": "Q?", "output": "A."}])
    with pytest.raises(DataError) as info:
        prepare(str(path), tmp_path, tokenizer, columns={"instrution": "question"}, format="alpaca")
    assert str(info.value) == ("data.columns: unknown field 'instrution' (did you mean 'instruction'?); format 'alpaca' "
                               "reads instruction, input, output, system")
    # A source's own columns may only name its format's fields, and only columns its records have.
    own = [{"path": str(path), "format": "completion", "columns": {"prompt": "question", "completion": "output",
                                                                      "input": "x"}}]
    with pytest.raises(DataError, match=r"^data\.train\[0\]\.columns: unknown field 'input'.*format 'completion'"):
        prepare(own, tmp_path, tokenizer)
    own = [{"path": str(path), "format": "completion", "columns": {"prompt": "questoin", "completion": "output"}}]
    with pytest.raises(DataError, match=r"^data\.train\[0\]\.columns\.prompt: .*a\.jsonl has no column 'questoin' "
                                        r"\(did you mean 'question'\?\)"):
        prepare(own, tmp_path, tokenizer)


def test_directory_reports_skipped_files(tokenizer, tmp_path, caplog):
    folder = tmp_path / "data"
    folder.mkdir()
    write_jsonl(folder / "a.jsonl", [{"text": "One."}])
    (folder / "b.txt.gz").write_bytes(gzip.compress(b"Two.\n"))
    (folder / "README.md").write_text("about the data")
    (folder / "notes.docx").write_bytes(b"PK")
    with caplog.at_level(logging.WARNING, logger="ftcore"):
        prepared = prepare(str(folder), tmp_path, tokenizer)
    assert len(prepared.train) == 2
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skipped) == 1 and skipped[0].startswith(f"data: {folder}: skipped 2 files that ft does not read")
    assert skipped[0].endswith(": README.md, notes.docx")
    assert [w["code"] for w in prepared.stats["audit"]["warnings"]] == ["skipped_files"]


def test_worker_processes_give_the_same_rows_and_report_progress(tokenizer, tmp_path, caplog):
    from ftcore.data.progress import Progress

    rows = [{"prompt": f"Count {i}:", "completion": f" {i} {i + 1}."} for i in range(600)]
    path = write_jsonl(tmp_path / "many.jsonl", rows)
    one = prepare(str(path), tmp_path / "one", tokenizer, num_proc=1)
    two = prepare(str(path), tmp_path / "two", tokenizer, num_proc=2)
    assert rows_of(one) == rows_of(two)
    assert rows_of(one)[599] == expected(tokenizer, [("Count 599:", False), (" 599 600." + EOT, True)])
    # Not a terminal: a line at the start, while it runs, and at the end.
    caplog.clear()  # only the progress lines below (an earlier test may have left ft's logger at INFO)
    with caplog.at_level(logging.INFO, logger="ftcore"), Progress(3000, "tokenizing x", every=0) as progress:
        progress.update(1000)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "data: tokenizing x: 3000 examples"
    assert lines[1].startswith("data: tokenizing x: 1000/3000 examples (33%)")
    assert lines[2].startswith("data: tokenizing x: 1000 examples in ")


def test_audit_is_logged_by_ft_train_and_kept_in_the_manifest(tiny_model_dir, tmp_path, caplog):
    """One small run over a mix of layouts: nested paths, a compressed .txt corpus, per-source columns."""
    from ftcore.config.schema import build_config
    from ftcore.jobs.train import run_training

    seed = write_jsonl(tmp_path / "seed.jsonl", [{"instruction": f"Add {i} and 1.", "instances": [{"output": str(i + 1)}]}
                                                 for i in range(6)])
    corpus = tmp_path / "corpus.txt.gz"
    corpus.write_bytes(gzip.compress(b"The cat sat.\nThe dog ran.\n\nA bird sang.\n"))
    qa = write_jsonl(tmp_path / "qa.jsonl", [{"question": "Two plus two?", "answer": "4"}] * 2)
    config = build_config({
        "model": str(tiny_model_dir), "method": "lora", "output_dir": str(tmp_path / "run"),
        "method_options": {"r": 2, "target_modules": ["q_proj"]},
        "data": {"train": [{"path": str(seed), "columns": {"output": "instances[0].output"}},
                           {"path": str(corpus), "text_split": "blank_line"},
                           {"path": str(qa), "format": "completion", "columns": {"prompt": "question",
                                                                                  "completion": "answer"}}],
                 "cache_dir": str(tmp_path / "cache"), "max_seq_len": 64},
        "training": {"max_steps": 2, "batch_size": 4, "logging_steps": 1, "save_steps": 100},
    })
    with caplog.at_level(logging.INFO, logger="ftcore"):
        result = run_training(config)
    audit = result.manifest["data"]["stats"]["audit"]
    assert [(s["format"], s["shape"], s["examples"]) for s in audit["sources"]] == [
        ("alpaca", "messages", 6), ("text", "text", 2), ("completion", "completion", 2)]
    assert audit["warnings"] == [{"code": "duplicates", "message": f"1 example (10.0%) repeats earlier ones, e.g. "
                                  f"{qa}:2 repeats {qa}:1"}]
    logged = [r.getMessage() for r in caplog.records]
    assert f"data: {seed}: format alpaca, shape messages; 6 examples" in "\n".join(logged)
    assert any(line.startswith("data: warning: 1 example (10.0%) repeats") for line in logged)
    assert (result.run_dir / "adapter_model.safetensors").is_file()


def test_preference_columns_warn_unless_mapped_on_purpose(tokenizer, tmp_path):
    kto = write_jsonl(tmp_path / "kto.jsonl", [{"prompt": "2+2=", "completion": " 4", "label": False}])
    codes = [w["code"] for w in prepare(str(kto), tmp_path / "a", tokenizer).stats["audit"]["warnings"]]
    assert codes == ["preference_data"]
    # A class label (a string) is no KTO label; chosen answers mapped as completions are SFT on purpose.
    classes = write_jsonl(tmp_path / "classes.jsonl", [{"prompt": "Great film!", "completion": " positive",
                                                        "label": "positive"}])
    assert prepare(str(classes), tmp_path / "b", tokenizer).stats["audit"]["warnings"] == []
    chosen = write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": "2+2=", "chosen": " 4", "rejected": " 5"}])
    sft = prepare(str(chosen), tmp_path / "c", tokenizer, format="completion", columns={"completion": "chosen"})
    assert sft.stats["audit"]["warnings"] == []
    assert rows_of(sft) == [expected(tokenizer, [("2+2=", False), (" 4" + EOT, True)])]


def _documents(count: int, words: int) -> list[str]:
    """``count`` distinct long documents of ``words`` words each."""
    vocab = ["river", "stone", "light", "garden", "winter", "paper", "orange", "signal", "market", "cloud"]
    return [" ".join(f"{vocab[(d * 7 + i) % len(vocab)]}{(d + i) % 13}" for i in range(words)) for d in range(count)]


@pytest.mark.parametrize("text_split", ["line", "blank_line", "file"])
def test_long_txt_trains_on_every_token_in_chunks(text_split, tokenizer, tmp_path):
    docs = _documents(3, 120)
    corpus = tmp_path / "long.txt"
    corpus.write_text(("\n\n" if text_split != "line" else "\n").join(docs) + "\n", encoding="utf-8")
    whole = ["\n\n".join(docs)] if text_split == "file" else docs
    doc_ids = [tokenizer(d + EOT)["input_ids"] for d in whole]
    tokens_in = sum(map(len, doc_ids))
    prepared = prepare(str(corpus), tmp_path, tokenizer, text_split=text_split, max_seq_len=32)
    source = prepared.stats["audit"]["sources"][0]
    assert (source["tokens_in"], source["trained_tokens"], source["dropped_tokens"]) == (tokens_in, tokens_in, 0)
    assert prepared.stats["split"] == len(whole) and prepared.stats["truncated"] == 0
    rows = rows_of(prepared)
    assert (prepared.stats["sources"][0]["kept"], prepared.stats["sources"][0]["rows"]) == (len(whole), len(rows))
    assert all(len(ids) <= 32 for ids, _ in rows)
    # Each document is its chunks: a chunk repeats the previous one's last token as unlabelled context, so every
    # token after the document's first is predicted exactly once.
    assert sum(label != -100 for _, labels in rows for label in labels) == tokens_in
    rebuilt, at = [], 0
    for ids in doc_ids:
        first_ids, first_labels = rows[at]
        assert first_labels == first_ids
        got = list(first_ids)
        at += 1
        while len(got) < len(ids):
            chunk_ids, chunk_labels = rows[at]
            assert chunk_ids[0] == got[-1] and chunk_labels == [-100, *chunk_ids[1:]]
            got += chunk_ids[1:]
            at += 1
        rebuilt.append(got)
    assert rebuilt == doc_ids and at == len(rows)
    # Packed, the chunks share rows but not attention; only each document's first token is not a target.
    packed = prepare(str(corpus), tmp_path / "p", tokenizer, text_split=text_split, max_seq_len=32, packing=True)
    assert packed.stats["train"]["trained_tokens"] == tokens_in - len(whole)


def test_long_txt_truncated_only_when_asked_and_counted(tokenizer, tmp_path):
    from ftcore.data.audit import report_lines

    corpus = tmp_path / "long.txt"
    corpus.write_text("\n".join(_documents(2, 120)) + "\n", encoding="utf-8")
    tokens_in = sum(len(tokenizer(d + EOT)["input_ids"]) for d in _documents(2, 120))
    prepared = prepare(str(corpus), tmp_path, tokenizer, max_seq_len=32, overflow="truncate")
    source = prepared.stats["audit"]["sources"][0]
    assert (source["tokens_in"], source["trained_tokens"], source["dropped_tokens"]) == (tokens_in, 64, tokens_in - 64)
    lines = report_lines(prepared.stats["audit"])
    assert f"64 of 64 tokens trained (100%), {tokens_in - 64} of {tokens_in} tokens dropped" in lines[0]
    assert any(f"2 of 2 texts are longer than max_seq_len and lose their end ({tokens_in - 64} tokens)" in line
               for line in lines)


def test_split_is_for_raw_text_only(tokenizer, tmp_path):
    data = write_jsonl(tmp_path / "a.jsonl", [{"instruction": "Say hello", "output": "Hello."}])
    with pytest.raises(DataError, match="data.overflow: split cuts raw text"):
        prepare(str(data), tmp_path, tokenizer, overflow="split")


def test_json_file_of_one_record_object(tokenizer, tmp_path):
    path = tmp_path / "one.json"
    path.write_text(json.dumps({"instruction": "Say hello", "output": "Hello."}, indent=2), encoding="utf-8")
    prepared = prepare(str(path), tmp_path, tokenizer)
    assert rows_of(prepared) == [expected(tokenizer, [(chatml("user", "Say hello") + ASSISTANT, False),
                                                      ("Hello.<|im_end|>\n", True)])]


def test_long_txt_trains_through_ft_train(tiny_model_dir, tmp_path):
    """The chunks of a long document train end to end (padding-free rows), and the run's manifest keeps the audit."""
    from ftcore.config.schema import build_config
    from ftcore.jobs.train import run_training

    corpus = tmp_path / "long.txt"
    corpus.write_text("\n".join(_documents(2, 120)) + "\n", encoding="utf-8")
    config = build_config({"model": str(tiny_model_dir), "method": "lora", "output_dir": str(tmp_path / "run"),
                           "data": {"train": str(corpus), "max_seq_len": 32, "cache_dir": str(tmp_path / "cache")},
                           "training": {"max_steps": 2, "batch_size": 4, "logging_steps": 1}})
    run = run_training(config).run_dir
    manifest = json.loads((run / "ft_run.json").read_text(encoding="utf-8"))
    source = manifest["data"]["stats"]["audit"]["sources"][0]
    assert source["dropped_tokens"] == 0 and source["trained_tokens"] == source["tokens_in"]
    assert manifest["data"]["stats"]["split"] == 2


WORKERS_UNDER_FT_TRAINS_SIGTERM_HANDLER = """
import time
from datasets import Dataset
from ftcore.data.progress import encode_table
from ftcore.run.guard import TerminateGuard

def encode(batch):
    time.sleep(0.005)
    return {"input_ids": [[1, 2]] * len(batch["x"]), "labels": [[-100, 2]] * len(batch["x"])}

rows = Dataset.from_dict({"x": list(range(256 * 6))})
for _ in range(40):
    with TerminateGuard():  # what ft train holds while it prepares data
        assert encode_table(rows, encode, 3, "t").num_rows == 256 * 6
print("done")
"""


def test_worker_processes_end_cleanly_under_ft_trains_signal_handler():
    # The pool ends its workers with SIGTERM; with ft train's handler inherited, a worker raised inside its
    # queue lock (a traceback each time) and, one run in a few dozen, the next worker waited on that lock forever.
    done = subprocess.run([sys.executable, "-c", WORKERS_UNDER_FT_TRAINS_SIGTERM_HANDLER], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "done", done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
