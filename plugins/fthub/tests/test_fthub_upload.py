"""``ft upload`` (fthub) against a local Hub emulation: the real huggingface_hub client, no network.

Runs with a LoRA adapter need peft (installed with ftlora), and the merged upload needs ftlora itself; each is
skipped when missing, so ``nox -s plugin -- fthub`` runs the rest on a full fine-tune's run directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from fthub_runs import LOGGED, TRAIN_LOSS_MEAN, add_gguf_export, make_run
from hub_server import HubEmulator

TOKEN = "hf_TestSecretToken0123456789abcdefXYZ"


SCORES = {"scores": {"rouge1": 0.4321, "perplexity": 12.5}, "n_examples": 8, "generation": {"max_new_tokens": 32}}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """A LoRA run (peft needed)."""
    pytest.importorskip("peft")
    return make_run(tmp_path_factory.mktemp("runs") / "lora-run", tiny_model_dir, eval_scores=SCORES,
                    hub_id="acme/tiny-llama")


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """A full fine-tune's run, trained on a local file, evaluated on another, with a GGUF export beside it."""
    root = tmp_path_factory.mktemp("runs")
    (root / "train.jsonl").write_text('{"text": "hello"}\n')
    run = make_run(root / "full-run", tiny_model_dir, adapter=False, hub_id="acme/tiny-llama",
                   data=str(root / "train.jsonl"),
                   eval_scores={**SCORES, "model": str(root / "full-run"), "data": str(root / "held_out.jsonl")})
    add_gguf_export(run)
    return run


