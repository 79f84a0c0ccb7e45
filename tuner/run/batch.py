"""Many independent fits as one libEnsemble ensemble: each task is a whole fit.

Bootstrap refits, ``rank``'s laws, ``validate --loo``'s held-out runs and ``tuner sweep``'s
grid all hand ``run_tasks`` a list of picklable callables (``Task(fn, *args)``). With more than
one worker (or under MPI) the list becomes libEnsemble's history: one row per task, the task
itself in the row, given out in order to idle workers by an allocator in the manner of
libEnsemble's pregenerated-work allocator (no generator: the work is known in advance). A worker runs its row's task and
returns the result in the row, so worker ranks need nothing but this module's sim function.
Results come back in task order whatever the schedule, and each task is deterministic (its
own seed), so any worker count gives the one-worker results.

One worker outside MPI runs the tasks here, in order, with no ensemble around them.
The watchdog of ``tuner.run.watchdog`` ends the run if a worker dies (libEnsemble alone would
wait for it forever); its marks live in a scratch directory, removed at the end.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
import traceback
from typing import Any, Callable, Sequence

import numpy as np

from tuner.errors import TunerError
from tuner.run import mpi, watchdog

COMMS = ("local", "threads", "mpi")
Progress = Callable[[int, int], None]


class Task:
    """``fn(*args, **kwargs)`` as a picklable value (``fn`` must be a module-level function).

    A plain class, not a dataclass: libEnsemble's pydantic specs would turn a dataclass into
    a dict."""

    def __init__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any):
        self.fn, self.args, self.kwargs = fn, args, kwargs

    def __call__(self) -> Any:
        return self.fn(*self.args, **self.kwargs)

    def __repr__(self) -> str:
        return f"Task({getattr(self.fn, '__qualname__', self.fn)!r}, {len(self.args)} args)"


class TaskFailed(RuntimeError):
    """A task raised something other than bad input; the message carries its traceback."""


def check_parallel(workers: int, comms: str) -> None:
    """TunerError naming a bad --workers or --comms (before any work starts). Under MPI the
    ranks set the workers, so ``workers`` is not checked."""
    if comms not in COMMS:
        raise TunerError(f"--comms must be one of {', '.join(COMMS)}, got {comms!r}")
    if comms == "mpi":
        return
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise TunerError(f"--workers must be an integer >= 1, got {workers!r}")
    watchdog.check_capacity(1, workers, comms)


def run_tasks(tasks: Sequence[Callable[[], Any]], *, workers: int = 1, comms: str = "local",
              progress: Progress | None = None, workdir: str | None = None) -> list | None:
    """Run every task; return their results in task order (None on MPI worker ranks).

    Under ``comms="mpi"`` every rank calls this with the same tasks (workers ignore theirs:
    the manager sends each task in its history row) and ``workers`` is the ranks but one.
    ``progress(done, total)`` is called on the manager as tasks end. A task that raises
    TunerError raises it here (the first in task order); any other exception becomes
    TaskFailed with the task's traceback.
    """
    if comms == "mpi":
        workers = mpi.workers()  # the ranks decide, not the argument
    check_parallel(workers, comms)
    tasks = list(tasks)
    if not tasks:
        return [] if mpi.is_manager(comms) else None
    if comms != "mpi" and (workers == 1 or len(tasks) == 1):
        return _run_here(tasks, progress)
    return _run_ensemble(tasks, workers, comms, progress, workdir)


def _one_blas_thread():
    """A context in which numpy's BLAS/OpenMP pools use one thread.

    Every task runs so, whatever the worker count: the fits work on small arrays, and a
    multithreaded BLAS pool per worker only oversubscribes the cores (measured on 2 cores:
    200 bootstrap refits 3x slower in one process with the default pool than with one
    thread), and the same thread count everywhere keeps results independent of workers."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # scikit-learn installs it; without it the pools stay as they are
        import contextlib
        return contextlib.nullcontext()
    return threadpool_limits(limits=1)


def _run_here(tasks: list, progress: Progress | None) -> list:
    results = []
    if progress is not None:
        progress(0, len(tasks))
    with _one_blas_thread():
        for i, task in enumerate(tasks):
            results.append(task())
            if progress is not None:
                progress(i + 1, len(tasks))
    return results


def _sim_run(H, persis_info, sim_specs, libE_info):
    """libEnsemble sim_f: run the task in each row, the result (or the error) into the row."""
    in_thread = os.getpid() == sim_specs["user"]["manager_pid"]
    if not in_thread:
        # Ctrl-C is the manager's to handle: a worker killed mid-task by it would only turn
        # a clean stop into a libEnsemble error.
        import signal
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        # A worker process is ours alone: one BLAS thread for good (see _one_blas_thread).
        # Worker threads share the manager's pools, which _run_ensemble limits around the run.
        _one_blas_thread()
    workdir = sim_specs["user"]["workdir"]
    worker = int(libE_info.get("workerID", 0))
    out = np.zeros(len(H), dtype=sim_specs["out"])
    for i in range(len(H)):
        index = int(H["index"][i])
        _mark(workdir, worker, index)
        try:
            out["result"][i] = H["task"][i]()
            out["error"][i] = ""
        except TunerError as exc:
            out["error"][i] = f"TunerError: {exc}"
        except Exception:  # noqa: BLE001 - reported by the manager, in task order
            out["error"][i] = traceback.format_exc()
        finally:
            _mark(workdir, worker, None)
    return out, persis_info


