"""Every format in every file type through prepare_data, with exact token ids and label masks."""

from __future__ import annotations

import pytest
from data_helpers import IGNORE, chatml, expected, make_config, write_records

ASSISTANT = "<|im_start|>assistant\n"

ALPACA = [{"instruction": "Say hello", "input": "to the cat", "output": "Hello cat."}]
SHAREGPT = [{"conversations": [
    {"from": "system", "value": "Be brief."},
    {"from": "human", "value": "Hi"},
    {"from": "gpt", "value": "Yes."},
    {"from": "human", "value": "Two?"},
    {"from": "gpt", "value": "No."},
]}]
MESSAGES = [{"messages": [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Yes."},
    {"role": "user", "content": "Two?"},
    {"role": "assistant", "content": "No."},
]}]
COMPLETION = [{"prompt": "Sum one plus two:", "completion": " three."}]
TEXT = [{"text": "The cat is red."}]

MULTI_TURN = [
    (chatml("system", "Be brief.") + chatml("user", "Hi") + ASSISTANT, False),
    ("Yes.<|im_end|>\n", True),
    (chatml("user", "Two?") + ASSISTANT, False),
    ("No.<|im_end|>\n", True),
]
PIECES = {
    "alpaca": [(chatml("user", "Say hello\n\nto the cat") + ASSISTANT, False), ("Hello cat.<|im_end|>\n", True)],
    "sharegpt": MULTI_TURN,
    "messages": MULTI_TURN,
    "completion": [("Sum one plus two:", False), (" three.<|endoftext|>", True)],
    "text": [("The cat is red.<|endoftext|>", True)],
}
RECORDS = {"alpaca": ALPACA, "sharegpt": SHAREGPT, "messages": MESSAGES, "completion": COMPLETION, "text": TEXT}


@pytest.fixture(scope="module")
def tokenizer(tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_tokenizer_dir)


def first_row(config, tokenizer):
    from ftcore.data import prepare_data

    prepared = prepare_data(config, tokenizer)
    return prepared.train[0], prepared


@pytest.mark.parametrize("kind", ["jsonl", "json", "csv", "parquet"])
@pytest.mark.parametrize("fmt", list(RECORDS))
def test_format_and_file_type_give_exact_ids_and_labels(fmt, kind, tokenizer, tmp_path):
    path = write_records(tmp_path, fmt, RECORDS[fmt], kind)
    # The format is detected from the fields (no data.format given).
    row, prepared = first_row(make_config(str(path), tmp_path), tokenizer)
    ids, labels = expected(tokenizer, PIECES[fmt])
    assert row["input_ids"] == ids
    assert row["labels"] == labels
    assert prepared.stats["sources"][0]["format"] == fmt
    assert prepared.stats["kept"] == 1 and prepared.stats["dropped"] == {}


def test_system_prompt_is_added_only_where_missing(tokenizer, tmp_path):
    rows = [ALPACA[0], MESSAGES[0]]
    path = write_records(tmp_path, "mixed", [{"messages": [{"role": "user", "content": "Say hello"},
                                                            {"role": "assistant", "content": "Hello."}]},
                                             rows[1]], "jsonl")
    from ftcore.data import prepare_data

    prepared = prepare_data(make_config(str(path), tmp_path, system_prompt="Answer well."), tokenizer)
    ids, labels = expected(tokenizer, [
        (chatml("system", "Answer well.") + chatml("user", "Say hello") + ASSISTANT, False),
        ("Hello.<|im_end|>\n", True),
    ])
    assert prepared.train[0]["input_ids"] == ids and prepared.train[0]["labels"] == labels
    assert prepared.train[1]["input_ids"] == expected(tokenizer, MULTI_TURN)[0]  # kept its own system message


def test_train_on_inputs_trains_every_token(tokenizer, tmp_path):
    path = write_records(tmp_path, "m", MESSAGES, "jsonl")
    row, _ = first_row(make_config(str(path), tmp_path, train_on_inputs=True), tokenizer)
    assert row["labels"] == row["input_ids"]


def test_columns_mapping_and_alpaca_system_field(tokenizer, tmp_path):
    rows = [{"question": "Name a color", "answer": "Red.", "system": "Be brief."}]
    path = write_records(tmp_path, "q", rows, "jsonl")
    config = make_config(str(path), tmp_path, format="alpaca", columns={"instruction": "question", "output": "answer"})
    row, _ = first_row(config, tokenizer)
    ids, labels = expected(tokenizer, [
        (chatml("system", "Be brief.") + chatml("user", "Name a color") + ASSISTANT, False), ("Red.<|im_end|>\n", True),
    ])
    assert (row["input_ids"], row["labels"]) == (ids, labels)


