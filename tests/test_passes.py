"""Token-budgeted passes (``training.micro_batch_tokens``, ftcore.run.passes): a micro-batch run in slices of whole
examples gives the unsliced step's loss and gradients, for flattened and padded batches, LoRA and full."""

from __future__ import annotations

import pytest
from train_helpers import logged_losses, run_config, tiny_trainable, write_reversal_pairs

torch = pytest.importorskip("torch")

# Lengths 7, 3, 9, 5: budgets below cut between examples, never inside one.
EXAMPLES = [
    {"input_ids": [5, 9, 14, 30, 7, 41, 42], "labels": [-100, -100, -100, 30, 7, 41, 42]},
    {"input_ids": [11, 3, 8], "labels": [-100, 3, 8]},
    {"input_ids": [21, 22, 23, 24, 25, 26, 27, 28, 29], "labels": [-100, -100, -100, -100, 25, 26, 27, 28, 29]},
    {"input_ids": [31, 32, 33, 34, 35], "labels": [-100, -100, 33, 34, 35]},
]


def test_flattened_row_is_cut_at_example_starts():
    from ftcore.data.collate import PackedCollator
    from ftcore.run.passes import split_batch

    batch = PackedCollator()(EXAMPLES)
    parts = split_batch(batch, 12)
    # 7+3 fit in 12; 9 alone (9+5 > 12); 5 alone.
    assert [p["input_ids"][0].tolist() for p in parts] == [
        [5, 9, 14, 30, 7, 41, 42, 11, 3, 8], [21, 22, 23, 24, 25, 26, 27, 28, 29], [31, 32, 33, 34, 35]]
    assert parts[0]["position_ids"][0].tolist() == [0, 1, 2, 3, 4, 5, 6, 0, 1, 2]
    assert parts[0]["labels"][0].tolist() == [-100, -100, -100, 30, 7, 41, 42, -100, 3, 8]
    assert all(p["use_cache"] is False for p in parts)
    # An example longer than the budget runs alone; a budget that holds everything leaves the batch whole.
    assert [p["input_ids"].shape[1] for p in split_batch(batch, 4)] == [7, 3, 9, 5]
    assert split_batch(batch, 24) is None


def test_padded_batch_is_cut_between_rows_without_unneeded_padding():
    from ftcore.data.collate import PaddingCollator
    from ftcore.run.passes import split_batch

    batch = PaddingCollator(pad_token_id=0)(EXAMPLES)  # 4 rows of 9
    parts = split_batch(batch, 14)
    # Rows 0+1 take 2x7 = 14; row 2 is 9 wide (2x9 > 14 with row 3), row 3 keeps only its 5 columns.
    assert [tuple(p["input_ids"].shape) for p in parts] == [(2, 7), (1, 9), (1, 5)]
    assert parts[0]["input_ids"].tolist() == [[5, 9, 14, 30, 7, 41, 42], [11, 3, 8, 0, 0, 0, 0]]
    assert parts[0]["attention_mask"].tolist() == [[1] * 7, [1, 1, 1, 0, 0, 0, 0]]
    assert parts[2]["labels"].tolist() == [[-100, -100, 33, 34, 35]]
    # A tensor that is not [rows, length] (ft does not know how to split it) keeps the batch whole.
    assert split_batch({**batch, "extra": torch.zeros(4)}, 14) is None


def _step(model, batch, budget, tmp_path, num_items):
    """One ``training_step`` of ft's trainer; the loss it returns, its gradients and the passes it took."""
    from transformers import TrainingArguments

    from ftcore.run.passes import trainer_class

    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True, disable_tqdm=True)
    trainer = trainer_class()(model=model, args=args, micro_batch_tokens=budget)
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop, read when there is no token count
    model.zero_grad()
    loss = trainer.training_step(model, dict(batch), num_items)
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}
    return loss.item(), grads, trainer.passes


@pytest.mark.usefixtures("single_thread")
@pytest.mark.parametrize(("method", "layout", "kernel"), [
    ("lora", "flat", "chunked"), ("lora", "padded", "chunked"), ("full", "flat", "none"), ("full", "padded", "none")])
def test_sliced_step_has_the_unsliced_gradients(method, layout, kernel, tiny_model_dir, tmp_path):
    from ftcore.data.collate import PackedCollator, PaddingCollator
    from ftcore.models import loss

    model = tiny_trainable(tiny_model_dir, method, segments=True)
    loss.install(model, kernel)
    batch = PackedCollator()(EXAMPLES) if layout == "flat" else PaddingCollator(pad_token_id=0)(EXAMPLES)
    # The trainer counts the labelled tokens of the whole optimizer step (here: this batch and another like it).
    num_items = torch.tensor(2 * 15)
    whole = _step(model, batch, None, tmp_path, num_items)
    sliced = _step(model, batch, 12 if layout == "flat" else 14, tmp_path, num_items)  # 3 slices each
    assert whole[2] == 1 and sliced[2] == 3
    assert sliced[0] == pytest.approx(whole[0], abs=1e-6)
    assert sliced[1].keys() == whole[1].keys() and whole[1]
    for name, grad in whole[1].items():
        torch.testing.assert_close(sliced[1][name], grad, atol=1e-5, rtol=1e-5, msg=name)


