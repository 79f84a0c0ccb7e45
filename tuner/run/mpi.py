"""What tuner asks of MPI: this rank and the worker count. mpi4py is imported only here and
only when called (``--comms mpi``)."""
from __future__ import annotations

from tuner.errors import TunerError


def rank() -> int:
    from mpi4py import MPI
    return MPI.COMM_WORLD.Get_rank()


def workers() -> int:
    """Workers of an MPI run: every rank but the manager's."""
    from mpi4py import MPI
    n = MPI.COMM_WORLD.Get_size() - 1
    if n < 1:
        raise TunerError("--comms mpi needs at least 2 MPI ranks "
                         "(mpirun -np N+1: one manager and N workers)")
    return n
