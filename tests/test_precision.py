"""``training.precision: auto``: bf16 autocast on CPUs with bf16 instructions, fp32 where bf16 is emulated."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU choice; on a GPU auto follows the GPU")
@pytest.mark.parametrize(("native", "expected"), [(True, {"bf16": True, "use_cpu": True}), (False, {})])
def test_auto_precision_follows_the_cpu(native, expected, monkeypatch):
    import ftcore.run.arguments as trainargs

    monkeypatch.setattr(trainargs, "cpu_has_bf16", lambda: native)
    assert trainargs._precision("auto") == expected
    assert trainargs._precision("fp32") == {}
    assert trainargs._precision("bf16") == {"bf16": True, "use_cpu": True}


def test_cpu_bf16_detection_matches_the_cpu_flags():
    from pathlib import Path

    from ftcore.run.arguments import cpu_has_bf16

    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        pytest.skip("no /proc/cpuinfo here")
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.read_text().splitlines()
                  if line.startswith("flags")), [])
    assert cpu_has_bf16() == bool({"avx512_bf16", "amx_tile"} & set(flags))
