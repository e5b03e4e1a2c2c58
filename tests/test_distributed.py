"""Several processes: `ft train` under torchrun and accelerate (2-rank DDP over gloo on CPU), `ft train --nproc`,
resume after a SIGKILL of the whole job, and the config checks and TrainingArguments of FSDP/DeepSpeed.

The multi-process runs share one config (24 optimizer steps: 64 examples, batch 4 per rank, 2 ranks, 3 epochs).
Data parallelism is checked by its arithmetic: 2 ranks x batch 4 make 8 steps per epoch (one process would
take 16), and the tokens counted across ranks equal the data's tokens once per epoch (not twice).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from train_helpers import logged_losses, run_config, siblings, write_config, write_reversal_text

from ftcore.config.schema import build_config
from ftcore.errors import ConfigError
from ftcore.run import distributed, launch
from ftcore.testing.suites import answer_loss

ROOT = Path(__file__).resolve().parents[1]
STEPS = 24
# fp32: the runs are compared with each other to 1e-5, and "auto" autocasts to bf16 on CPUs with AVX512_BF16.
SETTINGS = {"max_steps": STEPS, "save_steps": 4, "logging_steps": 1, "save_total_limit": 3, "precision": "fp32"}


def job_env(cache: Path) -> dict[str, str]:
    # One thread per rank: two ranks on two cores, and no warning from the launchers about it.
    return {**os.environ, "HF_HUB_OFFLINE": "1", "FT_CACHE_DIR": str(cache), "OMP_NUM_THREADS": "1"}


def torchrun(*ft_args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
            "-m", "ftcore.cli", *ft_args]


def accelerate(*ft_args: str) -> list[str]:
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "ftcore.cli", *ft_args]


def run_job(argv: list[str], env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=400)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    return output


def job_setup(tmp: Path, model: Path, **training: object) -> Path:
    """Data and config for a 2-process run into ``tmp/run``; returns the config path."""
    data = write_reversal_text(tmp / "train.jsonl")
    return write_config(tmp / "c.yaml", run_config(model, data, tmp / "run", **SETTINGS, **training))


def check_run(tmp: Path, output: str, fresh_cache: bool = True) -> dict:
    """What every finished 2-process run must show; returns its manifest."""
    for rank in (0, 1):
        assert f"rank {rank}/2: step {STEPS}/{STEPS} loss" in output, output[-3000:]
        assert f"rank {rank}/2: finished at step {STEPS}" in output
    # The first process tokenized the data (unless an earlier run did); the second found its cache.
    first = "data tokenized" if fresh_cache else "data loaded from cache"
    assert f"rank 0/2: {first}" in output and "rank 1/2: data loaded from cache" in output
    run = tmp / "run"
    assert siblings(run) == ["run"]  # one run directory, no staging or per-rank leftovers
    assert output.count("run saved to") == 1
    manifest = json.loads((run / "ft_run.json").read_text())
    stats = manifest["data"]["stats"]
    assert manifest["status"] == "complete" and manifest["hardware"]["world_size"] == 2
    assert manifest["global_step"] == STEPS == 3 * 64 // (2 * 4)
    assert manifest["tokens_seen"] == 3 * stats["train"]["tokens"]
    checkpoint = run / "checkpoints" / f"checkpoint-{STEPS}"
    assert {"rng_state_0.pth", "rng_state_1.pth"} <= {p.name for p in checkpoint.iterdir()}
    return manifest


def assert_adapter_reloads(run: Path, model: Path) -> None:
    """The adapter loads with plain peft onto the base and changes its output."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    ids = torch.tensor([[5, 17, 42, 99, 7, 3, 250, 11]])
    base = AutoModelForCausalLM.from_pretrained(model)
    with torch.no_grad():
        before = base(input_ids=ids).logits.clone()
        tuned = PeftModel.from_pretrained(base, run)
        after = tuned(input_ids=ids).logits
    assert not torch.allclose(before, after, atol=1e-4)


@pytest.fixture(scope="module")
def torchrun_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> tuple[Path, str]:
    """One 2-process LoRA run through torchrun (the reference the other runs compare with)."""
    tmp = tmp_path_factory.mktemp("torchrun")
    config = job_setup(tmp, tiny_model_dir)
    return tmp, run_job(torchrun("train", "-c", str(config)), job_env(tmp / "cache"), tmp)


# ----------------------------------------------------------------------------- real multi-process runs