def ft(args: list[str], hub: HubEmulator | None, home: Path, token: str | None = TOKEN) -> subprocess.CompletedProcess:
    """Run the real ``ft`` CLI in a fresh process with HF_ENDPOINT pointed at the emulator."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HOME=str(home), HF_HUB_OFFLINE="0", HF_HUB_DISABLE_TELEMETRY="1")
    if hub is not None:
        env["HF_ENDPOINT"] = hub.url
    if token is not None:
        env["HF_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "ftcore", *args], env=env, capture_output=True, text=True, timeout=120)


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n", 2)[1])


def test_upload_sends_run_and_card_in_one_commit(run_dir: Path, tmp_path: Path) -> None:
    with HubEmulator({TOKEN: "alice"}) as hub:
        result = ft(["upload", str(run_dir), "--repo-id", "alice/tiny-lora", "--private"], hub, tmp_path)
        assert result.returncode == 0, result.stderr
        assert [(r.method, r.path.split("?")[0]) for r in hub.requests] == [
            ("GET", "/api/whoami-v2"),
            ("POST", "/api/repos/create"),
            ("POST", "/api/validate-yaml"),
            ("POST", "/api/models/alice/tiny-lora/preupload/main"),
            ("POST", "/api/models/alice/tiny-lora/commit/main"),
        ]
        repo = hub.repos["alice/tiny-lora"]
    assert repo.private and len(repo.commits) == 1
    files = repo.files
    assert {"README.md", "adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "ft_config.yaml",
            "ft_run.json", "metrics.jsonl", "eval/eval.json"} <= set(files)
    assert not any(name.startswith("checkpoints") for name in files)
    assert files["adapter_model.safetensors"] == (run_dir / "adapter_model.safetensors").read_bytes()
    card = files["README.md"].decode()
    meta = front_matter(card)
    assert meta["library_name"] == "peft" and "ft" in meta["tags"] and "lora" in meta["tags"]
    assert meta["datasets"] == ["tatsu-lab/alpaca"]
    assert meta["base_model"] == "acme/tiny-llama"  # the Hub id the run recorded, not its local path
    assert json.loads(files["adapter_config.json"])["base_model_name_or_path"] == "acme/tiny-llama"
    assert yaml.safe_load(files["ft_config.yaml"])["model"] == "acme/tiny-llama"
    assert json.loads(files["ft_run.json"])["base_model"] == "acme/tiny-llama"
    assert str(run_dir.parent) not in card and str(Path.home()) not in card
    assert "0123456789abcdef" in card and "| rouge1 | 0.4321 |" in card and 'PeftModel.from_pretrained(base, "alice/tiny-lora")' in card
    assert "(8 examples)" in card and card.count("max_new_tokens") == 1  # the snippet's, not eval.json's settings
    assert "| peft |" in card and "| training.learning_rate | `0.001` |" in card
    assert f"{hub.url}/alice/tiny-lora" in result.stdout
    # The list came first, then the result; the data fingerprint is listed once.
    listing, done = result.stdout.index("Uploading "), result.stdout.index("Uploaded ")
    assert listing < done and "adapter_model.safetensors" in result.stdout[listing:done]
    assert card.count("0123456789abcdef") == 1
    # The token went in the Authorization header only.
    assert all(r.headers.get("authorization") == f"Bearer {TOKEN}" for r in hub.requests if r.path != "/api/validate-yaml")
    for text in [result.stdout, result.stderr, *[content.decode("latin-1") for content in files.values()]]:
        assert TOKEN not in text
    assert not any(TOKEN.encode() in p.read_bytes() for p in run_dir.rglob("*") if p.is_file())


def test_stored_login_token_is_used(full_run: Path, tmp_path: Path) -> None:
    (tmp_path / "token").write_text(TOKEN)  # where `hf auth login` stores it under HF_HOME
    with HubEmulator({TOKEN: "bob"}) as hub:
        result = ft(["upload", str(full_run), "--repo-id", "bob/tiny"], hub, tmp_path, token=None)
        assert result.returncode == 0, result.stderr
        assert not hub.repos["bob/tiny"].private
        assert TOKEN not in result.stdout + result.stderr


def test_invalid_token_fails_before_anything_is_uploaded(full_run: Path, tmp_path: Path) -> None:
    with HubEmulator({"hf_other": "alice"}) as hub:
        result = ft(["upload", str(full_run), "--repo-id", "alice/tiny-lora"], hub, tmp_path)
        assert result.returncode == 1
        assert [r.path for r in hub.requests] == ["/api/whoami-v2"] and not hub.repos
    assert "token was rejected" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert TOKEN not in result.stdout + result.stderr


def test_missing_token_is_a_clear_error(full_run: Path, tmp_path: Path) -> None:
    with HubEmulator({TOKEN: "alice"}) as hub:
        result = ft(["upload", str(full_run), "--repo-id", "alice/x"], hub, tmp_path, token=None)
        assert not hub.requests
    assert result.returncode == 1 and "no Hugging Face token" in result.stderr and "HF_TOKEN" in result.stderr


@pytest.mark.parametrize("repo_id", ["no-namespace", "alice/bad--name", "alice/../etc", "a/b/c", "alice/x.git", "alice/sp ace"])
def test_invalid_repo_id_is_rejected_before_any_request(repo_id: str) -> None:
    from fthub.upload import check_repo_id

    from ftcore import UsageError

    with pytest.raises(UsageError, match="invalid repo id"):
        check_repo_id(repo_id)


def test_invalid_repo_id_cli_makes_no_request(full_run: Path, tmp_path: Path) -> None:
    with HubEmulator({TOKEN: "alice"}) as hub:
        result = ft(["upload", str(full_run), "--repo-id", "alice/bad--name"], hub, tmp_path)
        assert not hub.requests
    assert result.returncode == 2 and "invalid repo id 'alice/bad--name'" in result.stderr


def test_wrong_namespace_is_a_hub_error(full_run: Path, tmp_path: Path) -> None:
    with HubEmulator({TOKEN: "alice"}) as hub:
        result = ft(["upload", str(full_run), "--repo-id", "someorg/tiny"], hub, tmp_path)
        assert "someorg/tiny" not in hub.repos
    assert result.returncode == 1 and "HTTP 403" in result.stderr and "write access" in result.stderr
    assert TOKEN not in result.stdout + result.stderr
    # The list was shown before the first request that writes (the one refused here).
    assert result.stdout.startswith("Uploading ") and " files to someorg/tiny:" in result.stdout
    assert "  model.safetensors" in result.stdout and "Uploaded" not in result.stdout


def test_dry_run_lists_files_and_card_without_requests(run_dir: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from ftcore.cli import cli

    pytest.importorskip("peft")
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    out = CliRunner().invoke(cli, ["upload", str(run_dir), "--repo-id", "alice/tiny-lora", "--dry-run"])
    assert out.exit_code == 0, out.output
    assert "adapter_model.safetensors" in out.output and "checkpoints" not in out.output
    assert "library_name: peft" in out.output and "## Evaluation" in out.output
    merged = CliRunner().invoke(cli, ["upload", str(run_dir), "--repo-id", "alice/tiny", "--dry-run", "--merged"])
    assert merged.exit_code == 0, merged.output
    assert "model.safetensors" in merged.output and "adapter_model.safetensors" not in merged.output
    assert "library_name: transformers" in merged.output
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before  # the run dir is left alone


def test_not_a_run_dir(tmp_path: Path) -> None:
    from fthub.upload import dry_run

    from ftcore import RunDirError

    with pytest.raises(RunDirError, match="no ft_run.json"):
        dry_run(tmp_path, "alice/x")


def test_merged_upload_sends_a_standalone_model(run_dir: Path, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    pytest.importorskip("ftlora", reason="merging a LoRA run needs the ftlora plugin")
    with HubEmulator({TOKEN: "alice"}) as hub:
        result = ft(["upload", str(run_dir), "--repo-id", "alice/tiny-merged", "--merged"], hub, tmp_path / "home")
        assert result.returncode == 0, result.stderr
        files = hub.repos["alice/tiny-merged"].files
    assert not any(name.startswith("adapter_") for name in files)
    received = tmp_path / "received"
    for name, content in files.items():
        (received / name).parent.mkdir(parents=True, exist_ok=True)
        (received / name).write_bytes(content)
    assert front_matter(files["README.md"].decode())["library_name"] == "transformers"
    model = AutoModelForCausalLM.from_pretrained(received, dtype=torch.float32)
    assert model(torch.tensor([[5, 6, 7]])).logits.shape[-1] == model.config.vocab_size


def test_symlink_out_of_the_run_dir_is_not_published(full_run: Path, tmp_path: Path) -> None:
    import shutil

    from fthub.upload import stage

    copy = tmp_path / "run-with-link"
    shutil.copytree(full_run, copy)
    secret = tmp_path / "secret.txt"
    secret.write_text("private key material")
    (copy / "notes.txt").symlink_to(secret)
    (copy / "inside.txt").write_text("fine")
    plan = stage(copy, "user/model", tmp_path / "staged")
    names = {name for name, _ in plan.files}
    assert "inside.txt" in names
    assert "notes.txt" not in names
    assert not any("private key material" in p.read_text(errors="ignore") for p in (tmp_path / "staged").rglob("*.txt"))


def evaluation(model: str, data: str, scores: dict[str, float], ci: dict | None = None):
    from dataclasses import asdict

    from ftcore.jobs.evaluation import EvalResult
    from ftcore.models.generation import GenerationSettings

    metrics = {"rouge": {"scores": ["rougeL"], "higher_is_better": True}, "perplexity": {"scores": ["perplexity"], "higher_is_better": False}}
    return EvalResult(model=model, data=data, data_fingerprint="sha256:feedbeef", n_examples=20, generation=asdict(GenerationSettings()),
                      scores=scores, metrics=metrics, ci=ci or {})


@pytest.fixture(scope="module")
def evaluated_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """An adapter run with eval/eval.json, a benchmark report (with intervals) and loss.png, written by ft's code."""
    from ftcore.artifacts.curves import write_loss_curve
    from ftcore.jobs.benchmark import BenchmarkReport, compare, write_report
    from ftcore.jobs.evaluation import write_outputs

    pytest.importorskip("peft")
    run = make_run(tmp_path_factory.mktemp("runs") / "evaluated", tiny_model_dir, hub_id="acme/tiny-llama")
    config = yaml.safe_load((run / "ft_config.yaml").read_text())
    config["data"]["cache_dir"] = str(run.parent / "private-cache")
    (run / "ft_config.yaml").write_text(yaml.safe_dump(config))
    held_out = str(run.parent / "held_out.jsonl")
    ci = {"rougeL": {"low": 0.31, "high": 0.47, "level": 0.95, "resamples": 1000}}
    write_outputs(evaluation(str(run), held_out, {"rougeL": 0.39, "perplexity": 8.5}, ci), run / "eval")
    base = evaluation("acme/tiny-llama", held_out, {"rougeL": 0.21, "perplexity": 11.0},
                      {"rougeL": {"low": 0.15, "high": 0.27, "level": 0.95, "resamples": 1000}})
    tuned = evaluation(str(run), held_out, {"rougeL": 0.39, "perplexity": 8.5}, ci)
    write_report(BenchmarkReport(base, tuned, held_out, "--data", compare(base, tuned), run / "benchmark"), samples=0)
    write_loss_curve([{"step": 1, "loss": 6.1}, {"step": 3, "loss": 5.7}], run / "loss.png")
    return run


