"""``ft_segments`` attention and the padding-free collator: a flattened micro-batch computes exactly what
the examples computed one by one (and what a padded batch computes), only without the padding."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")


def _examples():
    # Lengths differ so padding and segment boundaries both matter; -100 marks an untrained prompt token.
    return [
        {"input_ids": [5, 9, 14, 30, 7], "labels": [-100, -100, 14, 30, 7]},
        {"input_ids": [11, 3, 8], "labels": [-100, 3, 8]},
        {"input_ids": [21, 22, 23, 24, 25, 26, 27], "labels": [-100, -100, -100, 24, 25, 26, 27]},
    ]


def _model(tiny_model_dir, segments: bool):
    from transformers import AutoModelForCausalLM

    from ftcore.models.attention import use_segment_attention

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="sdpa", dtype=torch.float32)
    if segments:
        assert use_segment_attention(model)
    return model.eval()


def test_flattened_batch_matches_examples_one_by_one(tiny_model_dir):
    from ftcore.data.collate import PackedCollator

    examples = _examples()
    flat = PackedCollator()(examples)
    assert flat["position_ids"].tolist() == [[0, 1, 2, 3, 4, 0, 1, 2, 0, 1, 2, 3, 4, 5, 6]]
    # The first label of every example is masked: it would be predicted from the previous example.
    assert flat["labels"][0, [0, 5, 8]].tolist() == [-100, -100, -100]

    model = _model(tiny_model_dir, segments=True)
    reference = _model(tiny_model_dir, segments=False)
    with torch.no_grad():
        logits = model(input_ids=flat["input_ids"], position_ids=flat["position_ids"], use_cache=False).logits[0]
        one_by_one = torch.cat([reference(input_ids=torch.tensor([e["input_ids"]])).logits[0] for e in examples])
    torch.testing.assert_close(logits, one_by_one, atol=1e-5, rtol=1e-4)


def test_flattened_loss_and_gradients_equal_a_padded_batch(tiny_model_dir):
    from ftcore.data.collate import PackedCollator, PaddingCollator

    examples = _examples()
    padded = PaddingCollator(pad_token_id=0)(examples)
    flat = PackedCollator()(examples)
    flat.pop("use_cache")
    losses, grads = [], []
    for segments, batch in ((False, padded), (True, flat)):
        model = _model(tiny_model_dir, segments).train()
        loss = model(**batch, use_cache=False).loss
        loss.backward()
        losses.append(loss.item())
        grads.append(model.model.layers[0].self_attn.q_proj.weight.grad.clone())
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-6, rtol=1e-4)


def test_padding_masks_still_go_to_sdpa(tiny_model_dir):
    from ftcore.data.collate import PaddingCollator

    batch = PaddingCollator(pad_token_id=0)(_examples())
    batch.pop("labels")
    with torch.no_grad():
        with_segments = _model(tiny_model_dir, segments=True)(**batch).logits
        plain = _model(tiny_model_dir, segments=False)(**batch).logits
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(with_segments[real], plain[real], atol=1e-5, rtol=1e-4)


def test_restore_sdpa_before_saving(tiny_model_dir):
    from ftcore.models.attention import restore_sdpa

    model = _model(tiny_model_dir, segments=True)
    assert model.config._attn_implementation == "ft_segments"
    restore_sdpa(model)
    assert model.config._attn_implementation == "sdpa"


def test_a_padded_row_trains_as_the_row_without_its_padding(tiny_model_dir):
    # ft_segments' trainer pads flattened rows under bf16 on a CPU (passes.pad_flat_row): one more unlabelled
    # segment, so the loss and every gradient stay those of the row without it.
    from ftcore.data.collate import PackedCollator
    from ftcore.run.passes import pad_flat_row

    flat = PackedCollator()(_examples())
    padded = pad_flat_row(flat, pad_id=0)
    assert padded["input_ids"].shape == (1, 16) and padded["position_ids"][0, 15:].tolist() == [0]
    assert (padded["labels"][0, 15:] == -100).all() and padded["use_cache"] is False
    assert pad_flat_row(padded, pad_id=0) is padded  # already one of the lengths: as it is
    losses, grads = [], []
    for batch in (flat, padded):
        model = _model(tiny_model_dir, segments=True).train()
        loss = model(**batch).loss
        loss.backward()
        losses.append(loss.item())
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert losses[0] == pytest.approx(losses[1], abs=1e-6)
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, atol=1e-6, rtol=1e-5)


def test_bf16_training_attention_on_a_cpu_runs_each_example_in_fp32(tiny_model_dir, monkeypatch):
    # bf16 attention on a CPU keeps memory for every new length; training runs it in fp32 (unpadded) instead.
    import torch.nn.functional as functional

    from ftcore.data.collate import PackedCollator

    calls = []
    sdpa = functional.scaled_dot_product_attention

    def recording(query, *args, **kwargs):
        calls.append((query.shape[2], query.dtype, torch.is_autocast_enabled("cpu")))
        return sdpa(query, *args, **kwargs)

    monkeypatch.setattr(functional, "scaled_dot_product_attention", recording)
    flat = PackedCollator()(_examples())
    model = _model(tiny_model_dir, segments=True)
    inputs = {"input_ids": flat["input_ids"], "position_ids": flat["position_ids"], "use_cache": False}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        trained = model.train()(**inputs).logits
    layers = model.config.num_hidden_layers
    assert calls == [(n, torch.float32, False) for _ in range(layers) for n in (5, 3, 7)]
    assert trained.dtype == torch.bfloat16  # the rest of the layer stays under autocast
    calls.clear()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        evaluated = model.eval()(**inputs).logits
    assert {(n, on) for n, _, on in calls} == {(5, True), (3, True), (7, True)}  # evaluation: the model's own kernels
    torch.testing.assert_close(trained.detach().float(), evaluated.float(), atol=3e-2, rtol=3e-2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model.train()(**inputs, labels=flat["labels"]).loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters() if "q_proj" in n)


def test_padded_length_rounds_up_to_a_few_lengths():
    # Flattened rows and loss chunks under bf16 on a CPU are padded to these: 12 lengths up to 1,024 tokens (oneDNN
    # keeps memory for every one it meets), at most 127 rows more up to 2,048, an eighth more above.
    from ftcore.models.attention import padded_length

    assert [padded_length(n) for n in (1, 3, 9, 64, 65, 100, 1000, 1025, 1300, 2049)] == [
        8, 8, 16, 64, 128, 128, 1024, 1152, 1408, 2304]
    assert sorted({padded_length(n) for n in range(1, 1025)}) == [8, 16, 32, 64, *range(128, 1025, 128)]
    assert len({padded_length(n) for n in range(1025, 2049)}) == 8  # eight per doubling above
    assert all(n <= padded_length(n) < max(2 * n, 9) for n in range(1, 65))
    assert all(n <= padded_length(n) <= n + max(127, n // 8) for n in range(65, 5000))
