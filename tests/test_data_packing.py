"""Packing: position resets keep examples apart, so a packed batch's loss equals the per-example losses."""

from __future__ import annotations

import pytest
from data_helpers import IGNORE, make_config, write_records

ROWS = [
    {"instruction": "Say hello", "output": "Hello."},
    {"instruction": "Name three colors", "input": "for a cat", "output": "Red, green and blue."},
    {"instruction": "What is two plus two?", "output": "Four."},
    {"instruction": "Write a small sentence about a river", "output": "The river is fast and blue."},
    {"instruction": "Yes or no?", "output": "Yes."},
]


@pytest.fixture(scope="module")
def tokenizer(tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_tokenizer_dir)


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    return loaded.eval()


def test_pack_rows_resets_positions_and_masks_first_labels():
    from ftcore.data.collate import pack_rows

    rows = pack_rows([([1, 2, 3], [IGNORE, 2, 3]), ([4, 5], [4, 5]), ([6, 7, 8], [6, 7, 8])], max_seq_len=6)
    assert rows["input_ids"] == [[1, 2, 3, 4, 5], [6, 7, 8]]
    assert rows["position_ids"] == [[0, 1, 2, 0, 1], [0, 1, 2]]
    assert rows["labels"] == [[IGNORE, 2, 3, IGNORE, 5], [IGNORE, 7, 8]]


def test_packed_loss_equals_token_weighted_example_losses(tokenizer, model, tmp_path):
    import torch

    from ftcore.data import prepare_data

    path = str(write_records(tmp_path, "alp", ROWS, "jsonl"))
    packed = prepare_data(make_config(path, tmp_path, packing=True, max_seq_len=96), tokenizer)
    single = prepare_data(make_config(path, tmp_path, packing=False, max_seq_len=96), tokenizer)
    assert len(packed.train) < len(single.train) == len(ROWS)
    assert packed.stats["train"]["rows"] == len(packed.train)

    batch = packed.collator([packed.train[i] for i in range(len(packed.train))])
    assert batch["input_ids"].shape[0] == 1  # flattened, no padding
    assert int((batch["position_ids"][0] == 0).sum()) == len(ROWS)
    with torch.no_grad():
        packed_loss = model(**batch).loss.item()
        total, count = 0.0, 0
        for row in single.train:
            n = sum(label != IGNORE for label in row["labels"][1:])
            loss = model(input_ids=torch.tensor([row["input_ids"]]), labels=torch.tensor([row["labels"]])).loss
            total, count = total + loss.item() * n, count + n
        # Control: the same flat row without position resets lets examples see each other.
        leaked = model(input_ids=batch["input_ids"], labels=batch["labels"], use_cache=False).loss.item()
    assert packed_loss == pytest.approx(total / count, abs=1e-5)
    assert abs(leaked - total / count) > 1e-3


def test_trainer_steps_on_packed_data(tokenizer, model, tmp_path):
    import copy

    from transformers import Trainer, TrainingArguments

    from ftcore.data import prepare_data

    path = str(write_records(tmp_path, "alp", ROWS * 4, "jsonl"))
    prepared = prepare_data(make_config(path, tmp_path, packing=True, max_seq_len=64), tokenizer)
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=2, max_steps=2, learning_rate=1e-3,
        report_to=[], save_strategy="no", logging_steps=1, use_cpu=True,
    )
    trainer = Trainer(model=copy.deepcopy(model).train(), args=args, train_dataset=prepared.train,
                      data_collator=prepared.collator, processing_class=tokenizer)
    result = trainer.train()
    assert result.global_step == 2 and result.training_loss > 0