@pytest.mark.slow
def test_torchrun_two_processes_train_one_run(torchrun_run: tuple[Path, str], tiny_model_dir: Path) -> None:
    tmp, output = torchrun_run
    check_run(tmp, output)
    losses = logged_losses(tmp / "run")
    assert len(losses) == STEPS, losses
    # Learned, judged on fixed rows rather than on the last logged loss: 6.28 -> 5.58 measured on an AMD EPYC.
    drop = answer_loss(tiny_model_dir, tmp / "run") - answer_loss(tmp / "run", tmp / "run")
    assert drop > 0.25, drop
    assert_adapter_reloads(tmp / "run", tiny_model_dir)


@pytest.mark.slow
def test_accelerate_two_processes_train_one_run(torchrun_run: tuple[Path, str], tmp_path: Path,
                                                tiny_model_dir: Path) -> None:
    # Passes of at most 24 tokens: each micro-batch runs in slices, gradients synchronised after the last one only.
    config = job_setup(tmp_path, tiny_model_dir, micro_batch_tokens=24)
    output = run_job(accelerate("train", "-c", str(config)), job_env(tmp_path / "cache"), tmp_path)
    check_run(tmp_path, output)
    passes = re.search(r"training.micro_batch_tokens 24: 24 micro-batches ran in (\d+) passes", output)
    assert passes and int(passes.group(1)) > 24, output[-3000:]
    # Same data-parallel engine, same seed, same gradients: the same losses as under torchrun (whole micro-batches).
    assert logged_losses(tmp_path / "run") == pytest.approx(logged_losses(torchrun_run[0] / "run"), abs=1e-5)
    assert_adapter_reloads(tmp_path / "run", tiny_model_dir)