@pytest.mark.usefixtures("single_thread")
def test_no_token_count_runs_whole(tiny_model_dir, tmp_path):
    from ftcore.data.collate import PackedCollator

    # Without the step's token count each slice's loss would be its own mean: the micro-batch stays whole.
    assert _step(tiny_trainable(tiny_model_dir, "full", segments=True), PackedCollator()(EXAMPLES), 12, tmp_path, None)[2] == 1


@pytest.mark.usefixtures("single_thread")
def test_ft_train_with_a_token_budget_same_losses(tmp_path, tiny_model_dir, caplog):
    import logging

    from ftcore.config.schema import build_config
    from ftcore.jobs.train import run_training

    data = write_reversal_pairs(tmp_path / "pairs.jsonl")
    losses = {}
    for budget in (None, 24):
        raw = run_config(tiny_model_dir, data, tmp_path / str(budget), "lora", max_steps=6, logging_steps=1,
                         gradient_accumulation=2, micro_batch_tokens=budget,
                         precision="fp32")  # equal to 1e-5 in fp32; bf16 autocast (AVX512_BF16 CPUs) rounds each path its own way
        with caplog.at_level(logging.INFO, logger="ftcore.run.trainer"):
            run_training(build_config(raw))
        losses[budget] = logged_losses(tmp_path / str(budget))
    assert len(losses[24]) == 6 and losses[24][-1] < losses[24][0]
    assert losses[24] == pytest.approx(losses[None], abs=1e-5)
    passes = [r.getMessage() for r in caplog.records if r.getMessage().startswith("training.micro_batch_tokens 24:")]
    assert len(passes) == 1 and passes[0].startswith("training.micro_batch_tokens 24: 12 micro-batches ran in ")
    assert int(passes[0].split(" ran in ")[1].split()[0]) > 12


