"""One logging setup for the CLI: ``--verbose`` / ``--quiet`` choose the level."""

from __future__ import annotations

import logging
import os

_LEVELS = {-1: logging.WARNING, 0: logging.INFO, 1: logging.DEBUG}


class _RedactingFormatter(logging.Formatter):
    """A formatter that hides Hub tokens (see :mod:`ftcore.util.redact`) in every formatted line."""

    def format(self, record: logging.LogRecord) -> str:
        from ftcore.util.redact import redact

        return redact(super().format(record))


#: Loggers of libraries that transformers imports when they are installed, which warn at import about things
#: ft's users cannot act on (an optional faster CPU kernel missing; a kernel hub's trust check skipped offline)
#: and would precede every one-line error. Shown again with -v. Quieted here, not by the plugin that brings the
#: library: transformers imports it while ft checks a config, before any plugin is loaded.
QUIET_LIBRARY_LOGGERS = ("bitsandbytes.backends.cpu.ops", "kernels")


def setup_logging(verbosity: int = 0) -> None:
    """Log ft's messages to stderr: -1 warnings only, 0 info, 1 debug (also third-party libraries)."""
    level = _LEVELS[max(-1, min(1, verbosity))]
    handler = logging.StreamHandler()
    handler.setFormatter(_RedactingFormatter("%(levelname).1s %(name)s: %(message)s" if verbosity > 0 else "%(message)s"))
    root = logging.getLogger("ftcore")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    if verbosity < 1:
        # transformers and datasets are chatty at INFO; keep them at warnings unless debugging.
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error" if verbosity < 0 else "warning")
        os.environ.setdefault("DATASETS_VERBOSITY", "error" if verbosity < 0 else "warning")
        for name in QUIET_LIBRARY_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
