"""Progress of long data steps, and tokenization in several processes.

A person at a terminal sees a tqdm bar; a log file or CI gets a line when the step starts, one every
``every`` seconds, and one when it ends. :func:`encode_table` tokenizes a source's canonical examples in
batches, in worker processes forked from this one (they inherit the examples and the tokenizer, so nothing is
pickled on the way in) when :func:`tokenize_processes` says several pay off, and returns one Arrow table.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ftcore.errors import FtError

if TYPE_CHECKING:
    import pyarrow as pa
    from datasets import Dataset

log = logging.getLogger("ftcore.data")

#: From this many examples, tokenization uses one process per core (up to 4) unless data.num_proc is set:
#: below it, starting the workers costs more than they save (measured in benchmarks/RESULTS.md).
PARALLEL_FROM = 4_000
BATCH = 256
#: Steps over fewer items than this finish in a moment and report nothing.
QUIET_BELOW = 2_000


class Progress:
    """A tqdm bar on a terminal, else log lines: at the start, every ``every`` seconds, and at the end.

    Nothing at all for fewer than :data:`QUIET_BELOW` items.
    """

    def __init__(self, total: int, desc: str, unit: str = "examples", every: float = 10.0) -> None:
        self.total, self.desc, self.unit, self.every = total, desc, unit, every
        self.done = 0
        self.bar: Any = None
        self.quiet = total < QUIET_BELOW

    def __enter__(self) -> Progress:
        self.start = self.last = time.monotonic()
        if self.quiet:
            return self
        if sys.stderr.isatty() and log.getEffectiveLevel() <= logging.INFO:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, desc=self.desc, unit=f" {self.unit}", mininterval=0.5, leave=False)
        else:
            log.info("data: %s: %d %s", self.desc, self.total, self.unit)
        return self

    def update(self, n: int) -> None:
        """Count ``n`` more items done."""
        self.done += n
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.monotonic()
        if now - self.last >= self.every and self.done < self.total:
            self.last = now
            rate = self.done / max(now - self.start, 1e-9)
            log.info("data: %s: %d/%d %s (%d%%), %.0f/s, about %.0f s left", self.desc, self.done, self.total,
                     self.unit, 100 * self.done // max(self.total, 1), rate, (self.total - self.done) / max(rate, 1e-9))

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()
        if exc[0] is None and not self.quiet:
            seconds = time.monotonic() - self.start
            log.info("data: %s: %d %s in %.1f s (%.0f/s)", self.desc, self.done, self.unit, seconds,
                     self.done / max(seconds, 1e-9))


def cpus() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def tokenize_processes(num_proc: int | None, examples: int) -> int:
    """``data.num_proc`` when set; else, from :data:`PARALLEL_FROM` examples, one per idle core (up to 4), else 1.

    Cores other processes keep busy (the load average, less this process) are not counted: on a machine
    already running more than it has cores, extra workers only slow everything down. Worker processes are
    forked; where the platform cannot fork (Windows, macOS' default), one process is used.
    """
    if "fork" not in multiprocessing.get_all_start_methods():
        return 1
    if num_proc is not None:
        return num_proc
    if examples < PARALLEL_FROM:
        return 1
    busy = max(0.0, os.getloadavg()[0] - 1) if hasattr(os, "getloadavg") else 0.0
    return max(1, min(4, cpus(), round(cpus() - busy)))


# The job of the forked workers: set in the parent just before forking, inherited by every worker.
_JOB: tuple[Dataset, Callable[[dict[str, list[Any]]], dict[str, list[Any]]]] | None = None


def _worker_signals() -> None:
    """In each forked worker: SIGTERM ends it at once, SIGINT is the parent's to handle.

    A worker inherits the parent's Python handlers, and ``ft train``'s turns SIGTERM into an exception. The pool
    ends its workers with SIGTERM; raised inside the worker's queue lock, that exception could leave the lock
    held, and the next worker then waited for it forever (the pool, and ``ft train``, with it).
    """
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run_batch(bounds: tuple[int, int]) -> Any:
    examples, function = _JOB
    try:
        return _arrow(function(examples[bounds[0]:bounds[1]]))
    except FtError as exc:  # the hint would not survive pickling: send the whole line back
        return _Failure(str(exc), type(exc))


class _Failure:
    def __init__(self, message: str, kind: type[FtError]) -> None:
        self.message, self.kind = message, kind


def _arrow(columns: dict[str, list[Any]]) -> pa.RecordBatch:
    import pyarrow as pa

    # Fixed types where a batch of dropped (empty) examples would otherwise be inferred as list<null>.
    fixed = {"input_ids": pa.list_(pa.int64()), "labels": pa.list_(pa.int64())}
    arrays = [pa.array(values, type=fixed.get(name)) for name, values in columns.items()]
    return pa.RecordBatch.from_arrays(arrays, names=list(columns))


def encode_table(examples: Dataset, function: Callable[[dict[str, list[Any]]], dict[str, list[Any]]],
                 processes: int, desc: str) -> pa.Table:
    """``function`` (a batch of examples -> columns) over all ``examples``, in order, as one Arrow table.

    With ``processes`` > 1 the batches run in forked worker processes; progress is reported as batches finish.
    """
    import pyarrow as pa

    global _JOB
    n = len(examples)
    bounds = [(start, min(start + BATCH, n)) for start in range(0, n, BATCH)]
    batches = []
    _JOB = (examples, function)
    try:
        with Progress(n, desc) as progress:
            for batch in _batches(bounds, processes):
                if isinstance(batch, _Failure):
                    raise batch.kind(batch.message)
                batches.append(batch)
                progress.update(batch.num_rows)
    finally:
        _JOB = None
    tables = [pa.Table.from_batches([b]) for b in batches]
    return pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]


def _batches(bounds: list[tuple[int, int]], processes: int) -> Any:
    if processes <= 1 or len(bounds) < 2:
        yield from map(_run_batch, bounds)
        return
    # Workers inherit the tokenizer; telling the Rust tokenizer now that they must not use its thread pool
    # avoids its "process just got forked" warning in every worker.
    was = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        with multiprocessing.get_context("fork").Pool(min(processes, len(bounds)), _worker_signals) as pool:
            yield from pool.imap(_run_batch, bounds)
    finally:
        if was is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = was
