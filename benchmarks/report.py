"""Turn the benchmark's measurements into RESULTS.md: conditions, per-case medians and spreads, ratios, targets."""

from __future__ import annotations

import platform
import statistics
import time
from importlib import metadata
from typing import Any

import cases as bench_cases

PAIRS = [("ft_mb1", "hf_mb1"), ("ft_mb8", "hf_mb8")]


def machine() -> dict[str, Any]:
    """CPU, cores, memory and library versions of this machine."""
    import os

    import psutil

    versions = {}
    for name in ("torch", "transformers", "peft", "trl", "datasets", "accelerate", "ftcore"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": _cpu_name(), "cpu_bf16": _cpu_bf16_flags(), "gpu": gpu, "cores": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(), "platform": platform.platform(), "versions": versions,
            "date": time.strftime("%Y-%m-%d %H:%M %Z")}


def _cpu_bf16_flags() -> list[str]:
    """The CPU's native bf16 instruction sets (AVX512_BF16, AMX) from /proc/cpuinfo; empty when bf16 is emulated."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return sorted({f for f in line.split(":", 1)[1].split() if f in ("avx512_bf16", "amx_bf16", "amx_tile")})
    except OSError:
        pass
    return []


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


BEGIN = "<!-- benchmarks/run.py writes from here to the end marker; what follows the end marker is kept -->"
END = "<!-- end of what benchmarks/run.py writes -->"
TITLE = "# ft benchmark results"
MODEL_NAMES = {"fixture": "28M Llama (vocab 8,192)", "smollm2": "SmolLM2-135M (vocab 49,152)"}


def label(found: dict[str, Any], model: str) -> str:
    """How the tables name ``model``: what was trained (its size and vocabulary), else the suite's usual model."""
    entry = found.get("models", {}).get(model)
    if entry is None:
        return MODEL_NAMES.get(model, model)
    fx = entry["fixture"]
    name = fx.get("model") or f"{fx['params'] / 1e6:.3g}M-parameter Llama"
    return f"{name} (vocab {fx['spec']['vocab_size']:,})"


def merge(existing: str | None, generated: str) -> str:
    """RESULTS.md with ``generated`` between the markers and everything else of ``existing`` kept.

    A file without markers (an older one) keeps all of its text below the new section.
    """
    block = f"{BEGIN}\n\n{generated.strip()}\n\n{END}\n"
    if not existing:
        return f"{TITLE}\n\n{block}"
    if BEGIN in existing and END in existing:
        head, rest = existing.split(BEGIN, 1)
        kept = rest.split(END, 1)[1].lstrip("\n")
        return f"{head}{block}\n{kept}" if kept else f"{head}{block}"
    body = existing.split("\n", 1)[1] if existing.startswith(TITLE) else existing
    return f"{TITLE}\n\n{block}\n{body.lstrip()}"


