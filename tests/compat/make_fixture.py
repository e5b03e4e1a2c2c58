"""Write what ``nox -s compat4`` loads with transformers 4.x: a merged model and a GGUF export made by ft.

    python tests/compat/make_fixture.py DIR     # with ft and transformers 5 installed

DIR gets ``base/`` (a tiny Llama with a RoPE base of 100000, not transformers' default 10000), ``run/``
(a LoRA adapter run of it), ``merged/`` (``ft merge``), ``export/model.gguf`` (``ft export``, f16) and
``expected.json``: what transformers 5 reads from them (config values, token ids, the rendered chat
template, logits), the values :mod:`check_v4` compares against.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from check_v4 import CHAT, IDS, TEXTS, read_values  # noqa: E402

ROPE_THETA = 100000.0


def build(out: Path) -> dict:
    """Build the base, run, merged model and GGUF under ``out``; return the expected values (also written)."""
    from adapter_runs import make_adapter_run
    from click.testing import CliRunner
    from transformers import AutoConfig

    from ftcore.cli import cli
    from ftcore.testing.fixtures import build_tiny_llama

    if out.is_dir() and any(out.iterdir()):
        if not (out / "expected.json").is_file():
            raise SystemExit(f"{out} is not empty and not a compat4 fixture; choose another directory")
        shutil.rmtree(out)  # an earlier fixture of this script
    base = build_tiny_llama(out / "base")
    config = AutoConfig.from_pretrained(base)
    config.rope_parameters = {"rope_type": "default", "rope_theta": ROPE_THETA}
    config.save_pretrained(base)
    run = make_adapter_run(out / "run", base)
    for args in (
        ["merge", str(run), "-o", str(out / "merged"), "--overwrite"],
        ["export", str(run), "-o", str(out / "export" / "model.gguf"), "--overwrite"],
    ):
        result = CliRunner().invoke(cli, args)
        if result.exit_code != 0:
            raise SystemExit(f"ft {args[0]} failed: {result.output}{result.exception}")
    expected = read_values(out / "merged")
    if abs(expected["rope_theta"] - ROPE_THETA) > 1e-6:
        raise SystemExit(f"transformers 5 reads rope_theta {expected['rope_theta']}, expected {ROPE_THETA}")
    (out / "expected.json").write_text(json.dumps(expected) + "\n", encoding="utf-8")
    return expected


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "compat4-fixture").resolve()
    build(target)
    print(
        f"compat4 fixture written to {target} (ids {len(IDS)}x{len(IDS[0])}, {len(TEXTS)} texts, {len(CHAT)} messages)"
    )