def _mark(workdir: str, worker: int, index: int | None) -> None:
    try:
        watchdog.mark(workdir, worker, index)
    except OSError:  # a rank on another node cannot see the manager's scratch directory
        pass


IDLE_SLEEP = 0.005  # the manager's pause when it has nothing to hand out (seconds)


def _alloc(W, H, sim_specs, gen_specs, alloc_specs, persis_info, libE_info):
    """Give the next task to each idle worker, in order, and report progress (manager side).

    libEnsemble's manager calls this in a loop that sleeps only 0.1 ms between polls, which
    takes a whole core from the fits on a small machine; when there is nothing to hand out,
    this waits a few milliseconds instead (a task is a whole fit: the delay is negligible).
    Until every task has ended it never reports "done", so the manager keeps calling it
    rather than spinning in its own final wait.
    """
    from libensemble.tools.alloc_support import AllocSupport
    report = alloc_specs["user"].get("progress")
    if report is not None:
        done = int(np.count_nonzero(H["sim_ended"]))
        if done != persis_info.get("reported", -1):
            persis_info["reported"] = done
            report(done, len(H))
    support = AllocSupport(W, libE_info["use_resource_sets"], persis_info, libE_info)
    nxt = persis_info.get("next_to_give", 0)
    work = {}
    for w in support.avail_worker_ids(gen_workers=False):
        if nxt >= len(H):
            break
        work[w] = support.sim_work(w, H, sim_specs["in"], [nxt], [])
        nxt += 1
    persis_info["next_to_give"] = nxt
    if nxt >= len(H):
        watchdog.ending(alloc_specs["user"]["workdir"])  # every task is handed out
    if not work:
        time.sleep(IDLE_SLEEP)
    return work, persis_info


def _run_ensemble(tasks: list, workers: int, comms: str, progress: Progress | None,
                  workdir: str | None) -> list | None:
    from libensemble.libE import libE

    manager = mpi.is_manager(comms)
    scratch = None
    if workdir is None and manager:
        scratch = workdir = tempfile.mkdtemp(prefix="tuner-batch-")
    if comms == "mpi":
        workdir = mpi.share(workdir)
    n = len(tasks)
    H0 = np.zeros(n, dtype=[("task", object), ("index", int), ("sim_id", int),
                            ("sim_started", bool), ("sim_ended", bool)])
    H0["index"] = H0["sim_id"] = np.arange(n)
    for i, task in enumerate(tasks):
        H0["task"][i] = task
    sim_specs = {"sim_f": _sim_run, "in": ["task", "index"],
                 "out": [("result", object), ("error", object)],
                 "user": {"workdir": workdir, "manager_pid": os.getpid()}}
    alloc_specs = {"alloc_f": _alloc, "user": {"progress": progress, "workdir": workdir}}
    # No workflow directory: libEnsemble would move every worker into it, and tasks read
    # relative paths (law files, datasets) from the caller's directory.
    libE_specs = {"comms": comms, "disable_resource_manager": True, "disable_log_files": True,
                  "save_H_and_persis_on_abort": False, "abort_on_exception": True}
    if comms == "mpi":
        libE_specs["mpi_comm"] = mpi.comm()
    else:
        libE_specs["nworkers"] = workers

    def ensemble():
        return libE(sim_specs, {}, {"sim_max": n}, {}, alloc_specs, libE_specs, H0=H0)

    cwd = os.getcwd()
    try:
        if not manager:
            try:
                beat = watchdog.start_heartbeat(workdir, mpi.rank())
            except OSError:  # another node: the manager cannot watch this rank's file
                beat = None
            try:
                ensemble()
            finally:
                if beat is not None:
                    beat.set()
            return None
        hint = "no results are kept from an interrupted batch; run it again"
        try:
            with _one_blas_thread():
                H, _, _ = watchdog.guarded(ensemble, watchdog.Watchdog(workdir, comms, workers,
                                                                       resume_hint=hint,
                                                                       unit="task"))
        except watchdog.RunAborted as exc:
            if comms == "mpi":
                mpi.abort(str(exc), exc.exit_code)
            raise
    finally:
        os.chdir(cwd)  # a task that changed directory (threads share this process's)
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    H = H[np.argsort(H["index"])]
    if progress is not None:
        progress(int(np.count_nonzero(H["sim_ended"])), n)
    for i in range(n):
        if not H["sim_ended"][i]:
            raise TaskFailed(f"task {i} of {n} did not run")
        error = H["error"][i]
        if error:
            if error.startswith("TunerError: "):
                raise TunerError(error.removeprefix("TunerError: "))
            raise TaskFailed(f"task {i} of {n} ({tasks[i]!r}) failed:\n{error}")
    return list(H["result"])
