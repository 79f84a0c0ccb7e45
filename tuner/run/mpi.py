"""What tuner asks of MPI: this rank, the worker count, rank 0's values shared, the first
error of any rank, and an abort. mpi4py is imported only here and only when called
(``--comms mpi``)."""
from __future__ import annotations

import sys
import time
from typing import Any, NoReturn

from tuner.errors import TunerError


def comm():
    """The communicator every rank of the run shares."""
    from mpi4py import MPI
    return MPI.COMM_WORLD


def rank() -> int:
    return comm().Get_rank()


def is_manager(comms: str) -> bool:
    """True outside MPI and on MPI rank 0: the process that gets the results."""
    return comms != "mpi" or rank() == 0


def workers() -> int:
    """Workers of an MPI run: every rank but the manager's."""
    n = comm().Get_size() - 1
    if n < 1:
        raise TunerError("--comms mpi needs at least 2 MPI ranks "
                         "(mpirun -np N+1: one manager and N workers)")
    return n


def _meet(c) -> None:
    """Wait, asleep, until every rank is here. MPICH's blocking collectives spin at full CPU:
    worker ranks waiting for rank 0 to import and prepare the fit took 4 of a 2-core
    machine's 5 shares away from it (config.json written 6.1 s after the start of a
    ``mpirun -np 5`` fit, 4.7 s with this wait)."""
    done = c.Ibarrier()
    while not done.Test():
        time.sleep(0.002)


def share(value: Any) -> Any:
    """Rank 0's ``value``, on every rank (worker ranks pass anything)."""
    c = comm()
    _meet(c)
    return c.bcast(value, root=0)


def first_error(error: str | None) -> str | None:
    """The first error any rank found (rank 0's first), on every rank."""
    c = comm()
    _meet(c)
    errors = c.allgather(error)
    return next((e if r == 0 else f"MPI rank {r}: {e}" for r, e in enumerate(errors)
                 if e is not None), None)


def abort(message: str, exit_code: int) -> NoReturn:
    """Say why, then end every rank: worker ranks waiting for a manager that will not send
    again end only with an abort of the communicator (which ends this process too)."""
    print(f"tuner: error: {message}", file=sys.stderr, flush=True)
    comm().Abort(exit_code)
    raise SystemExit(exit_code)  # not reached
