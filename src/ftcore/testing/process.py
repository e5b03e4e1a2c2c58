"""Run the real ``ft`` entry point in a subprocess, as a user's shell would (for ft's and plugins' tests)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_ft(*args: str, env: dict[str, str] | None = None, cwd: str | Path | None = None, timeout: int = 600,
           stdin: str | None = None) -> subprocess.CompletedProcess:
    """``python -m ftcore ARGS`` offline (``stdin`` as its input, ``env`` added to this process's); returns the
    CompletedProcess with text stdout and stderr."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "ftcore", *args],
        input=stdin, capture_output=True, text=True, env=full_env, cwd=cwd, timeout=timeout,
    )
