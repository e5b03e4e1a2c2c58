"""The tokenized-data cache: a second prepare_data on the same inputs skips tokenization."""

from __future__ import annotations

from pathlib import Path

import pytest
from data_helpers import make_config, write_records

ROWS = [{"instruction": "Say hello", "output": "Hello."}, {"instruction": "Count", "output": "One two three."}]


@pytest.fixture(scope="module")
def tokenizer(tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_tokenizer_dir)


def test_second_run_is_a_cache_hit_without_tokenizing(tokenizer, tmp_path, monkeypatch):
    from ftcore.data import pipeline, prepare_data

    path = str(write_records(tmp_path, "alp", ROWS, "jsonl"))
    config = make_config(path, tmp_path, eval_ratio=0.5)
    first = prepare_data(config, tokenizer)
    assert first.stats["cache_hit"] is False and first.stats["cache_written"] is True

    def no_tokenizing(*args, **kwargs):
        raise AssertionError("tokenized again despite the cache")

    monkeypatch.setattr(pipeline, "_build", no_tokenizing)
    second = prepare_data(config, tokenizer)
    assert second.stats["cache_hit"] is True
    assert second.fingerprint == first.fingerprint
    assert second.train["input_ids"] == first.train["input_ids"] and second.train["labels"] == first.train["labels"]
    assert second.eval["input_ids"] == first.eval["input_ids"]
    assert second.stats["kept"] == first.stats["kept"] == 2


@pytest.mark.parametrize("change", ["file", "max_seq_len", "template", "packing"])
def test_inputs_that_change_the_tokens_miss_the_cache(change, tokenizer, tmp_path):
    from ftcore.data import prepare_data

    path = write_records(tmp_path, "alp", ROWS, "jsonl")
    base = prepare_data(make_config(str(path), tmp_path), tokenizer)
    settings = {"max_seq_len": {"max_seq_len": 256}, "template": {"chat_template": "alpaca"},
                "packing": {"packing": True}}.get(change, {})
    if change == "file":
        write_records(tmp_path, "alp", [*ROWS, {"instruction": "More", "output": "Yes."}], "jsonl")
    again = prepare_data(make_config(str(path), tmp_path, **settings), tokenizer)
    assert again.stats["cache_hit"] is False and again.fingerprint != base.fingerprint


def test_rewriting_the_same_content_hits(tokenizer, tmp_path):
    import os

    from ftcore.data import prepare_data

    path = write_records(tmp_path, "a", ROWS, "jsonl")
    assert prepare_data(make_config(str(path), tmp_path), tokenizer).stats["cache_hit"] is False
    write_records(tmp_path, "a", ROWS, "jsonl")
    os.utime(path, (1, 1))  # only the content counts, not the modification time
    assert prepare_data(make_config(str(path), tmp_path), tokenizer).stats["cache_hit"] is True


def test_cache_dir_from_environment_and_unwritable_cache(tokenizer, tmp_path, monkeypatch):
    from ftcore.config.schema import build_config
    from ftcore.data import prepare_data

    path = str(write_records(tmp_path, "alp", ROWS, "jsonl"))
    monkeypatch.setenv("FT_CACHE_DIR", str(tmp_path / "env-cache"))
    config = build_config({"model": "unused", "data": {"train": path}})
    prepared = prepare_data(config, tokenizer)
    assert (tmp_path / "env-cache" / prepared.fingerprint / "stats.json").is_file()

    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache directory should be")
    prepared = prepare_data(make_config(path, tmp_path, cache_dir=str(blocker / "cache")), tokenizer)
    assert prepared.stats["cache_written"] is False and len(prepared.train) == 2


def test_parallel_tokenization_gives_the_same_rows(tokenizer, tmp_path):
    from ftcore.data import prepare_data

    rows = [{"instruction": f"Say {i}", "output": f"Number {i}."} for i in range(40)]
    path = str(write_records(tmp_path, "many", rows, "jsonl"))
    serial = prepare_data(make_config(path, tmp_path, cache_dir=str(tmp_path / "c1")), tokenizer)
    parallel = prepare_data(make_config(path, tmp_path, cache_dir=str(tmp_path / "c2"), num_proc=2), tokenizer)
    assert parallel.train["input_ids"] == serial.train["input_ids"]
    assert parallel.train["labels"] == serial.train["labels"]


def test_cache_write_that_fails_midway_leaves_nothing(tmp_path):
    """A full disk while the second split is written: no entry, no temporary directory, the run goes on."""
    import errno

    from datasets import Dataset

    from ftcore.data.cache import load_cached, save_cached

    class FullDisk(Dataset):
        def save_to_disk(self, path, **kwargs):
            Path(path).mkdir(parents=True)
            (Path(path) / "data-00000.arrow").write_bytes(b"half")
            raise OSError(errno.ENOSPC, "No space left on device")

    train = Dataset.from_dict({"input_ids": [[1, 2]]})
    broken = FullDisk(train.data)
    assert save_cached(tmp_path, "key", train, broken, {"rows": 1}) is False
    assert list(tmp_path.iterdir()) == [] and load_cached(tmp_path, "key") is None
    assert save_cached(tmp_path, "key", train, None, {"rows": 1}) is True
    assert [p.name for p in tmp_path.iterdir()] == ["key"] and load_cached(tmp_path, "key") is not None
