"""Every bad input gives one DataError line naming the file, line and field (and the CLI prints one line)."""

from __future__ import annotations

import json

import pytest
from data_helpers import make_config, write_records

from ftcore.errors import DataError


@pytest.fixture(scope="module")
def tokenizer(tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_tokenizer_dir)


def error_of(train, tmp_path, tokenizer, **data) -> str:
    from ftcore.data import prepare_data

    with pytest.raises(DataError) as info:
        prepare_data(make_config(str(train), tmp_path, **data), tokenizer)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_malformed_json_line(tmp_path, tokenizer):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "fine"}\n{"text": "broken"\n')
    assert error_of(path, tmp_path, tokenizer).startswith(f"{path}:2: malformed JSON line")


def test_json_line_that_is_not_an_object(tmp_path, tokenizer):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "fine"}\n\n["a", "list"]\n')
    assert error_of(path, tmp_path, tokenizer) == f"{path}:3: expected a JSON object, got a list"


def test_malformed_json_file_names_its_line(tmp_path, tokenizer):
    path = tmp_path / "bad.json"
    path.write_text('[\n  {"text": "a"},\n  {"text": }\n]\n')
    assert error_of(path, tmp_path, tokenizer).startswith(f"{path}:3: malformed JSON")


def test_missing_field_in_one_record_names_line_field_and_format(tmp_path, tokenizer):
    rows = [{"instruction": "a", "output": "b"}, {"instruction": "c", "output": "d"}, {"instruction": "e"}]
    path = write_records(tmp_path, "alp", rows, "jsonl")
    assert error_of(path, tmp_path, tokenizer) == f"{path}:3: field output missing (format alpaca)"


def test_missing_field_in_a_json_list_names_its_line(tmp_path, tokenizer):
    rows = [{"prompt": "a", "completion": "b"}, {"prompt": "c", "completion": None}]
    path = write_records(tmp_path, "comp", rows, "json")
    # write_records indents: record 2 starts on line 6.
    assert error_of(path, tmp_path, tokenizer) == f"{path}:6: field completion missing (format completion)"


def test_missing_column_with_given_format(tmp_path, tokenizer):
    path = write_records(tmp_path, "q", [{"instruction": "a", "answer": "b"}], "csv")
    message = error_of(path, tmp_path, tokenizer, format="alpaca")
    assert message.startswith(f"{path}:2: record is missing field 'output' required by format 'alpaca'")
    assert "'instruction', 'answer'" in message and "data.columns" in message


def test_undetectable_format(tmp_path, tokenizer):
    path = write_records(tmp_path, "odd", [{"query": "a", "reply": "b"}], "jsonl")
    message = error_of(path, tmp_path, tokenizer)
    assert message.startswith(f"{path}: cannot detect the data format from the fields 'query', 'reply'")
    assert "alpaca" in message


def test_field_type_changes_between_records(tmp_path, tokenizer):
    path = tmp_path / "types.jsonl"
    path.write_text('{"text": "a"}\n{"text": 5}\n')
    assert error_of(path, tmp_path, tokenizer) == f"{path}:2: field 'text' is a number but a string in {path}:1"


def test_wrong_type_for_the_format(tmp_path, tokenizer):
    path = write_records(tmp_path, "alp", [{"instruction": "a", "output": 7}], "jsonl")
    assert error_of(path, tmp_path, tokenizer) == f"{path}:1: field output expected a string, got int 7 (format alpaca)"


def test_mapped_column_is_named(tmp_path, tokenizer):
    path = write_records(tmp_path, "alp", [{"instruction": "a", "answer": ["x"]}], "jsonl")
    message = error_of(path, tmp_path, tokenizer, format="alpaca", columns={"output": "answer"})
    assert message == f"{path}:1: field output (column 'answer') expected a string, got list ['x'] (format alpaca)"


def test_sharegpt_unknown_speaker(tmp_path, tokenizer):
    rows = [{"conversations": [{"from": "human", "value": "hi"}, {"from": "robot", "value": "yo"}]}]
    path = write_records(tmp_path, "sg", rows, "jsonl")
    message = error_of(path, tmp_path, tokenizer)
    assert message.startswith(f"{path}:1: field conversations[1].from unknown speaker 'robot'")


def test_messages_bad_role(tmp_path, tokenizer):
    rows = [{"messages": [{"role": "user", "content": "hi"}, {"role": "bot", "content": "yo"}]}]
    path = write_records(tmp_path, "m", rows, "jsonl")
    message = error_of(path, tmp_path, tokenizer)
    assert message == f"{path}:1: field messages[1].role must be one of system, user, assistant, tool, got 'bot' (format messages)"


def test_empty_file(tmp_path, tokenizer):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n\n")
    assert error_of(path, tmp_path, tokenizer) == f"{path}: no records (empty dataset)"


def test_every_example_dropped_gives_counts_by_reason(tmp_path, tokenizer):
    rows = [{"instruction": "Say hello to the big red dog", "output": "Hello big red dog."}] * 2
    rows += [{"messages": [{"role": "user", "content": "Hi"}]}]
    alp = write_records(tmp_path, "alp", rows[:2], "jsonl")
    msgs = write_records(tmp_path, "msg", rows[2:], "jsonl")
    from ftcore.data import prepare_data

    with pytest.raises(DataError) as info:
        prepare_data(make_config([str(alp), str(msgs)], tmp_path, max_seq_len=8, overflow="drop"), tokenizer)
    assert str(info.value).startswith(
        "train data: every example was dropped: 2 longer than max_seq_len (8), "
        "1 no trained tokens (no assistant turn or empty response)"
    )


def test_non_utf8_names_byte_offset(tmp_path, tokenizer):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    assert error_of(path, tmp_path, tokenizer) == (
        f"{path}:2: not UTF-8 text (invalid byte 0xe9 at byte offset 28) (re-save the file as UTF-8)"
    )


def test_csv_ragged_row(tmp_path, tokenizer):
    path = tmp_path / "rag.csv"
    path.write_text('prompt,completion\n"a, b",c\nd,e,f\n')
    assert error_of(path, tmp_path, tokenizer) == f"{path}:3: CSV row has 3 fields but the header has 2"


def test_missing_file_and_unknown_type(tmp_path, tokenizer):
    assert error_of(tmp_path / "nope.jsonl", tmp_path, tokenizer) == f"{tmp_path / 'nope.jsonl'}: file not found"
    odd = tmp_path / "data.md"
    odd.write_text("hello")
    assert "unsupported file type '.md'" in error_of(odd, tmp_path, tokenizer)
    packed = tmp_path / "data.parquet.gz"
    packed.write_bytes(b"")
    assert "unsupported file type '.parquet.gz'" in error_of(packed, tmp_path, tokenizer)


def test_hub_id_offline_is_one_line(tmp_path, tokenizer):
    message = error_of("someone/no-such-dataset-xyz", tmp_path, tokenizer)
    assert message.startswith("someone/no-such-dataset-xyz: not a local path, and loading it as a Hub dataset failed")


def test_cli_prints_one_line_without_traceback(tmp_path, tiny_tokenizer_dir, capsys):
    from ftcore.cli import main

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "c"\n')
    config = tmp_path / "cfg.yaml"
    config.write_text(json.dumps({"model": str(tiny_tokenizer_dir), "data": {"train": str(bad),
                                                                             "cache_dir": str(tmp_path / "c")}}))
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "preview", "--config", str(config)])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {bad}:2: malformed JSON line: Expecting ',' delimiter (column 20)"]
