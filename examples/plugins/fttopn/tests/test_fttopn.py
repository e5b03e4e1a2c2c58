"""fttopn held to ftcore's contract suites, plus what is special about it."""

from __future__ import annotations

from ftcore.testing.suites import FormatContract, MethodContract


class TestTopN(MethodContract):
    method = "topn"
    options = {"layers": 1}
    bad_options = [{"layers": 0}, {"layer": 1}]


class TestQA(FormatContract):
    format = "qa"
    records = [{"question": "Capital of France?", "answer": "Paris"}, {"question": "2+2?", "answer": "4"}]
    expected = [{"prompt": "Capital of France?", "completion": "Paris"}, {"prompt": "2+2?", "completion": "4"}]
    bad_record = {"question": "no answer here"}


def test_only_top_layers_train(tiny_model_dir):
    import fttopn
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    prepared = fttopn.setup_peft(model, fttopn.TopNOptions(layers=1, train_head=False))
    trained = {name for name, p in prepared.named_parameters() if p.requires_grad}
    last = model.config.num_hidden_layers - 1
    assert trained and all(f".layers.{last}." in name for name in trained)