def kill_job_after(process: subprocess.Popen, checkpoint: Path, timeout: float = 300) -> None:
    """SIGKILL the launcher and every worker as soon as both ranks have written ``checkpoint``."""
    import psutil

    deadline = time.time() + timeout
    from ftcore.artifacts.rundir import checkpoint_complete

    # Wait for a whole checkpoint: its state file exists before its content is written.
    while not ((checkpoint / "rng_state_1.pth").is_file() and checkpoint_complete(checkpoint)):
        if process.poll() is not None:
            pytest.fail(f"the job ended before {checkpoint.name}:\n{process.stdout.read()[-3000:]}")
        if time.time() > deadline:
            process.kill()
            pytest.fail(f"no {checkpoint.name} within {timeout}s")
        time.sleep(0.01)
    tree = psutil.Process(process.pid)
    for proc in [tree, *tree.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(signal.SIGKILL)
    process.wait()


@pytest.mark.slow
def test_ft_train_nproc_killed_then_resumed(torchrun_run: tuple[Path, str], tmp_path: Path,
                                            tiny_model_dir: Path) -> None:
    """`ft train --nproc 2` (torchrun) killed after checkpoint-4, resumed with `--launcher accelerate`."""
    config = job_setup(tmp_path, tiny_model_dir)
    env = job_env(tmp_path / "cache")
    ft = [sys.executable, "-m", "ftcore", "train", "-c", str(config), "--nproc", "2"]
    process = subprocess.Popen(ft, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    kill_job_after(process, tmp_path / ".run.tmp-partial" / "checkpoints" / "checkpoint-4")
    # SIGKILL leaves rank 0's run lock behind; its process is gone, so the resumed job takes it over.
    assert siblings(tmp_path / "run") == [".run.ft-lock", ".run.tmp-partial"]

    output = run_job([*ft, "--launcher", "accelerate", "--resume"], env, tmp_path)
    manifest = check_run(tmp_path, output, fresh_cache=False)
    assert "rank 1/2: training from step 4 to 24" in output or "rank 1/2: training from step 8 to 24" in output
    assert manifest["resumed_from"].endswith(("checkpoint-4", "checkpoint-8"))
    # Each rank's data order and random state came back: the same losses as the uninterrupted run.
    assert logged_losses(tmp_path / "run") == pytest.approx(logged_losses(torchrun_run[0] / "run"), abs=1e-4)
    assert_adapter_reloads(tmp_path / "run", tiny_model_dir)


# ----------------------------------------------------------------------------- launcher command lines


def test_torchrun_command_lines_parse_as_torchrun_reads_them() -> None:
    from torch.distributed.run import get_args_parser

    single = launch.launcher_argv("torchrun", launch.Layout(4), ["train", "-c", "x.yaml"])
    args = get_args_parser().parse_args(single[3:])
    assert single[:3] == [sys.executable, "-m", "ftcore.run.torchrun"]
    assert (args.nproc_per_node, args.standalone, args.module) == ("4", True, True)
    assert [args.training_script, *args.training_script_args] == ["ftcore.cli", "train", "-c", "x.yaml"]

    static = launch.launcher_argv("torchrun", launch.Layout(8, 2, 1, "10.0.0.1", 29400), ["train"])
    args = get_args_parser().parse_args(static[3:])
    assert (args.nnodes, args.node_rank, args.master_addr, args.master_port, args.standalone) == ("2", 1, "10.0.0.1", 29400, False)
    assert args.rdzv_conf == f"timeout={launch.RENDEZVOUS_TIMEOUT_S}"

    elastic = launch.launcher_argv("torchrun", launch.Layout(8, 2, None, "head"), ["train"])
    args = get_args_parser().parse_args(elastic[3:])
    assert (args.rdzv_backend, args.rdzv_endpoint) == ("c10d", "head:29500")
    assert args.rdzv_conf == f"join_timeout={launch.RENDEZVOUS_TIMEOUT_S}"


def test_accelerate_command_lines_parse_as_accelerate_reads_them() -> None:
    from accelerate.commands.launch import launch_command_parser

    argv = launch.launcher_argv("accelerate", launch.Layout(4, 2, 1, "10.0.0.1", 29400), ["train", "-c", "x.yaml"])
    args = launch_command_parser().parse_args(argv[3:])
    assert (args.num_processes, args.num_machines, args.machine_rank, args.multi_gpu, args.module) == (8, 2, 1, True, True)
    assert (args.main_process_ip, args.main_process_port) == ("10.0.0.1", 29400)
    assert [args.training_script, *args.training_script_args] == ["ftcore.cli", "train", "-c", "x.yaml"]
    with pytest.raises(Exception, match="needs --master-addr"):
        launch.launcher_argv("torchrun", launch.Layout(2, 2), ["train"])


def test_nproc_passes_every_other_option_through(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The launcher gets the same command line minus the launch options (the exec itself is the OS boundary)."""
    from ftcore.cli import main
    from ftcore.contract import plugins
    from ftcore.util.logs import setup_logging

    # The config and the checkpoint to resume are checked once before the launcher starts: give it both.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.yaml").write_text("model: m\noutput_dir: run\ndata:\n  train: d.jsonl\n")
    checkpoint = tmp_path / ".run.tmp-partial" / "checkpoints" / "checkpoint-1"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text('{"global_step": 1}')
    started: list[list[str]] = []
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(launch, "exec_launcher", started.append)
    try:
        with pytest.raises(SystemExit) as exit_info:
            main(["-v", "--disable", "ftmetrics", "train", "-c", "c.yaml", "--set", "seed=1", "--set",
                  "training.max_steps=5", "--resume", "--nproc", "2", "--launcher", "accelerate"])
    finally:
        plugins.disable(())
        setup_logging(0)
    assert exit_info.value.code == 0
    (argv,) = started
    assert argv[argv.index("ftcore.cli") + 1:] == [
        "--verbose", "--disable", "ftmetrics", "train", "--config", "c.yaml", "--set", "seed=1",
        "--set", "training.max_steps=5", "--resume", "latest"]
    assert "--num_processes" in argv and argv[argv.index("--num_processes") + 1] == "2"


def test_launch_options_need_nproc_and_no_launcher_around() -> None:
    from ftcore.testing.process import run_ft

    done = run_ft("train", "-c", "c.yaml", "--node-rank", "1")
    assert done.returncode == 2 and "--node-rank needs --nproc" in done.stderr
    done = run_ft("train", "-c", "c.yaml", "--nproc", "2", env={"WORLD_SIZE": "2"})
    assert done.returncode == 2 and "already started by a launcher" in done.stderr


# ----------------------------------------------------------------------------- config checks


def config_with(tmp_path: Path, **training) -> object:
    raw = run_config(tmp_path / "model", tmp_path / "train.jsonl", tmp_path / "run")
    raw["training"].update(training)
    return build_config(raw)


def test_fsdp_and_deepspeed_together_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="training: fsdp and deepspeed are both set"):
        config_with(tmp_path, fsdp={"sharding": "full_shard"}, deepspeed={"zero_optimization": {"stage": 2}})


def test_deepspeed_batch_numbers_must_match_the_world(tmp_path: Path) -> None:
    ds = tmp_path / "ds.json"
    ds.write_text(json.dumps({"train_batch_size": 8, "train_micro_batch_size_per_gpu": 4, "gradient_accumulation_steps": 1}))
    config = config_with(tmp_path, deepspeed=str(ds))
    distributed.check_layout(config, processes=2)  # 4 x 1 x 2 = 8
    with pytest.raises(ConfigError, match=r"train_batch_size: 8 does not match .* 4 processes = 16"):
        distributed.check_layout(config, processes=4)
    ds.write_text('{"train_batch_size": "auto",\n "zero_optimization": {stage: 2}}')
    with pytest.raises(ConfigError, match=r"ds.json:2: not valid JSON"):
        distributed.check_layout(config, processes=2)


def test_example_deepspeed_configs_fit_any_world(tmp_path: Path) -> None:
    for name, stage in (("deepspeed-zero2.json", 2), ("deepspeed-zero3.json", 3)):
        path = ROOT / "examples" / "configs" / name
        assert distributed.load_deepspeed(str(path))["zero_optimization"]["stage"] == stage
        for processes in (1, 2, 8):
            distributed.check_layout(config_with(tmp_path, deepspeed=str(path)), processes=processes)


def test_too_little_data_for_the_processes_is_a_config_error(tmp_path: Path) -> None:
    config = config_with(tmp_path, batch_size=4)
    distributed.check_data_fits(config, rows=8, processes=2)
    with pytest.raises(ConfigError, match="2 processes x batch_size 4 need at least 8 training examples.*has 5"):
        distributed.check_data_fits(config, rows=5, processes=2)


def test_unknown_fsdp_key_suggests_the_right_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"training.fsdp.shardng: unknown key \(did you mean 'sharding'\?\)"):
        distributed.check_layout(config_with(tmp_path, fsdp={"shardng": "full_shard"}), processes=2)
    with pytest.raises(ConfigError, match="hybrid_shard needs FSDP1"):
        distributed.check_layout(config_with(tmp_path, fsdp={"sharding": "hybrid_shard"}), processes=2)


def test_fsdp_without_a_gpu_is_a_config_error(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    with pytest.raises(ConfigError, match="training.fsdp: FSDP shards a model over GPUs and none is visible"):
        distributed.check_layout(config_with(tmp_path, fsdp={}), processes=2)


# ----------------------------------------------------------------------------- TrainingArguments


@pytest.mark.parametrize(("sharding", "reshard"), [("full_shard", True), ("shard_grad_op", False)])
def test_fsdp_wraps_the_models_decoder_layer(sharding: str, reshard: bool, tmp_path: Path, tiny_model_dir: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from ftcore.run.arguments import training_arguments

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir), LoraConfig(r=4, target_modules=["q_proj"]))
    config = config_with(tmp_path, fsdp={"sharding": sharding, "activation_checkpointing": True})
    args = training_arguments(config, tmp_path / "ckpt", False, model=model)
    assert args.fsdp and args.fsdp_config["transformer_layer_cls_to_wrap"] == ["LlamaDecoderLayer"]
    assert args.fsdp_plugin_args["auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    assert args.fsdp_plugin_args["transformer_cls_names_to_wrap"] == "LlamaDecoderLayer"
    assert args.fsdp_plugin_args["reshard_after_forward"] is reshard
    assert args.fsdp_plugin_args["activation_checkpointing"] is True


# ----------------------------------------------------------------------------- ends of a job: signals, rendezvous


def test_worker_status_as_the_shell_reports_it() -> None:
    from ftcore.run.torchrun import child_status

    assert (child_status(143), child_status(-9), child_status(2), child_status(0)) == (143, 137, 2, 1)


def test_machine_alone_in_a_rendezvous_ends_with_one_line(tmp_path: Path, tiny_model_dir: Path) -> None:
    """Machine 0 of 2 whose partner never comes (it failed before the group formed): a bounded wait, one line."""
    config = job_setup(tmp_path, tiny_model_dir)
    env = {**job_env(tmp_path / "cache"), "FT_RENDEZVOUS_TIMEOUT": "3"}
    port = 29700 + os.getpid() % 200
    # FT_RENDEZVOUS_TIMEOUT=3 is honoured when the job ends before the default 300 s wait would: the 200 s
    # timeout guards that without timing the run (a loaded machine starts processes slowly).
    done = subprocess.run([sys.executable, "-m", "ftcore", "-q", "train", "-c", str(config), "--nproc", "1",
                           "--nnodes", "2", "--node-rank", "0", "--master-addr", "127.0.0.1", "--master-port",
                           str(port)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=200)
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert f"did not all join at 127.0.0.1:{port} (--nnodes 2)" in errors[0]


@pytest.mark.slow
def test_sigterm_under_the_launcher_exits_143_with_one_line(tmp_path: Path, tiny_model_dir: Path) -> None:
    config = job_setup(tmp_path, tiny_model_dir)
    ft = [sys.executable, "-m", "ftcore", "train", "-c", str(config), "--nproc", "2"]
    process = subprocess.Popen(ft, env=job_env(tmp_path / "cache"), cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    for line in process.stdout:
        if line.startswith("step 2/"):
            break
    process.send_signal(signal.SIGTERM)
    rest = process.stdout.read()
    assert process.wait(timeout=300) == 143, rest[-3000:]
    errors = [line for line in rest.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in rest, rest[-3000:]
    assert errors[0].startswith("error: training interrupted by SIGTERM at step ")
    assert rest.count("SIGTERM received") == 1, rest[-3000:]  # said once, by rank 0, though both ranks stop


def test_rank_that_cannot_see_the_output_fails_every_rank(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rank 1 on another machine whose output_dir is not shared: every rank gets the same one-line error.

    The collectives are replaced by what two machines without shared storage would exchange; the real
    collectives run in every 2-process test above (where the storage is shared and the check passes).
    """
    import torch.distributed as dist

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setattr(distributed, "_state", lambda: None)
    monkeypatch.setattr(dist, "broadcast_object_list", lambda objects, src: objects.__setitem__(0, "token-of-rank-0"))

    def gather(views, mine):
        views[:] = [(True, "node-a"), mine]

    monkeypatch.setattr(dist, "all_gather_object", gather)
    monkeypatch.setattr("socket.gethostname", lambda: "node-b")
    staging = tmp_path / ".run.tmp-partial"
    staging.mkdir()  # this machine's own, empty directory of the same name
    with pytest.raises(ConfigError, match=r"output_dir: rank 1 on node-b cannot see .*\.run\.tmp-partial, which "
                                          r"rank 0 created; output_dir must be on storage that every machine shares"):
        distributed.check_shared_output(staging)


def test_sharded_weights_are_saved_in_the_dtype_they_loaded_in(tmp_path: Path, tiny_model_dir: Path) -> None:
    """FSDP keeps trainable weights in float32; the saved model goes back to the dtype it loaded in (bfloat16 here)."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM

    from ftcore.run.distributed import cast_saved_weights

    saved = tmp_path / "saved"
    shutil.copytree(tiny_model_dir, saved)
    (saved / "adapter_model.safetensors").write_bytes((saved / "model.safetensors").read_bytes())
    fp32 = AutoModelForCausalLM.from_pretrained(saved, dtype=torch.float32)
    assert cast_saved_weights(saved, None) == "float32"  # no dtype asked: reported, left alone
    assert cast_saved_weights(saved, "bfloat16") == "bfloat16"
    model = AutoModelForCausalLM.from_pretrained(saved, dtype="auto")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert json.loads((saved / "config.json").read_text())["dtype"] == "bfloat16"
    for name, param in model.named_parameters():
        assert torch.equal(param, dict(fp32.named_parameters())[name].to(torch.bfloat16)), name
    assert (saved / "adapter_model.safetensors").read_bytes() == (tiny_model_dir / "model.safetensors").read_bytes()
    assert cast_saved_weights(saved, "bfloat16") == "bfloat16"  # already there: nothing rewritten


def test_a_rank_leaves_its_process_group_when_its_part_is_done(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Exiting with a live gloo group aborts a rank now and then (SIGABRT, "terminate called without an active
    # exception"; 3 of 30 processes in a probe), which torchrun answers by stopping the whole job.
    import torch.distributed as dist

    monkeypatch.setenv("WORLD_SIZE", "2")
    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1)
    try:
        distributed.leave()
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    distributed.leave()  # nothing to leave: a no-op, not an error