def test_card_parses_back_with_model_index(evaluated_run: Path) -> None:
    from fthub.card import model_card
    from huggingface_hub import ModelCard

    from ftcore import load_run

    text = str(model_card(load_run(evaluated_run), "alice/tiny-lora", "acme/tiny-llama", license="apache-2.0"))
    card = ModelCard(text)
    assert card.data.base_model == "acme/tiny-llama" and card.data.license == "apache-2.0"
    assert card.data.library_name == "peft" and card.data.pipeline_tag == "text-generation"
    assert {"ft", "lora", "adapter"} <= set(card.data.tags) and card.data.datasets == ["tatsu-lab/alpaca"]
    results = {(r.metric_type, r.metric_value, r.metric_name) for r in card.data.eval_results}
    assert results == {("rougeL", 0.39, "rougeL (95% CI 0.31 to 0.47)"), ("perplexity", 8.5, "perplexity")}
    assert {(r.dataset_name, r.dataset_revision) for r in card.data.eval_results} == {("held_out.jsonl", "sha256:feedbeef")}
    body = card.text
    assert "| rougeL (↑) | 0.21 [0.15, 0.27] | 0.39 [0.31, 0.47] | +0.18 |" in body
    assert "![training curve: loss per step](loss.png)" in body and "| method_options.r | `4` |" in body
    assert "Not evaluated" not in body and "cache" not in body and str(evaluated_run.parent) not in text
    assert "| data.chat_template | `the base tokenizer's (ChatML when it has none)` |" in body


