"""``ft train --nproc N``: hand the same command line to torchrun or accelerate, never a launcher of ft's own.

The ``launch_options`` decorator adds ``--nproc``, ``--nnodes``, ``--node-rank``, ``--master-addr``,
``--master-port`` and ``--launcher`` to a click command. When ``--nproc`` is given the command does not run
here: the process is replaced (``os.execvp``) by torchrun (``python -m ftcore.run.torchrun``: torchrun itself,
ended with ft's exit statuses and no launcher traceback) or ``python -m accelerate.commands.launch`` running
``-m ftcore.cli`` with the same options minus the launch ones, so each worker runs the ordinary command.
Several machines meet within ``RENDEZVOUS_TIMEOUT_S`` (``FT_RENDEZVOUS_TIMEOUT``), then the job ends with one
line naming where it waited. Imports click only.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click
from click.core import ParameterSource

from ftcore.errors import UsageError

LAUNCH_PARAMS = ("nproc", "nnodes", "node_rank", "master_addr", "master_port", "launcher")


@dataclass(frozen=True)
class Layout:
    """Where the processes run: per machine, how many machines, this machine's index, the rendezvous host."""

    nproc: int
    nnodes: int = 1
    node_rank: int | None = None
    master_addr: str | None = None
    master_port: int = 29500


#: Seconds the machines of a multi-machine job wait for each other to join before the job ends.
RENDEZVOUS_TIMEOUT_S = 300


def rendezvous_timeout() -> int:
    """``FT_RENDEZVOUS_TIMEOUT`` seconds, else :data:`RENDEZVOUS_TIMEOUT_S`."""
    value = os.environ.get("FT_RENDEZVOUS_TIMEOUT", "")
    if not value:
        return RENDEZVOUS_TIMEOUT_S
    if not value.isdigit() or int(value) < 1:
        raise UsageError(f"FT_RENDEZVOUS_TIMEOUT must be a whole number of seconds, got {value!r}")
    return int(value)


def torchrun_argv(layout: Layout, ft_args: list[str]) -> list[str]:
    """``python -m ftcore.run.torchrun ... -m ftcore.cli <ft_args>`` (torchrun's own arguments) for ``layout``."""
    argv = [sys.executable, "-m", "ftcore.run.torchrun", "--nproc-per-node", str(layout.nproc)]
    if layout.nnodes == 1 and layout.master_addr is None:
        argv.append("--standalone")  # a private rendezvous on a free port: runs side by side never collide
    elif layout.node_rank is not None:
        argv += ["--nnodes", str(layout.nnodes), "--node-rank", str(layout.node_rank),
                 "--master-addr", layout.master_addr or "127.0.0.1", "--master-port", str(layout.master_port),
                 "--rdzv-conf", f"timeout={rendezvous_timeout()}"]
    else:  # elastic rendezvous: torchrun numbers the machines itself
        argv += ["--nnodes", str(layout.nnodes), "--rdzv-backend", "c10d",
                 "--rdzv-endpoint", f"{layout.master_addr}:{layout.master_port}", "--rdzv-id", "ft-train",
                 "--rdzv-conf", f"join_timeout={rendezvous_timeout()}"]
    return argv + ["-m", "ftcore.cli", *ft_args]


def accelerate_argv(layout: Layout, ft_args: list[str]) -> list[str]:
    """``python -m accelerate.commands.launch ... -m ftcore.cli <ft_args>`` for ``layout``."""
    total = layout.nproc * layout.nnodes
    argv = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(total),
            "--num_machines", str(layout.nnodes), "--dynamo_backend", "no",
            # ft's training.precision decides mixed precision (TrainingArguments' flags win over this default).
            "--mixed_precision", "no"]
    if total > 1:
        # --multi_gpu is accelerate's name for multi-process DDP; on a machine without GPUs it runs over gloo.
        argv.append("--multi_gpu")
    if layout.nnodes > 1:
        argv += ["--machine_rank", str(layout.node_rank or 0), "--main_process_ip", str(layout.master_addr),
                 "--main_process_port", str(layout.master_port)]
    return argv + ["-m", "ftcore.cli", *ft_args]


