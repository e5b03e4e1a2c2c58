"""torchrun with ft's exits: ``python -m ftcore.run.torchrun ARGS`` runs exactly ``torchrun ARGS``.

torchrun ends a failed or interrupted job with a Python traceback and status 1, after each rank has already
said what happened. This runs the same torchrun (its own parser and agent, through its API) and ends the job
the ft way instead: a signal with status 128+N, a failed rank with that rank's status (the rank printed its
own one line), and a rendezvous that failed or timed out with one line naming where it waited.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    """Run torchrun with ``argv``; exit with the status of the job, never with a launcher traceback."""
    from torch.distributed import DistNetworkError, DistStoreError
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.elastic.rendezvous.api import RendezvousError
    from torch.distributed.run import parse_args, run

    args = parse_args(argv)
    try:
        run(args)
    except SignalException as exc:
        sys.exit(128 + int(exc.sigval))
    except ChildFailedError as exc:
        sys.exit(child_status(exc.get_first_failure()[1].exitcode))
    except (RendezvousError, DistStoreError, DistNetworkError, TimeoutError) as exc:
        print(f"error: {rendezvous_failure(args, exc)}", file=sys.stderr)
        sys.exit(1)
    sys.exit(0)


def child_status(exitcode: int) -> int:
    """A worker's exit status as a shell reports it (killed by signal N: 128+N); never 0 for a failure."""
    return 128 - exitcode if exitcode < 0 else exitcode or 1


def rendezvous_failure(args: object, exc: BaseException) -> str:
    """One line: where the machines were to meet, how many, and what to check."""
    where = getattr(args, "rdzv_endpoint", "") or f"{getattr(args, 'master_addr', '?')}:{getattr(args, 'master_port', '?')}"
    first = str(exc).strip().splitlines()[0].rstrip(".") if str(exc).strip() else type(exc).__name__
    return (f"the machines of this job did not all join at {where} (--nnodes {getattr(args, 'nnodes', '?')}): {first}; "
            "check that every machine started ft train with the same --nnodes, --master-addr and --master-port, "
            "and look at the other machines' output for their error")


if __name__ == "__main__":
    main()
