"""``ft env``: versions, devices and plugins, to paste into a bug report."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from typing import Any

import click

from ftcore.commands.output import examples, json_option, print_json

#: The libraries whose versions decide how a run behaves, in the order they are shown; then those the installed
#: plugins require (their adapter, trainer and metric libraries).
LIBRARIES = ("torch", "transformers", "accelerate", "datasets", "tokenizers", "huggingface_hub", "safetensors", "gguf",
             "deepspeed", "liger_kernel", "flash_attn", "vllm", "pluggy", "pydantic", "click")

#: Environment variables that change what ft or the libraries do (values of token-like ones are never shown).
VARIABLES = ("HF_HOME", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT",
             "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "TOKENIZERS_PARALLELISM", "FT_DEBUG", "NO_COLOR", "HF_TOKEN")


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu() -> dict[str, Any]:
    """The CPU's model name and the instruction-set flags that decide bf16 speed (Linux; elsewhere what Python knows)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                if model and flags:
                    break
    except OSError:
        pass
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
    return {"model": model, "cores": os.cpu_count(), "flags": [f for f in wanted if f in flags]}


def _devices() -> dict[str, Any]:
    """CUDA/MPS devices as torch sees them, or why torch could not say."""
    try:
        import torch
    except Exception as exc:  # a missing or broken torch is exactly what a bug report needs to show
        return {"error": f"torch failed to import: {type(exc).__name__}: {exc}"}
    devices: dict[str, Any] = {"cuda": [], "cuda_version": torch.version.cuda,
                               "mps": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
                               "threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            devices["cuda"].append({"index": index, "name": props.name, "memory_gb": round(props.total_memory / 2**30, 1),
                                    "capability": f"{props.major}.{props.minor}"})
    return devices


def _libraries(registry: Any) -> list[str]:
    """ftcore's libraries, then what the installed plugins require (ft's own plugin distributions left out)."""
    from ftcore.contract.plugins import required_libraries

    plugin_dists = {info.dist for info in registry.plugins}
    required = required_libraries(sorted(plugin_dists - {"ftcore"}))
    return [*LIBRARIES, *(name for name in required if name not in plugin_dists and name != "ftcore")]


def environment() -> dict[str, Any]:
    """Everything ``ft env`` reports."""
    from ftcore import __version__
    from ftcore.contract.plugins import get_registry

    registry = get_registry()
    shown = {}
    for name in VARIABLES:
        if name in os.environ:
            shown[name] = "(set, hidden)" if "TOKEN" in name else os.environ[name]
    return {
        "ftcore": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": _cpu(),
        "devices": _devices(),
        "libraries": {name: _version(name) for name in dict.fromkeys(_libraries(registry))},
        "plugins": [{"name": i.name, "dist": i.dist, "version": i.version} for i in registry.plugins],
        "failed_plugins": [{"name": i.name, "dist": i.dist, "version": i.version, "error": i.error} for i in registry.failed],
        "environment": shown,
    }


def _text(env: dict[str, Any]) -> str:
    cpu, devices = env["cpu"], env["devices"]
    lines = [f"ftcore     {env['ftcore']}", f"python     {env['python']}", f"platform   {env['platform']}",
             f"cpu        {cpu['model']} ({cpu['cores']} cores; {', '.join(cpu['flags']) or 'no avx2/avx512/amx'})"]
    if "error" in devices:
        lines.append(f"devices    {devices['error']}")
    else:
        cuda = "; ".join(f"cuda:{d['index']} {d['name']} {d['memory_gb']} GB (sm {d['capability']})"
                         for d in devices["cuda"]) or "no CUDA device"
        lines.append(f"devices    {cuda}" + (f" (CUDA {devices['cuda_version']})" if devices["cuda_version"] else "")
                     + ("; MPS" if devices["mps"] else "") + f"; torch threads {devices['threads']}")
    lines.append("libraries  " + ", ".join(f"{name} {version}" for name, version in env["libraries"].items() if version))
    missing = [name for name, version in env["libraries"].items() if not version]
    if missing:
        lines.append(f"absent     {', '.join(missing)}")
    lines.append("plugins    " + (", ".join(f"{p['name']} ({p['dist']} {p['version']})" for p in env["plugins"]) or "none"))
    lines += [f"FAILED     {p['name']} ({p['dist']} {p['version']}): {p['error']}" for p in env["failed_plugins"]]
    if env["environment"]:
        lines.append("variables  " + ", ".join(f"{k}={v}" for k, v in env["environment"].items()))
    return "\n".join(lines)


@click.command(epilog=examples("ft env", "ft env --json > env.json"))
@json_option
def env(as_json: bool) -> None:
    """Show ft's, Python's and the libraries' versions, the devices and the plugins, for a bug report."""
    info = environment()
    if as_json:
        print_json(info, sys.stdout)
    else:
        click.echo(_text(info))