def test_card_loading_snippet_runs(evaluated_run: Path, tiny_model_dir: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    """The card's Python, with the two Hub ids pointed at local copies, loads the adapter and generates."""
    import re

    from fthub.upload import stage

    plan = stage(evaluated_run, "alice/tiny-lora", tmp_path / "staged")
    code = re.search(r"## How to use\n\n```python\n(.*?)```", plan.card, re.S).group(1)
    code = code.replace('"acme/tiny-llama"', repr(str(tiny_model_dir))).replace('"alice/tiny-lora"', repr(str(plan.folder)))
    code = code.replace("max_new_tokens=64", "max_new_tokens=4")
    exec(compile(code, "card-snippet", "exec"), {})
    assert capsys.readouterr().out.strip()
    assert json.loads((plan.folder / "adapter_config.json").read_text())["base_model_name_or_path"] == "acme/tiny-llama"


def test_unknown_base_asks_for_base_model(tmp_path: Path, tiny_model_dir: Path) -> None:
    from fthub.upload import dry_run, stage

    from ftcore import UsageError

    pytest.importorskip("peft")
    run = make_run(tmp_path / "local-base", tiny_model_dir)
    with pytest.raises(UsageError) as error:
        dry_run(run, "alice/x")
    message = str(error.value)  # the CLI prints it as one line, exit status 2 (docs/howto/merge-upload.md runs it)
    assert error.value.exit_code == 2 and "\n" not in message and str(tiny_model_dir) not in message
    assert "tiny-llama" in message and "its Hub id is unknown" in message and "--base-model ORG/NAME" in message
    with pytest.raises(UsageError, match="expected the base model's Hub id"):
        stage(run, "alice/x", tmp_path / "bad", base_model=str(tiny_model_dir))
    plan = stage(run, "alice/x", tmp_path / "staged", base_model="acme/other", license="mit")
    assert front_matter(plan.card)["base_model"] == "acme/other" and front_matter(plan.card)["license"] == "mit"
    assert json.loads((plan.folder / "adapter_config.json").read_text())["base_model_name_or_path"] == "acme/other"
    assert str(tiny_model_dir) not in "".join(p.read_text(errors="ignore") for p in plan.folder.glob("*.json"))


# ----------------------------------------------------------------------------- what leaves the machine (issue 32)


def test_gguf_exports_go_only_when_asked(full_run: Path, tmp_path: Path) -> None:
    """GGUF exports are listed as left out by default, sent with --include-gguf, and their parity report loses the
    run's absolute path."""
    exported = sorted(p.relative_to(full_run).as_posix() for p in (full_run / "export").iterdir())
    dry = ft(["upload", str(full_run), "--repo-id", "alice/tiny-full", "--dry-run"], None, tmp_path)
    assert dry.returncode == 0, dry.stderr
    listed, left = dry.stdout.split("Left out (3 GGUF export files; --include-gguf sends them):")
    assert all(name not in listed for name in exported) and all(name in left.split("--- README.md")[0] for name in exported)
    with HubEmulator({TOKEN: "alice"}) as hub:
        plain = ft(["upload", str(full_run), "--repo-id", "alice/tiny-full"], hub, tmp_path)
        assert plain.returncode == 0, plain.stderr
        with_gguf = ft(["upload", str(full_run), "--repo-id", "alice/tiny-gguf", "--include-gguf"], hub, tmp_path)
        assert with_gguf.returncode == 0, with_gguf.stderr
        plain_files, gguf_files = hub.repos["alice/tiny-full"].files, hub.repos["alice/tiny-gguf"].files
    assert "model.safetensors" in plain_files and not any(name.startswith("export/") for name in plain_files)
    assert "Left out (3 GGUF export files" in plain.stdout and "Left out" not in with_gguf.stdout
    assert set(exported) <= set(gguf_files)
    assert gguf_files[exported[0]] == (full_run / exported[0]).read_bytes()  # the GGUF itself, unchanged
    parity = json.loads(gguf_files[next(n for n in exported if n.endswith(".parity.json"))])
    assert parity["run"] == "full-run" and parity["passed"] is True
    assert json.loads((full_run / exported[-1]).read_text())["run"] == str(full_run.resolve())  # the run is left alone


def test_nothing_sent_holds_a_machine_path(full_run: Path, tmp_path: Path) -> None:
    """The manifest, config and evaluation name files relative to the run or by name only, never by path."""
    with HubEmulator({TOKEN: "alice"}) as hub:
        result = ft(["upload", str(full_run), "--repo-id", "alice/paths", "--include-gguf"], hub, tmp_path)
        assert result.returncode == 0, result.stderr
        files = hub.repos["alice/paths"].files
    root = str(full_run.parent)
    assert [name for name, content in files.items() if root.encode() in content] == []
    config, manifest = yaml.safe_load(files["ft_config.yaml"]), json.loads(files["ft_run.json"])
    assert config["model"] == "acme/tiny-llama" and config["output_dir"] == "full-run"
    assert config["data"]["train"] == "train.jsonl" and config["data"]["cache_dir"] == "private-cache"
    assert manifest["logs"] == "logs" and manifest["base_model"] == "acme/tiny-llama"
    evaluation = json.loads(files["eval/eval.json"])
    assert evaluation["model"] == "full-run" and evaluation["data"] == "held_out.jsonl"
    assert root in (full_run / "ft_config.yaml").read_text()  # only the staged copies are rewritten


def test_a_file_with_a_machine_path_stops_the_upload(full_run: Path, tmp_path: Path) -> None:
    import shutil

    run = tmp_path / "noted-run"
    shutil.copytree(full_run, run)
    (run / "notes.txt").write_text(f"trained from {run.resolve()}/checkpoints\n")
    with HubEmulator({TOKEN: "alice"}) as hub:
        result = ft(["upload", str(run), "--repo-id", "alice/noted"], hub, tmp_path)
        assert [r.path for r in hub.requests] == ["/api/whoami-v2"] and not hub.repos
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1
    assert lines[0] == "error: notes.txt holds a path of this machine; remove it from noted-run (or the file) before uploading"


def test_card_train_loss_is_the_runs_mean_with_the_last_value_beside_it(full_run: Path) -> None:
    from fthub.card import model_card

    from ftcore import load_run

    text = str(model_card(load_run(full_run), "alice/tiny-full", "acme/tiny-llama"))
    assert f"| train_loss | `{TRAIN_LOSS_MEAN}` |\n| train_loss_last_logged | `{LOGGED[-1]['loss']}` |" in text
    assert text.count("0123456789abcdef") == 1 and "- kept: 12" in text
    assert "library_name: transformers" in text and "PeftModel" not in text and "peft" not in text.split("## Framework")[0]


def test_an_unreachable_hub_is_one_line(full_run: Path, tmp_path: Path) -> None:
    import socket

    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HOME=str(tmp_path), HF_HUB_OFFLINE="0", HF_TOKEN=TOKEN, HF_ENDPOINT=f"http://127.0.0.1:{port}")
    result = subprocess.run([sys.executable, "-m", "ftcore", "upload", str(full_run), "--repo-id", "alice/x"],
                            env=env, capture_output=True, text=True, timeout=120)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: cannot reach the Hub at http://127.0.0.1:{port} (ConnectError)")
    assert "unexpected" not in result.stderr and TOKEN not in result.stderr


