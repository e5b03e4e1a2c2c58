"""Linear layers under CPU autocast that keep no bf16 copy of their weight for the backward pass
(:mod:`ftcore.models.linear`): the same loss and gradients as autocast's own linear, less memory held."""

from __future__ import annotations

import pytest
from train_helpers import tiny_trainable

torch = pytest.importorskip("torch")


def _batch():
    torch.manual_seed(1)
    ids = torch.randint(4, 200, (2, 24))
    labels = ids.clone()
    labels[:, :6] = -100
    return {"input_ids": ids, "labels": labels}


def _step(model, batch):
    """Loss, gradients, and the bf16 tensors autograd keeps from the forward pass (by shape)."""
    model.zero_grad()
    kept = []

    def pack(tensor):
        if tensor.dtype == torch.bfloat16:
            kept.append(tuple(tensor.shape))
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(**batch).loss
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.item(), grads, kept


@pytest.mark.parametrize("method", ["full", "lora"])
def test_training_under_cpu_autocast_keeps_no_bf16_weight_copies_and_the_same_gradients(tiny_model_dir, method,
                                                                                         monkeypatch):
    from ftcore.models import linear

    monkeypatch.setattr(linear, "MIN_ROWS", 48)  # this batch's 2 x 24 tokens
    model = tiny_trainable(tiny_model_dir, method)
    weights = {tuple(m.weight.shape) for m in model.modules() if type(m) is torch.nn.Linear}
    batch = _batch()
    reference = _step(model, batch)
    assert weights & set(reference[2])  # autocast's linear keeps bf16 copies of the weights
    assert linear.install(model) == sum(type(m) is torch.nn.Linear for m in model.modules())
    recast = _step(model, batch)
    assert not weights & set(recast[2])  # ... and this one none
    assert recast[0] == pytest.approx(reference[0], abs=1e-6)
    assert recast[1].keys() == reference[1].keys() and reference[1]
    for name, grad in reference[1].items():
        torch.testing.assert_close(recast[1][name], grad, atol=1e-6, rtol=1e-5, msg=name)
    # Evaluation, no autocast and float32 keep the layer's own forward; uninstall gives it back.
    batch_eval = {"input_ids": batch["input_ids"]}
    with torch.no_grad():
        own = model.eval()(**batch_eval).logits
    linear.uninstall(model)
    assert not any("forward" in vars(m) for m in model.modules() if type(m) is torch.nn.Linear)
    with torch.no_grad():
        assert torch.equal(model(**batch_eval).logits, own)


def test_quantized_and_other_linear_subclasses_are_left_alone():
    from ftcore.models import linear

    class Other(torch.nn.Linear):
        pass

    model = torch.nn.Sequential(torch.nn.Linear(4, 4), Other(4, 4))
    assert linear.install(model) == 1 and linear.install(model) == 0  # installing twice changes nothing more
    assert "forward" in vars(model[0]) and "forward" not in vars(model[1])


def test_short_passes_keep_autocasts_own_linear(tiny_model_dir, monkeypatch):
    # A second cast per pass costs as much at any length, so passes under MIN_ROWS tokens keep the copy.
    from ftcore.models import linear

    monkeypatch.setattr(linear, "MIN_ROWS", 49)  # one more than this batch's 48 tokens
    model = tiny_trainable(tiny_model_dir, "full")
    weights = {tuple(m.weight.shape) for m in model.modules() if type(m) is torch.nn.Linear}
    linear.install(model)
    assert weights & set(_step(model, _batch())[2])