@pytest.mark.parametrize(("value", "message"), [
    (0, "training.micro_batch_tokens: must be at least 16 tokens, or auto or null (got 0)"),
    (-8, "training.micro_batch_tokens: must be at least 16 tokens, or auto or null (got -8)"),
    ("lots", "training.micro_batch_tokens: must be a number of tokens, auto or null (got 'lots')"),
    (True, "training.micro_batch_tokens: must be a number of tokens, auto or null (got True)"),
])
def test_bad_budgets_are_one_line_errors(tmp_path, value, message):
    from ftcore.config.schema import load_config
    from ftcore.errors import ConfigError

    path = tmp_path / "c.yaml"
    path.write_text(f"model: m\nmethod: lora\ndata: {{train: d.jsonl}}\ntraining:\n  micro_batch_tokens: {json_value(value)}\n",
                    encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert message in str(caught.value) and "\n" not in str(caught.value).strip()


def json_value(value):
    import json

    return json.dumps(value)


def test_budgets_accepted():
    from ftcore.config.schema import FtConfig
    from ftcore.run.passes import AUTO_TOKENS, budget_for

    base = {"model": "m", "method": "lora", "data": {"train": "d.jsonl"}}
    for value in (16, 4096, "auto", None):
        setting = FtConfig.model_validate({**base, "training": {"micro_batch_tokens": value}}).training.micro_batch_tokens
        assert setting == value
    assert budget_for("auto") == AUTO_TOKENS and budget_for(None) is None and budget_for(300) == 300


# ----------------------------------------------------------------------------- auto: the budget that fits

GB = 1024**3


def _linear_need(fixed, per_token, seq_len, whole):
    """An estimate like ftcore.models.estimate's: fixed bytes plus bytes per token of the largest pass."""
    return lambda tokens: fixed + per_token * (whole if tokens is None else min(whole, max(tokens, seq_len)))


@pytest.mark.parametrize(("available", "expected"), [
    (100 * GB, None),  # everything fits: whole micro-batches
    (8 * GB, 4096),  # 8192 tokens need 9 GB; 4096 need 5 GB <= 6.4 GB
    (4 * GB, 2048),  # 3.2 GB of room: 2048 tokens need 3 GB
    (3 * GB, 1024),  # 2.4 GB of room: 1024 tokens (one longest example) need 2 GB
    (GB // 2, 256),  # nothing fits: the smallest budget, said so
])
def test_auto_chooses_whole_micro_batches_when_they_fit_else_the_largest_budget(available, expected):
    from ftcore.run.passes import choose_pass_tokens

    needed = _linear_need(GB, GB // 1024, seq_len=1024, whole=8192)
    choice = choose_pass_tokens(needed, available, whole_tokens=8192)
    assert choice.tokens == expected and choice.available == available
    assert choice.needed == needed(expected)
    if expected is None:
        assert choice.reason.startswith("whole micro-batches (up to 8192 tokens) are estimated at 9.0 GB, within ")
    elif expected == 256:
        assert choice.reason.startswith("even passes of 256 tokens are estimated at 2.0 GB, over 0.4 GB (80% of 0.5 GB free)")
    else:
        assert f"; passes of {expected} tokens at " in choice.reason and ", over " in choice.reason
    assert choice.record()["micro_batch_tokens"] == expected and choice.record()["setting"] == "auto"


def test_auto_budgets_stay_below_the_micro_batch():
    from ftcore.run.passes import choose_pass_tokens

    # A micro-batch of 300 tokens that does not fit whole is cut in passes of 256, never "passes" of 512.
    choice = choose_pass_tokens(_linear_need(0, 10, 16, 300), available=3300, whole_tokens=300)
    assert choice.tokens == 256 and choice.needed == 2560


@pytest.mark.parametrize(("available", "expected"), [
    (100 * GB, 512),  # everything fits, but a CPU's auto stops at its cap
    (GB + GB // 2, 256),  # 1.2 GB of room: neither 512 tokens (1.5 GB) nor 256 (1.25 GB) fit: the floor
    (2 * GB, 512),  # 1.6 GB of room: 512 tokens need 1.5 GB
])
def test_auto_on_a_cpu_caps_passes(available, expected):
    from ftcore.run.passes import CPU_PASS_TOKENS, choose_pass_tokens

    needed = _linear_need(GB, GB // 1024, seq_len=16, whole=8192)
    choice = choose_pass_tokens(needed, available, whole_tokens=8192, cap=CPU_PASS_TOKENS)
    assert CPU_PASS_TOKENS == 512 and choice.tokens == expected and choice.needed == needed(expected)
    if expected == 512:
        assert choice.reason.startswith("passes of 512 tokens, the most auto takes on a CPU (one longest example")
    else:
        assert choice.reason.startswith("even passes of 256 tokens are estimated at 1.2 GB, over 1.2 GB")
    # A micro-batch no larger than the cap runs whole when it fits, as on a GPU.
    small = choose_pass_tokens(_linear_need(0, 10, 16, 300), available=100 * GB, whole_tokens=300, cap=CPU_PASS_TOKENS)
    assert small.tokens is None and small.reason.startswith("whole micro-batches (up to 300 tokens)")


def test_set_budget_is_kept_and_said_so(tiny_model_dir):
    from ftcore.config.schema import build_config
    from ftcore.run.preflight import choose_passes

    base = {"model": str(tiny_model_dir), "method": "lora", "data": {"train": "d.jsonl"}}
    for value, tokens, reason in ((512, 512, "512 tokens"), (None, None, "null (whole micro-batches)")):
        choice = choose_passes(build_config({**base, "training": {"micro_batch_tokens": value}}), None, None)
        assert choice.tokens == tokens and choice.reason == f"training.micro_batch_tokens is set to {reason}"


def test_auto_on_this_cpu_caps_passes_at_max_seq_len_or_512(tiny_model_dir):
    from ftcore.config.schema import build_config, validate_run_config
    from ftcore.run.arguments import cuda_available
    from ftcore.run.preflight import choose_passes

    if cuda_available():
        pytest.skip("a GPU's auto takes whole micro-batches")
    base = {"model": str(tiny_model_dir), "method": "lora", "data": {"train": "d.jsonl"}}
    for batch, seq_len, expected in ((8, 2048, 2048), (16, 64, 512), (4, 64, None)):
        config = build_config({**base, "data": {"train": "d.jsonl", "max_seq_len": seq_len},
                               "training": {"batch_size": batch}})
        choice = choose_passes(config, *validate_run_config(config))
        assert choice.tokens == expected, (batch, seq_len, choice)
        if expected is not None:
            assert choice.reason.startswith(f"passes of {expected} tokens, the most auto takes on a CPU")


@pytest.mark.usefixtures("single_thread")
def test_ft_train_records_the_auto_choice_in_its_manifest(tmp_path, tiny_model_dir):
    from ftcore.config.schema import build_config
    from ftcore.jobs.train import run_training

    data = write_reversal_pairs(tmp_path / "pairs.jsonl")
    raw = run_config(tiny_model_dir, data, tmp_path / "run", "lora", max_steps=2, precision="fp32")
    manifest = run_training(build_config(raw)).manifest
    passes = manifest["passes"]
    # The tiny model's micro-batch of 4 x 64 tokens needs far less than any machine's free memory: whole passes.
    assert passes["setting"] == "auto" and passes["micro_batch_tokens"] is None
    assert passes["reason"].startswith("whole micro-batches (up to 256 tokens) are estimated at ")
    assert 0 < passes["estimated_bytes"] < passes["available_bytes"]
    assert passes["micro_batches"] == passes["passes"] == 2