# ----------------------------------------------------------------------------- the command and the plugin


def test_upload_without_repo_id_is_a_usage_error(tmp_path: Path) -> None:
    result = ft(["upload", str(tmp_path)], None, tmp_path)
    assert result.returncode == 2 and "--repo-id" in result.stderr and "Traceback" not in result.stderr


def test_plugins_lists_fthub_with_its_command(tmp_path: Path) -> None:
    listing = ft(["plugins", "--json"], None, tmp_path)
    fthub = next(p for p in json.loads(listing.stdout)["plugins"] if p["dist"] == "fthub")
    assert fthub["commands"] == ["upload"]
    help_line = next(line for line in ft(["--help"], None, tmp_path).stdout.splitlines() if line.strip().startswith("upload"))
    assert "[fthub]" in help_line


def test_without_fthub_upload_names_the_distribution(tmp_path: Path) -> None:
    env = {**os.environ, "FT_PLUGINS": "-fthub"}
    result = subprocess.run([sys.executable, "-m", "ftcore", "upload", str(tmp_path), "--repo-id", "alice/x"],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert [line for line in result.stderr.splitlines() if "fthub" in line] == [
        "error: `ft upload` is added by the fthub plugin distribution, which is not installed: pip install fthub "
        "(or ./plugins/fthub from ft's repository)"]


def test_hub_token_never_leaks(tiny_model_dir: Path, tmp_path: Path) -> None:
    """A recognisable fake token in HF_TOKEN appears in no output and no file of a trained run's upload, dry run,
    refused upload or unreachable Hub (a real ``ft train`` run, so ftlora is needed)."""
    pytest.importorskip("ftlora", reason="training a run needs the ftlora plugin")
    fake = "hf_LeakCanary0123456789abcdefFAKE"
    (tmp_path / "train.jsonl").write_text("".join(json.dumps({"text": f"Reverse: a b {i} -> {i} b a"}) + "\n" for i in range(8)))
    run = tmp_path / "run"
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({
        "model": str(tiny_model_dir), "method": "lora", "output_dir": str(run),
        "data": {"train": str(tmp_path / "train.jsonl"), "max_seq_len": 32, "cache_dir": str(tmp_path / "cache")},
        "training": {"max_steps": 2, "batch_size": 4, "logging_steps": 1, "save_steps": 1}}))
    home = tmp_path / "hf-home"
    base = ["--base-model", "org/tiny-llama"]  # the base is a local copy: the upload names the Hub model it stands for
    outputs = [ft(["-v", "train", "-c", str(tmp_path / "c.yaml")], None, home, token=fake)]
    assert outputs[0].returncode == 0, outputs[0].stderr[-2000:]
    outputs.append(ft(["-v", "upload", str(run), "--repo-id", "alice/leak-test", *base, "--dry-run"], None, home, token=fake))
    assert outputs[-1].returncode == 0, outputs[-1].stderr
    with HubEmulator({fake: "alice"}) as hub:
        outputs.append(ft(["-v", "upload", str(run), "--repo-id", "alice/leak-test", *base], hub, home, token=fake))
        assert outputs[-1].returncode == 0, outputs[-1].stderr
        outputs.append(ft(["-v", "upload", str(run), "--repo-id", "bob/not-yours", *base], hub, home, token=fake))
        assert outputs[-1].returncode == 1 and "error:" in outputs[-1].stderr
        published = hub.repos["alice/leak-test"].files
    manifest = json.loads(published["ft_run.json"])
    card = published["README.md"].decode()
    assert f"| train_loss | `{round(manifest['train_loss_mean'], 4)}` |" in card
    for result in outputs:
        assert fake not in result.stdout + result.stderr
    assert [str(p) for p in tmp_path.rglob("*") if p.is_file() and not p.is_symlink() and fake.encode() in p.read_bytes()] == []
    assert "adapter_model.safetensors" in published and "ft_run.json" in published
    assert [name for name, content in published.items() if fake.encode() in content or str(tmp_path).encode() in content] == []


def test_upload_help_imports_nothing_heavy(tmp_path: Path) -> None:
    """``ft --help`` imports fthub's command module: it must not load torch, transformers or huggingface_hub."""
    code = ("import sys\nfrom ftcore.cli import main\ntry:\n    main(['upload', '--help'])\nexcept SystemExit:\n    pass\n"
            "print('HEAVY=' + ','.join(m for m in ('torch', 'transformers', 'peft', 'huggingface_hub') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "--include-gguf" in out.stdout and out.stdout.splitlines()[-1] == "HEAVY=", out.stdout + out.stderr
