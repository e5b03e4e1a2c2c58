"""The loss without full logits (``training.kernels``, ftcore.models.loss): the same loss and gradients as the
model's own forward, for LoRA and full fine-tuning, masked prompts, padded and flattened batches."""

from __future__ import annotations

import pytest
from train_helpers import logged_losses, run_config, write_reversal_pairs

torch = pytest.importorskip("torch")


def _examples():
    # -100 marks untrained prompt tokens; lengths differ so padding and segment starts both matter.
    return [
        {"input_ids": [5, 9, 14, 30, 7, 41, 42], "labels": [-100, -100, -100, 30, 7, 41, 42]},
        {"input_ids": [11, 3, 8], "labels": [-100, 3, 8]},
        {"input_ids": [21, 22, 23, 24, 25, 26, 27, 28, 29], "labels": [-100, -100, -100, -100, 25, 26, 27, 28, 29]},
    ]


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of 4 rows, so every batch here is cut into several chunks."""
    from ftcore.models import loss

    monkeypatch.setattr(loss, "MIN_ROWS", 1)
    monkeypatch.setattr(loss, "CHUNK_ELEMENTS", 4 * 512)


def _model(tiny_model_dir, method: str, tied: bool = False):
    from transformers import AutoConfig, AutoModelForCausalLM

    if tied:  # the fixture's head is its own; a tied one is built from the config
        config = AutoConfig.from_pretrained(tiny_model_dir, tie_word_embeddings=True, attn_implementation="sdpa")
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config)
    else:
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="sdpa", dtype=torch.float32)
    if method == "full":
        return model.train()
    from peft import LoraConfig, get_peft_model

    extra = {"modules_to_save": ["lm_head"]} if method == "lora+head" else {}
    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"], **extra)
    model = get_peft_model(model, lora)
    for name, param in model.named_parameters():  # LoRA B starts at zero: give it values so its A gets gradients
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.02)
    return model.train()


def _loss_and_grads(model, batch):
    model.zero_grad()
    loss = model(**batch).loss
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}
    return loss.item(), grads


def _compare(model, batch, kernel="chunked"):
    from ftcore.models import loss

    reference = _loss_and_grads(model, batch)
    assert loss.install(model, kernel)
    try:
        output = model(**batch)
        assert output.logits is None  # the full logits were never built
        chunked = _loss_and_grads(model, batch)
    finally:
        loss.uninstall(model)
    assert chunked[0] == pytest.approx(reference[0], abs=1e-5)
    assert chunked[1].keys() == reference[1].keys() and reference[1]
    for name, grad in reference[1].items():
        torch.testing.assert_close(chunked[1][name], grad, atol=1e-5, rtol=1e-4, msg=name)
    return reference[1]


@pytest.mark.parametrize("method", ["lora", "full", "lora+head"])
def test_padded_batch_same_loss_and_gradients(method, tiny_model_dir, small_chunks):
    from ftcore.data.collate import PaddingCollator

    batch = PaddingCollator(pad_token_id=0)(_examples())
    grads = _compare(_model(tiny_model_dir, method), batch)
    if method == "full":
        assert "lm_head.weight" in grads and "model.embed_tokens.weight" in grads
    if method == "lora+head":  # peft's trainable copy of the head goes through the checkpointed path
        assert any("modules_to_save" in name and "lm_head" in name for name in grads)


@pytest.mark.parametrize("method", ["lora", "full"])
def test_flattened_batch_with_token_count_same_loss_and_gradients(method, tiny_model_dir, small_chunks):
    from ftcore.data.collate import PackedCollator
    from ftcore.models.attention import use_segment_attention

    model = _model(tiny_model_dir, method)
    use_segment_attention(model.get_base_model() if method == "lora" else model)
    batch = PackedCollator()(_examples())
    # Gradient accumulation: the trainer divides the summed loss by the labelled tokens of all micro-batches.
    batch["num_items_in_batch"] = torch.tensor(40)
    _compare(model, batch)


def test_tied_embeddings_get_the_head_gradient(tiny_model_dir, small_chunks):
    from ftcore.data.collate import PaddingCollator

    model = _model(tiny_model_dir, "full", tied=True)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    grads = _compare(model, PaddingCollator(pad_token_id=0)(_examples()))
    # One parameter, gradients from both the embedding lookup and the head.
    assert "lm_head.weight" not in grads and grads["model.embed_tokens.weight"].abs().sum() > 0


def test_evaluation_keeps_the_logits_and_saved_model_its_forward(tiny_model_dir):
    from ftcore.data.collate import PaddingCollator
    from ftcore.models import loss

    model = _model(tiny_model_dir, "lora")
    batch = PaddingCollator(pad_token_id=0)(_examples())
    assert loss.install(model, "chunked")
    with torch.no_grad():
        assert model.eval()(**batch).logits.shape == (3, 9, model.config.vocab_size)
    loss.uninstall(model)
    assert "forward" not in vars(model.get_base_model())


def test_architectures_with_changed_logits_keep_their_own_loss(tiny_model_dir):
    from ftcore.models import loss

    model = _model(tiny_model_dir, "full")
    model.config.final_logit_softcapping = 30.0
    assert loss.unsupported_reason(model) == "its config sets final_logit_softcapping"
    assert not loss.install(model, "chunked")
    assert "forward" not in vars(model)
    assert not loss.install(_model(tiny_model_dir, "full"), "none")


def test_kernel_choice_and_liger_errors(monkeypatch):
    from ftcore.config.schema import FtConfig
    from ftcore.errors import ConfigError
    from ftcore.models import loss

    monkeypatch.setattr(loss, "liger_installed", lambda: False)
    assert loss.choose_kernel("auto", cuda=False) == "chunked"
    assert loss.choose_kernel("auto", cuda=True) == "chunked"
    monkeypatch.setattr(loss, "liger_installed", lambda: True)
    assert loss.choose_kernel("auto", cuda=True) == "chunked"  # liger only when named
    assert loss.choose_kernel("liger", cuda=True) == "liger"
    assert loss.choose_kernel("auto", cuda=False) == "chunked"
    with pytest.raises(ConfigError, match="training.kernels: liger runs on CUDA GPUs only"):
        loss.choose_kernel("liger", cuda=False)
    monkeypatch.undo()
    base = {"model": "m", "method": "lora", "data": {"train": "d.jsonl"}}
    if not loss.liger_installed():
        with pytest.raises(Exception, match="liger needs Liger-Kernel, which is not installed; pip install liger-kernel"):
            FtConfig.model_validate({**base, "training": {"kernels": "liger"}})
    with pytest.raises(Exception, match="kernels"):
        FtConfig.model_validate({**base, "training": {"kernels": "fused"}})


@pytest.mark.usefixtures("single_thread")
def test_ft_train_same_losses_with_and_without_full_logits(tmp_path, tiny_model_dir, caplog):
    import logging

    from ftcore.config.schema import build_config
    from ftcore.jobs.train import run_training

    data = write_reversal_pairs(tmp_path / "pairs.jsonl")
    losses = {}
    for kernel in ("none", "chunked"):
        raw = run_config(tiny_model_dir, data, tmp_path / kernel, "lora", max_steps=3, logging_steps=1,
                         gradient_accumulation=2, kernels=kernel,
                         # Same losses to 1e-5 means fp32: "auto" autocasts to bf16 on CPUs with AVX512_BF16,
                         # where the two paths round differently (4e-4 measured on an AMD EPYC with bf16).
                         precision="fp32")
        with caplog.at_level(logging.INFO, logger="ftcore.run.trainer"):
            run_training(build_config(raw))
        losses[kernel] = logged_losses(tmp_path / kernel)
    assert "training loss: chunked cross-entropy over labelled positions" in caplog.text
    assert len(losses["chunked"]) == 3
    assert losses["chunked"] == pytest.approx(losses["none"], abs=1e-5)


def test_autocast_casts_the_frozen_head_once_to_the_same_result():
    """Under bf16 autocast the chunked loss casts a frozen head once per call, not once per chunk, and gives
    bitwise the loss and row gradients of casting it in every chunk's matmuls."""
    from ftcore.models.loss import LinearCrossEntropy

    torch.manual_seed(0)
    rows = torch.randn(40, 32, requires_grad=True)
    weight, targets = torch.randn(300, 32), torch.randint(0, 300, (40,))
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.profiler.profile(record_shapes=True) as profile:
        total = LinearCrossEntropy.apply(rows, weight, None, targets, 8)  # 5 chunks
    total.backward()
    casts = [e for e in profile.events() if e.name == "aten::copy_" and list(e.input_shapes[0]) == [300, 32]]
    assert len(casts) == 1
    # The same computation with autocast casting the head in each chunk's matmuls (what it did before).
    expected, grad_rows = torch.zeros(()), torch.empty(40, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for start in range(0, 40, 8):
            logits = torch.nn.functional.linear(rows[start:start + 8].detach(), weight).float()
            norm = logits.logsumexp(-1)
            expected += (norm - logits.gather(1, targets[start:start + 8, None]).squeeze(1)).sum()
            grad = torch.softmax(logits, -1)
            grad[torch.arange(8), targets[start:start + 8]] -= 1
            grad_rows[start:start + 8] = grad @ weight
    assert torch.equal(total.detach(), expected) and torch.equal(rows.grad, grad_rows)


def test_loss_chunks_are_a_power_of_two_rows_within_the_logit_budget():
    # Whole chunks are then one of the row counts bf16 chunks on a CPU are padded to, so only the last is padded.
    from ftcore.models.loss import CHUNK_ELEMENTS, chunk_rows

    assert [chunk_rows(v) for v in (2048, 8192, 32000, 49152, 128256, 262144)] == [4096, 1024, 256, 128, 64, 64]
    assert all(chunk_rows(v) * v <= CHUNK_ELEMENTS for v in range(1000, 131072, 997))


def test_bf16_chunks_on_a_cpu_take_a_few_row_counts_with_the_same_result(monkeypatch):
    """On a CPU in bf16, a matmul of a new number of rows keeps new memory, so the chunked loss takes its logits
    over one of a few row counts (zeros added, then dropped): the loss is bitwise the one without."""
    from ftcore.models.loss import LinearCrossEntropy

    rows_seen = []
    linear = torch.nn.functional.linear

    def counting(x, *args, **kwargs):
        rows_seen.append(x.shape[0])
        return linear(x, *args, **kwargs)

    torch.manual_seed(0)
    rows = torch.randn(100, 32, requires_grad=True)
    weight, targets = torch.randn(300, 32), torch.randint(0, 300, (100,))
    monkeypatch.setattr(torch.nn.functional, "linear", counting)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        total = LinearCrossEntropy.apply(rows, weight, None, targets, 1024)
    total.backward()
    assert rows_seen == [128]
    monkeypatch.setattr(torch.nn.functional, "linear", linear)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = torch.nn.functional.linear(rows.detach(), weight).float()
        expected = (logits.logsumexp(-1) - logits.gather(1, targets[:, None]).squeeze(1)).sum()
    assert torch.equal(total.detach(), expected)
    # fp32: no padding at all.
    rows_seen.clear()
    monkeypatch.setattr(torch.nn.functional, "linear", counting)
    LinearCrossEntropy.apply(rows.detach(), weight, None, targets, 1024)
    assert rows_seen == [100]