def launcher_argv(launcher: str, layout: Layout, ft_args: list[str]) -> list[str]:
    """The full command line that starts ``ft_args`` under ``launcher`` (``torchrun`` or ``accelerate``)."""
    if layout.nproc < 1 or layout.nnodes < 1:
        raise UsageError("--nproc and --nnodes must be at least 1")
    if layout.nnodes > 1 and not layout.master_addr:
        raise UsageError("--nnodes > 1 needs --master-addr, the address of the machine with --node-rank 0")
    if launcher == "accelerate" and layout.nnodes > 1 and layout.node_rank is None:
        raise UsageError("--launcher accelerate on several machines needs --node-rank")
    return (torchrun_argv if launcher == "torchrun" else accelerate_argv)(layout, ft_args)


def replay_args(ctx: click.Context, skip: tuple[str, ...] = ()) -> list[str]:
    """The options of ``ctx`` that were given (not defaults), written back as command-line arguments."""
    args: list[str] = []
    for param in ctx.command.params:
        name = param.name or ""
        if name in skip or not isinstance(param, click.Option):
            continue
        if ctx.get_parameter_source(name) in (ParameterSource.DEFAULT, None):
            continue
        args += _option_args(param, ctx.params.get(name))
    return args


def _option_args(option: click.Option, value: Any) -> list[str]:
    flag = max(option.opts, key=len)  # the long name
    if option.count:
        return [flag] * int(value or 0)
    if option.is_bool_flag:
        if value:
            return [flag]
        return [max(option.secondary_opts, key=len)] if option.secondary_opts else []
    values = value if option.multiple else [value]
    return [part for item in values if item is not None for part in (flag, str(item))]


def command_args(ctx: click.Context) -> list[str]:
    """The whole ``ft`` command line of ``ctx`` (global options, subcommand, its options) without launch options."""
    parent = ctx.parent
    prefix = replay_args(parent) if parent is not None else []
    return [*prefix, ctx.info_name or ctx.command.name or "", *replay_args(ctx, LAUNCH_PARAMS)]


def exec_launcher(argv: list[str]) -> None:
    """Replace this process by the launcher (it forwards signals to, and waits for, the workers)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvp(argv[0], argv)


def launch_options(command: Callable[..., Any] | None = None, *,
                   before_launch: Callable[..., None] | None = None) -> Any:
    """Add the launch options to a click command; with ``--nproc`` it re-runs itself under the launcher.

    :param before_launch: called with the command's own arguments and ``processes`` (the total number of
        processes) before the launcher starts, so that a mistake fails once, here, instead of once per rank.
        Use as ``@launch_options`` or ``@launch_options(before_launch=check)``.
    """
    if command is None:
        return functools.partial(launch_options, before_launch=before_launch)

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values = {name: kwargs.pop(name) for name in LAUNCH_PARAMS}
        if values["nproc"] is None:
            given = [f"--{n.replace('_', '-')}" for n in LAUNCH_PARAMS[1:-1] if values[n] is not None]
            if given:
                raise UsageError(f"{', '.join(given)} needs --nproc (the number of processes per machine)")
            return command(*args, **kwargs)
        if "WORLD_SIZE" in os.environ:
            raise UsageError("--nproc: this process was already started by a launcher (WORLD_SIZE is set); drop --nproc")
        layout = Layout(values["nproc"], values["nnodes"] or 1, values["node_rank"], values["master_addr"],
                        values["master_port"] or 29500)
        argv = launcher_argv(values["launcher"], layout, command_args(click.get_current_context()))
        if before_launch is not None:
            before_launch(*args, processes=layout.nproc * layout.nnodes, **kwargs)
        exec_launcher(argv)
        return None

    options = [
        click.option("--nproc", type=int, default=None, metavar="N",
                     help="Start N training processes on this machine through torchrun/accelerate (data parallel)."),
        click.option("--nnodes", type=int, default=None, metavar="N", help="With --nproc: number of machines."),
        click.option("--node-rank", type=int, default=None, metavar="R",
                     help="With --nproc: this machine's index (0 on the machine at --master-addr)."),
        click.option("--master-addr", default=None, metavar="HOST", help="With --nproc: address of machine 0."),
        click.option("--master-port", type=int, default=None, metavar="PORT", help="With --nproc: rendezvous port (29500)."),
        click.option("--launcher", type=click.Choice(["torchrun", "accelerate"]), default="torchrun", metavar="NAME",
                     help="With --nproc: torchrun (default) or accelerate starts the processes."),
    ]
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper
