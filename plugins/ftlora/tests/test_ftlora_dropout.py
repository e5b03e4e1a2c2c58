"""ftlora's CPU dropout: torch's distribution, a boolean mask, the same masks from the same seed, and in every
LoRA model ftlora attaches."""

from __future__ import annotations

from pathlib import Path

import pytest
from ftlora import LoraOptions, attach_lora
from ftlora.dropout import cpu_dropout


def test_drops_p_of_the_elements_and_scales_the_rest() -> None:
    import torch

    torch.manual_seed(0)
    dropout = cpu_dropout(0.05).train()
    x = torch.rand(1000, 1000) + 1.0  # no zeros of its own
    y = dropout(x)
    dropped = (y == 0).float().mean().item()
    # 1e6 draws: the standard deviation of the dropped share is 2.2e-4.
    assert abs(dropped - 0.05) < 1.5e-3
    kept = y != 0
    torch.testing.assert_close(y[kept], x[kept] * (65536 / (65536 - 3277)))
    assert abs(y.mean().item() / x.mean().item() - 1.0) < 2e-3
    # Each of the four 16-bit quarters of a 64-bit draw is as random as the others.
    quarters = (y.flatten()[: 4 * (y.numel() // 4)].view(-1, 4) == 0).float().mean(0)
    assert ((quarters - 0.05).abs() < 3e-3).all(), quarters


def test_gradient_is_the_mask_times_the_scale_and_only_a_boolean_mask_is_kept() -> None:
    import torch

    dropout = cpu_dropout(0.25).train()
    x = torch.ones(64, 96, requires_grad=True)
    saved = []

    def pack(tensor):
        saved.append(tensor)
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        y = dropout(x)
    assert [t.dtype for t in saved] == [torch.bool] and saved[0].shape == x.shape
    y.backward(torch.full_like(y, 3.0))
    torch.testing.assert_close(x.grad, 3.0 * y.detach())
    # torch's own dropout on a CPU keeps a float mask: four times the bytes.
    saved.clear()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        torch.nn.functional.dropout(x, 0.25, True)
    assert sum(t.numel() * t.element_size() for t in saved) >= 4 * x.numel()


def test_same_seed_same_masks_and_no_dropout_in_eval_mode() -> None:
    import torch

    dropout = cpu_dropout(0.1).train()
    x = torch.rand(50, 70) + 1.0
    torch.manual_seed(3)
    first = dropout(x)
    torch.manual_seed(3)
    assert torch.equal(dropout(x), first)
    assert not torch.equal(dropout(x), first)
    assert torch.equal(dropout.eval()(x), x)


@pytest.mark.parametrize("p", [0.0, 1e-6])
def test_probabilities_below_one_level_use_torch_dropout(p: float) -> None:
    import torch

    x = torch.rand(10, 10)
    torch.manual_seed(0)
    expected = torch.nn.functional.dropout(x, p, True)
    torch.manual_seed(0)
    assert torch.equal(cpu_dropout(p).train()(x), expected)


def test_attached_lora_uses_it_and_trains(tiny_model_dir: Path) -> None:
    import torch
    from ftlora.dropout import use_cpu_dropout
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    model = attach_lora(base, LoraOptions(r=4, dropout=0.1, target_modules=["q_proj", "v_proj"]))
    dropouts = [m for name, m in model.named_modules() if name.endswith("lora_dropout.default")]
    assert dropouts and all(type(m).__name__ == "CpuDropout" and m.p == 0.1 for m in dropouts)
    assert use_cpu_dropout(model) == 0  # nothing left to replace
    ids = torch.tensor([[5, 17, 42, 99, 7, 300, 12, 64]])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    losses = []
    for _ in range(8):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.1, losses
    # In eval mode the adapter's output does not depend on the random state.
    model.eval()
    with torch.no_grad():
        torch.manual_seed(1)
        a = model(ids).logits
        torch.manual_seed(2)
        assert torch.equal(model(ids).logits, a)


def test_no_dropout_keeps_peft_identity(tiny_model_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    model = attach_lora(base, LoraOptions(r=4, dropout=0.0, target_modules=["q_proj"]))
    dropouts = [m for name, m in model.named_modules() if name.endswith("lora_dropout.default")]
    assert dropouts and all(isinstance(m, torch.nn.Identity) for m in dropouts)