def test_named_alpaca_template(tokenizer, tmp_path):
    path = write_records(tmp_path, "a", ALPACA, "jsonl")
    row, _ = first_row(make_config(str(path), tmp_path, chat_template="alpaca"), tokenizer)
    ids, labels = expected(tokenizer, [
        ("### Instruction:\nSay hello\n\nto the cat\n\n### Response:\n", False), ("Hello cat.<|endoftext|>\n\n", True),
    ])
    assert (row["input_ids"], row["labels"]) == (ids, labels)


def test_user_jinja_template_file(tokenizer, tmp_path):
    template = tmp_path / "plain.jinja"
    template.write_text(
        "{% for m in messages %}{{ m['role'] | upper }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}ASSISTANT: {% endif %}"
    )
    path = write_records(tmp_path, "a", ALPACA, "jsonl")
    row, _ = first_row(make_config(str(path), tmp_path, chat_template=str(template)), tokenizer)
    ids, labels = expected(tokenizer, [("USER: Say hello\n\nto the cat\nASSISTANT: ", False), ("Hello cat.\n", True)])
    assert (row["input_ids"], row["labels"]) == (ids, labels)


def test_tokenizer_without_template_falls_back_to_chatml(tiny_tokenizer_dir, tmp_path):
    from transformers import AutoTokenizer

    bare = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    bare.chat_template = None
    path = write_records(tmp_path, "m", MESSAGES, "jsonl")
    row, _ = first_row(make_config(str(path), tmp_path), bare)
    assert (row["input_ids"], row["labels"]) == expected(bare, MULTI_TURN)
    from ftcore.data import prepare_data
    from ftcore.errors import DataError

    with pytest.raises(DataError, match="the tokenizer has no chat template"):
        prepare_data(make_config(str(path), tmp_path, chat_template="tokenizer"), bare)


def test_truncation_keeps_prefix_and_counts(tokenizer, tmp_path):
    path = write_records(tmp_path, "m", MESSAGES, "jsonl")
    full_ids, full_labels = expected(tokenizer, MULTI_TURN)
    cut = len(expected(tokenizer, MULTI_TURN[:2])[0]) + 2  # inside the second user turn
    row, prepared = first_row(make_config(str(path), tmp_path, max_seq_len=cut), tokenizer)
    assert row["input_ids"] == full_ids[:cut] and row["labels"] == full_labels[:cut]
    assert prepared.stats["truncated"] == 1 and prepared.stats["kept"] == 1