def by_case(runs: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Runs grouped by (model, case), in the order they first ran."""
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in runs:
        grouped.setdefault((run.get("model", "fixture"), run["case"]), []).append(run)
    return grouped


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summary(runs: list[dict[str, Any]], peak: float) -> dict[str, float]:
    """Medians (and ranges) of one case's runs."""
    useful = [r["useful_tokens_per_s"] for r in runs]
    rss = [r["peak_rss_mb"] for r in runs]
    return {
        "useful": median(useful), "useful_min": min(useful), "useful_max": max(useful),
        "tokens": median([r["tokens_per_s"] for r in runs]),
        "padding": median([r["padding_share"] for r in runs]),
        "mfu": median([r["flops_per_s"] for r in runs]) / (peak * 1e9),
        "rss": median(rss), "rss_min": min(rss), "rss_max": max(rss),
        "loss": median([r["final_loss"] for r in runs if r["final_loss"] is not None]),
        "n": len(runs),
    }


def loss_gap(grouped: dict[tuple[str, str], list[dict[str, Any]]], ft: tuple[str, str],
             hf: tuple[str, str]) -> float | None:
    """Largest per-step loss difference between two cases that train on identical batches."""
    if ft not in grouped or hf not in grouped:
        return None
    a, b = grouped[ft][0]["losses"], grouped[hf][0]["losses"]
    return max((abs(x - y) for x, y in zip(a, b, strict=False)), default=None)


def best_hand_written(stats: dict[tuple[str, str], dict[str, float]], model: str, method: str = "lora") -> str | None:
    """The hand-written case of ``model`` with the most useful tokens/s (LoRA or full fine-tuning)."""
    names = [name for (m, name) in stats if m == model and name.startswith("hf_")
             and bench_cases.CASES[name].method == method]
    return max(names, key=lambda n: stats[(model, n)]["useful"], default=None)


def markdown(found: dict[str, Any]) -> str:
    """The generated part of RESULTS.md (what :func:`merge` puts between the markers)."""
    peak = max(found["peak_gflops"])
    grouped = by_case(found["runs"])
    stats = {key: summary(runs, peak) for key, runs in grouped.items()}
    lines = _header(found, peak) + _targets(found, stats, grouped) + _table(found, stats) + _losses(found, grouped)
    lines += _startup(found) + _prep(found)
    return "\n".join(lines) + "\n"


def _header(found: dict[str, Any], peak: float) -> list[str]:
    m, s = found["machine"], found["settings"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
    n, sec = found["peak_matmul"]["size"], found["peak_matmul"]["seconds"]
    lines = [
        f"## Latest run: {m['date']}",
        "",
        f"Generated by `{found['command'].strip()}`.",
        "",
        f"- Machine: **{m['cpu']}**, {m['cores']} cores, {m['memory_gb']} GiB; {m['platform']}, Python {m['python']}; "
        f"{_bf16_line(m)}; GPU: {m.get('gpu') or 'none'}.",
        f"- fp32 matmul peak measured in this run: **{peak:.0f} GFLOP/s** ({n}×{n} `torch.mm`, best of {sec:g} s, "
        f"before and after the runs: {', '.join(f'{p:.0f}' for p in found['peak_gflops'])}).",
        f"- Load average at start **{_load(found['load_start'])}**, at end **{_load(found['load_end'])}** (1/5/15 min; "
        "other processes on these cores slow every case: compare ratios of interleaved runs, not absolute numbers).",
        f"- Versions: {versions}.",
    ]
    for model, entry in found.get("models", {"fixture": {"fixture": found["fixture"], **s}}).items():
        fx = entry["fixture"]
        spec = fx["spec"]
        lines.append(
            f"- {label(found, model)}: {fx['params']:,} parameters, hidden {spec['hidden_size']}, "
            f"{spec['layers']} layers; "
            f"{entry['steps']} optimizer steps of 8 examples per run, timed after {entry['warmup']} warm-up "
            f"step{'s' if entry['warmup'] != 1 else ''}.")
    for model, reason in found.get("skipped", {}).items():
        lines.append(f"- {label(found, model)}: **not run**: {reason}.")
    spec = found["fixture"]["spec"]
    longest = next((e["longest"] for e in found.get("models", {}).values() if "longest" in e), None)
    subset = (f" (`--data longest`: only its {longest['examples']} longest, {longest['min_tokens']}–"
              f"{longest['max_tokens']} tokens, so that every tool meets its longest examples within the measured "
              "steps)") if longest else ""
    lines += [
        f"- Data: {spec['examples']} alpaca-style examples (log-normal lengths, median ~{spec['median_tokens']} tokens "
        f"with the fixture's tokenizer, cut at {spec['max_tokens']}){subset}, the same for every case of a model; "
        f"{s['runs']} runs per case, one process each, rounds interleaved and rotated; medians.",
        "- LoRA r=16, alpha 32, dropout 0.05 on q/k/v/o projections; AdamW (torch), lr 2e-4 cosine, seed 42; fp32 except "
        "ft's defaults (training.precision auto) and cases that set a precision.",
        "- MFU = model FLOPs of the useful (non-pad) tokens / time / peak. Linear layers: 4 FLOPs per weight per token "
        "for LoRA (forward + input gradients; frozen weights get no weight gradient), 6 for full fine-tuning; "
        "causal attention 6·layers·hidden·s² per sequence of s tokens.",
        "",
    ]
    return lines


def _bf16_line(m: dict[str, Any]) -> str:
    flags = m.get("cpu_bf16")
    if flags is None:
        return "bf16 support not recorded"
    if flags:
        return f"native bf16 ({', '.join(flags)}): ft's defaults train with bf16 autocast"
    return "no native bf16 (no AVX512_BF16/AMX): ft's defaults train in fp32"


def _load(values: Any) -> str:
    return "/".join(f"{v:.1f}" for v in values)


def _table(found: dict[str, Any], stats: dict[tuple[str, str], dict[str, float]]) -> list[str]:
    lines = ["### Training throughput and memory", "",
             "| model | case | what | useful tok/s median (min–max) | vs best hand-written | padding | MFU | "
             "peak RSS MB median (min–max) | vs hand-written | loss after N steps | runs |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for (model, name), st in stats.items():
        case = bench_cases.CASES[name]
        base = best_hand_written(stats, model, case.method)
        speed = f"{st['useful'] / stats[(model, base)]['useful']:.2f}×" if base else "–"
        memory = f"{st['rss'] / stats[(model, base)]['rss']:.2f}×" if base else "–"
        lines.append(
            f"| {label(found, model)} | {name} | {case.note} | {st['useful']:.0f} ({st['useful_min']:.0f}–"
            f"{st['useful_max']:.0f}) | {speed} | {st['padding']:.0%} | {st['mfu']:.0%} | {st['rss']:.0f} "
            f"({st['rss_min']:.0f}–{st['rss_max']:.0f}) | {memory} | {st['loss']:.4f} | {st['n']} |"
        )
    return [*lines, ""]


def _losses(found: dict[str, Any], grouped: dict[tuple[str, str], list[dict[str, Any]]]) -> list[str]:
    lines = ["### Same loss curve on identical batches", ""]
    for model in dict.fromkeys(m for m, _ in grouped):
        for ft, hf in PAIRS:
            gap = loss_gap(grouped, (model, ft), (model, hf))
            if gap is not None:
                lines.append(f"- {label(found, model)}, `{ft}` vs `{hf}`: largest per-step loss difference "
                             f"{gap:.2e} (`{ft}` {_curve(grouped[(model, ft)][0]['losses'])}; "
                             f"`{hf}` {_curve(grouped[(model, hf)][0]['losses'])}).")
    return [*lines, ""] if len(lines) > 2 else []


def _curve(losses: list[float]) -> str:
    return " → ".join(f"{x:.4f}" for x in losses)


def _startup(found: dict[str, Any]) -> list[str]:
    lines = ["### Start-up", "", "| command | median s | min–max s |", "|---|---|---|"]
    for command, times in found["startup"].items():
        lines.append(f"| `{command}` | {median(times):.2f} | {min(times):.2f}–{max(times):.2f} |")
    if "help_imports_torch" in found:
        lines += ["", f"`ft --help` imports torch: {'**yes**' if found['help_imports_torch'] else 'no'} "
                      "(`python -X importtime -m ftcore --help`)."]
    return [*lines, ""]


def _prep(found: dict[str, Any]) -> list[str]:
    first, again = found["prep"]
    share = again["seconds"] / first["seconds"] if first["seconds"] else float("nan")
    return ["### Data preparation (ft, default settings, the fixture's tokenizer)", "",
            f"- First run: {first['seconds']:.2f} s ({first['rows']} rows); re-run: {again['seconds']:.3f} s "
            f"(cache hit: {again['cache_hit']}) = {share:.1%} of the first.", ""]


# ----------------------------------------------------------------------------- issue 20's targets


def _targets(found: dict[str, Any], stats: dict[tuple[str, str], dict[str, float]],
             grouped: dict[tuple[str, str], list[dict[str, Any]]]) -> list[str]:
    rows: list[tuple[str, str, str]] = []
    skipped = found.get("skipped", {})
    for model in ("fixture", "smollm2"):
        name = label(found, model)
        base = best_hand_written(stats, model)
        why = f"not run: {skipped[model]}" if model in skipped else "not measured in this run"
        rows.append(_at_least(f"ft's defaults ≥ 1.5× the best hand-written useful tokens/s, {name}",
                              _ratio(stats, model, "ft_default", base, "useful"), 1.5, base, why))
        rows.append(_at_most(f"ft's defaults peak RSS ≤ 1.0× the best hand-written's, {name}",
                             _ratio(stats, model, "ft_default", base, "rss"), 1.0, base, why))
    llama = label(found, "fixture")
    rows.append(_at_least(f"identical settings (ft_mb1 / hf_mb1, {llama}): useful tokens/s ≥ 1.00×",
                          _ratio(stats, "fixture", "ft_mb1", "hf_mb1", "useful"), 1.0, "hf_mb1"))
    rows.append(_at_most(f"identical settings (ft_mb1 / hf_mb1, {llama}): peak RSS ≤ 1.00×",
                         _ratio(stats, "fixture", "ft_mb1", "hf_mb1", "rss"), 1.0, "hf_mb1"))
    gap = loss_gap(grouped, ("fixture", "ft_mb1"), ("fixture", "hf_mb1"))
    rows.append(("identical settings: same per-step losses (≤ 1e-4, fp32)",
                 "not measured" if gap is None else f"largest difference {gap:.1e}",
                 "–" if gap is None else ("yes" if gap <= 1e-4 else f"no ({gap:.1e} > 1e-4)")))
    rows.append(_at_least(f"full fine-tuning ({llama}): ft's defaults ≥ 1.5× hand-written useful tokens/s",
                          _ratio(stats, "fixture", "ft_full_default", "hf_full_mb1", "useful"), 1.5, "hf_full_mb1"))
    rows.append(_at_most(f"full fine-tuning ({llama}): ft's defaults peak RSS ≤ 1.0× hand-written's",
                         _ratio(stats, "fixture", "ft_full_default", "hf_full_mb1", "rss"), 1.0, "hf_full_mb1"))
    help_s = median(found["startup"]["ft --help"])
    rows.append(("`ft --help` ≤ 0.2 s", f"{help_s:.2f} s (median)",
                 "yes" if help_s <= 0.2 else f"no ({help_s - 0.2:.2f} s over)"))
    if "help_imports_torch" in found:
        rows.append(("`ft --help` does not import torch", "imports torch" if found["help_imports_torch"] else
                     "torch not imported", "no" if found["help_imports_torch"] else "yes"))
    lines = ["### Issue 20's targets", "", "| target | measured | met |", "|---|---|---|"]
    lines += [f"| {label} | {value} | {met} |" for label, value, met in rows]
    return [*lines, ""]


def _ratio(stats: dict[tuple[str, str], dict[str, float]], model: str, case: str, base: str | None,
           key: str) -> float | None:
    if base is None or (model, case) not in stats or (model, base) not in stats:
        return None
    return stats[(model, case)][key] / stats[(model, base)][key]


def _at_least(label: str, value: float | None, floor: float, base: str | None,
              why: str = "not measured in this run") -> tuple[str, str, str]:
    if value is None:
        return label, why, "–"
    met = "yes" if value >= floor else f"no: short by {floor - value:.2f}×"
    return label, f"{value:.2f}× ({base})", met


def _at_most(label: str, value: float | None, ceiling: float, base: str | None,
             why: str = "not measured in this run") -> tuple[str, str, str]:
    if value is None:
        return label, why, "–"
    met = "yes" if value <= ceiling else f"no: {value - ceiling:.2f}× over"
    return label, f"{value:.2f}× ({base})", met
