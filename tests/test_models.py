"""ftcore.models.loading: where a model source points, and which plugin a run directory needs."""

from __future__ import annotations

from pathlib import Path

import pytest

from ftcore.errors import ModelError
from ftcore.models.loading import resolve_source
from ftcore.util.paths import looks_local


@pytest.mark.parametrize("source", ["./models/none", "/abs/missing", "a/b/c", "x.gguf"])
def test_missing_local_paths_fail_with_their_name(source: str) -> None:
    with pytest.raises(ModelError, match=f"model path does not exist: {source}"):
        resolve_source(source)


def test_hub_ids_pass_through_and_local_paths_resolve(tiny_model_dir: Path) -> None:
    assert resolve_source("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert resolve_source(str(tiny_model_dir)) == str(tiny_model_dir.resolve())


@pytest.mark.parametrize(("source", "suffixes", "local"), [
    ("org/name", (), False), ("name", (), False), ("./name", (), True), ("~/x", (), True), ("/abs/x", (), True),
    ("a/b/c", (), True), ("org/name.gguf", (".gguf",), True), ("data/train.jsonl", (".jsonl",), True),
])
def test_one_rule_tells_paths_from_hub_ids(source: str, suffixes: tuple[str, ...], local: bool) -> None:
    assert looks_local(source, suffixes) is local


def test_run_of_a_method_not_installed_names_it_and_its_distribution(tmp_path: Path, tiny_model_dir: Path,
                                                                      fresh_plugins: None) -> None:
    import json

    from adapter_runs import make_adapter_run

    from ftcore.contract.plugins import disable
    from ftcore.errors import PluginError
    from ftcore.models.loading import load_for_inference

    run = make_adapter_run(tmp_path / "run", tiny_model_dir, method="qlora")
    manifest = json.loads((run / "ft_run.json").read_text())
    manifest["plugins"] = {"ftlora": {"dist": "ftlora", "version": "0.1.0"}, "ftqlora": {"dist": "ftqlora", "version": "0.1.0"}}
    (run / "ft_run.json").write_text(json.dumps(manifest))
    disable(["ftqlora"])
    with pytest.raises(PluginError) as info:
        load_for_inference(run)
    message = str(info.value)
    assert message == (f"{run.resolve()} was trained with method 'qlora', which no installed plugin provides; "
                       "install ftqlora (pip install ftqlora)")


def test_count_parameters_counts_a_packed_linear_weight_unpacked_and_tied_weights_once():
    """A quantized Linear stores two 4-bit weights per element: it counts in x out, whatever its storage."""
    import torch

    from ftcore.models.loading import count_parameters

    class Packed(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.in_features, self.out_features = 8, 4
            self.weight = torch.nn.Parameter(torch.zeros(16, 1), requires_grad=False)

    head = torch.nn.Linear(4, 2)
    tied = torch.nn.Linear(4, 2)
    tied.weight = head.weight
    model = torch.nn.Sequential(Packed(), head, tied)
    assert count_parameters(model) == (4 * 2 + 2 + 2, 8 * 4 + 4 * 2 + 2 + 2)