def test_directory_of_mixed_files_with_weights_and_eval_split(tokenizer, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    write_records(folder, "a", [{"instruction": f"Say {w}", "output": w} for w in ("one", "two", "three")], "jsonl")
    write_records(folder, "b", [{"prompt": "Add:", "completion": " five"}], "csv")
    from ftcore.config.schema import DataFile
    from ftcore.data import prepare_data

    config = make_config([str(folder), DataFile(path=str(folder / "b.csv"), weight=2.0)], tmp_path, eval_ratio=0.2)
    prepared = prepare_data(config, tokenizer)
    # 3 alpaca + 1 completion (directory) + 2 x the completion file = 6 rows, 1 held out for eval.
    assert len(prepared.train) + len(prepared.eval) == 6 and len(prepared.eval) == 1
    assert [s["format"] for s in prepared.stats["sources"]] == ["alpaca", "completion", "completion"]


def test_separate_eval_file(tokenizer, tmp_path):
    train = write_records(tmp_path, "train", ALPACA, "jsonl")
    evaluation = write_records(tmp_path, "eval", COMPLETION, "json")
    from ftcore.data import prepare_data

    prepared = prepare_data(make_config(str(train), tmp_path, eval=str(evaluation)), tokenizer)
    assert prepared.eval[0]["input_ids"] == expected(tokenizer, PIECES["completion"])[0]
    assert prepared.stats["eval"]["examples"] == 1


def test_padding_collator_pads_dynamically(tokenizer, tmp_path):
    paths = [str(write_records(tmp_path, "a", ALPACA, "jsonl")), str(write_records(tmp_path, "m", MESSAGES, "jsonl"))]
    from ftcore.data import prepare_data

    prepared = prepare_data(make_config(paths, tmp_path, padding_free=False), tokenizer)
    rows = [prepared.train[0], prepared.train[1]]
    batch = prepared.collator(rows)
    width = max(len(r["input_ids"]) for r in rows)
    assert batch["input_ids"].shape == (2, width)
    short = min(rows, key=lambda r: len(r["input_ids"]))
    i = rows.index(short)
    gap = width - len(short["input_ids"])
    assert batch["input_ids"][i].tolist() == short["input_ids"] + [tokenizer.pad_token_id] * gap
    assert batch["labels"][i].tolist() == short["labels"] + [IGNORE] * gap
    assert batch["attention_mask"][i].tolist() == [1] * len(short["input_ids"]) + [0] * gap


def test_instruction_method_rejects_raw_text(tokenizer, tmp_path):
    from ftcore.data import prepare_data
    from ftcore.errors import DataError

    path = write_records(tmp_path, "t", TEXT, "jsonl")
    with pytest.raises(DataError, match="method 'instruction' trains on instruction data"):
        prepare_data(make_config(str(path), tmp_path, method="instruction"), tokenizer)


def test_evaluation_helpers_render_prompt_as_training(tokenizer, tmp_path):
    from ftcore.config.schema import DataConfig
    from ftcore.data import load_examples, prompt_and_reference, prompt_token_ids

    path = write_records(tmp_path, "m", MESSAGES, "jsonl")
    data = DataConfig(train=str(path))
    example = load_examples(str(path), data)[0]
    prompt, reference = prompt_and_reference(example, tokenizer, data)
    assert prompt == "".join(text for text, _ in MULTI_TURN[:3])
    assert reference == "No."
    # The prompt's tokens are exactly the training sequence before the last assistant turn.
    full_ids, _ = expected(tokenizer, MULTI_TURN)
    prompt_ids = prompt_token_ids(prompt, example, tokenizer)
    assert full_ids[: len(prompt_ids)] == prompt_ids
    completion = load_examples(str(write_records(tmp_path, "c", COMPLETION, "csv")), data)[0]
    assert prompt_and_reference(completion, tokenizer, data) == ("Sum one plus two:", " three.")


def test_third_party_format_plugin(tokenizer, tmp_path, fresh_plugins):
    from ftcore import FormatSpec, hookimpl
    from ftcore.contract.plugins import register_plugin, unregister_plugin
    from ftcore.data import get_str, map_records

    class QAPlugin:
        @hookimpl
        def register_dataset_formats(self):
            return [FormatSpec("datatest-qa", "quiz and key", columns=("quiz", "key"))]

        @hookimpl
        def load_dataset(self, source, config):
            if source.format != "datatest-qa":
                return None
            return map_records(source, ("quiz", "key"), lambda r: {"prompt": get_str(r, "quiz") + "\n", "completion": get_str(r, "key")})

    register_plugin(QAPlugin(), "qa-plugin")
    try:
        path = write_records(tmp_path, "qa", [{"quiz": "Two plus two?", "key": "Four."}], "jsonl")
        row, prepared = first_row(make_config(str(path), tmp_path), tokenizer)
        assert prepared.stats["sources"][0]["format"] == "datatest-qa"
        assert (row["input_ids"], row["labels"]) == expected(
            tokenizer, [("Two plus two?\n", False), ("Four.<|endoftext|>", True)]
        )
    finally:
        unregister_plugin("qa-plugin")


def test_hub_dataset_goes_through_datasets_load_dataset(tokenizer, tmp_path, monkeypatch):
    """A name that is not a local path is read with datasets.load_dataset (the Hub itself is replaced)."""
    import datasets

    calls = []

    def fake_hub(name, config_name=None, split=None, **kwargs):
        calls.append((name, config_name, split))
        return datasets.Dataset.from_list(ALPACA)

    monkeypatch.setattr(datasets, "load_dataset", fake_hub)
    from ftcore.config.schema import DataFile
    from ftcore.data import prepare_data

    config = make_config([DataFile(path="someone/alpaca-mini", name="en", split="train[:10]")], tmp_path)
    prepared = prepare_data(config, tokenizer)
    assert calls[0] == ("someone/alpaca-mini", "en", "train[:10]")
    assert (prepared.train[0]["input_ids"], prepared.train[0]["labels"]) == expected(tokenizer, PIECES["alpaca"])
    assert prepared.stats["sources"][0]["path"] == "someone/alpaca-mini/en[train[:10]]"
