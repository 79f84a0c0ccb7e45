"""libEnsemble manager–workers: a persistent ask/tell generator and an objective-evaluating sim.

The generator is a thin adapter over any ``Optimizer``: it asks for as many points as there
are idle workers, tells each result as soon as it arrives (``async_return``), and stops when
the budget is spent or the optimizer is done. It runs on the manager (``gen_on_manager``) so
every worker evaluates. Workers append their own results to results.csv the moment an
evaluation ends. The same code path serves local processes, threads and MPI.

One worker outside MPI (``in_process``) is not a parallel run: the same loop evaluates in
this process (``run_serial``) and logs the same rows, as the batches of fits do
(``tuner.run.batch``). libEnsemble would add only its import and its messages (0.3 s and
about 6.5 ms an evaluation here, ``benchmarks/speed.py --startup``).
"""
from __future__ import annotations

import json
import os
import time
import traceback
from typing import Callable, Mapping

import numpy as np

from tuner.fitting.evaluation import (Config, Evaluation, LawError, evaluate,
                                      evaluate_function)
from tuner.fitting.loop import InProcess, drive
from tuner.fitting.objective import Objective, ObjectiveSpec
from tuner.run import mpi, watchdog
from tuner.run.rundir import append_row, os_error, timestamp
from tuner.laws.spaces import Space

COMMS = ("local", "threads", "mpi")
SERIAL_WORKER = 1  # the worker column of an evaluation run in process, as libEnsemble numbers one
_OBJECTIVE_CACHE: dict[tuple, Callable] = {}


class EvalTask:
    """What a worker needs to score a point: picklable, rebuilt once per worker process.

    A plain class, not a dataclass: libEnsemble's pydantic specs would turn a dataclass in
    ``user`` into a dict.
    """

    def __init__(self, objective: Mapping, space: Space, results_path: str, header: list[str],
                 eval_delay: float = 0.0, objective_fn: Callable | None = None):
        self.objective, self.space = dict(objective), space
        self.results_path, self.header = results_path, header
        self.eval_delay, self.objective_fn = eval_delay, objective_fn

    @property
    def gradients(self) -> bool:
        """Built-in objectives give their gradient from the same pass; custom ones do not."""
        return self.objective_fn is None

    def params(self, x: np.ndarray) -> dict[str, float]:
        return self.space.complete({n: float(v) for n, v in zip(self.space.names, x)})

    def function(self) -> Callable:
        if self.objective_fn is not None:
            return self.objective_fn
        key = json.dumps(self.objective, sort_keys=True, default=str)
        if key not in _OBJECTIVE_CACHE:
            _OBJECTIVE_CACHE[key] = Objective.from_spec(ObjectiveSpec(**self.objective))
        return _OBJECTIVE_CACHE[key]


def evaluate_and_log(task: EvalTask, eval_id: int, x: np.ndarray, worker: int) -> Evaluation:
    """Score one point (``x``: NaN for coefficients to solve), log it as one results.csv
    row, and return the record. A bad point is a failed evaluation; an error in the law's
    code is logged with status ``error`` and returned for the manager to stop the run."""
    asked = task.params(x)
    start = time.perf_counter()
    try:
        if task.eval_delay > 0:
            time.sleep(task.eval_delay)
        if task.gradients:
            ev = evaluate(task.function(), task.space, asked, eval_id)
        else:
            ev = evaluate_function(task.function(), asked, eval_id)
    except LawError as exc:
        ev = Evaluation(eval_id, asked, asked, float("nan"), "error", str(exc))
    ev.worker, ev.elapsed = worker, time.perf_counter() - start
    append_row(task.results_path, task.header, {
        "eval_id": int(eval_id), **ev.params, "objective": ev.value, "status": ev.status,
        "elapsed": ev.elapsed, "timestamp": timestamp(), "worker": worker,
        "error": ev.error.replace("\n", " ")[:500]})
    return ev


def _ignore_sigint() -> None:
    """Ctrl-C is the manager's to handle: a worker process killed mid-evaluation by it
    would only turn a clean stop into a libEnsemble error."""
    import signal
    import threading
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def sim_evaluate(H, persis_info, sim_specs, libE_info):
    """libEnsemble sim_f: evaluate every row it is given.

    The worker's file in RUN/.workers names the evaluation it runs, so a death names what
    was lost. What cannot be a failed evaluation (results.csv unwritable, an exception from
    outside the objective) stops the run through the watchdog instead of hanging it.
    """
    in_thread = os.getpid() == sim_specs["user"].get("manager_pid")
    if not in_thread:
        _ignore_sigint()
    task: EvalTask = sim_specs["user"]["task"]
    run_dir = os.path.dirname(task.results_path)
    worker = int(libE_info.get("workerID", 0))
    out = np.zeros(len(H), dtype=sim_specs["out"])
    d = len(task.space.names)
    for i in range(len(H)):
        eval_id = int(H["eval_id"][i])
        watchdog.mark(run_dir, worker, eval_id)
        out["f"][i], out["status"][i] = np.nan, "fault"
        try:
            ev = evaluate_and_log(task, eval_id, H["x"][i], worker)
        except OSError as exc:
            watchdog.report_fault(run_dir, worker, eval_id,
                                  str(os_error(task.results_path, exc, "append a result")), 2,
                                  in_thread)
            continue
        except BaseException as exc:  # noqa: B036 - anything else must end the run, not hang it
            watchdog.report_fault(run_dir, worker, eval_id,
                                  f"{type(exc).__name__}: {exc}".replace("\n", " ")[:300], 1,
                                  in_thread)
            continue
        finally:
            watchdog.mark(run_dir, worker, None)
        out["f"][i] = ev.value
        out["status"][i] = ev.status
        out["error"][i] = ev.error[:200]
        out["grad"][i] = ev.grad if ev.grad is not None else np.full(d, np.nan)
        out["curv"][i] = ev.curvature if ev.curvature is not None else np.full((d, d), np.nan)
        out["x_done"][i] = [ev.params[n] for n in task.space.names]
        out["worker"][i] = ev.worker
    return out, persis_info


class GenState:
    """The generator's inputs and what it observed (manager side only; a plain class for the
    same reason as EvalTask)."""

    def __init__(self, optimizer, budget: int, workers: int, first_eval_id: int = 0,
                 progress: Callable[[int, float], None] | None = None):
        self.optimizer, self.budget, self.workers = optimizer, budget, workers
        self.first_eval_id, self.progress = first_eval_id, progress
        self.told, self.best = 0, float("inf")
        self.errors: list[str] = []
        self.fatal: str | None = None  # an error in the law's code: the run stops
        self.comm = None  # the generator's libEnsemble comm, to release it after an abort


class LibeExecutor:
    """``loop.drive``'s executor over libEnsemble's persistent-generator messages."""

    def __init__(self, ps, gen_specs, state: GenState):
        self.ps, self.dtype, self.state = ps, gen_specs["out"], state
        self.names = state.optimizer.space.names
        self.asked: dict[int, dict] = {}
        self.outbox = None

    def submit(self, batch) -> None:
        H_o = np.zeros(len(batch), dtype=self.dtype)
        for i, (eval_id, c) in enumerate(batch):
            H_o["x"][i] = [c[n] for n in self.names]
            H_o["eval_id"][i] = eval_id
            self.asked[eval_id] = c
        self.outbox = H_o

    def results(self):
        from libensemble.message_numbers import PERSIS_STOP, STOP_TAG

        if self.outbox is not None:
            tag, _, calc_in = self.ps.send_recv(self.outbox)
            self.outbox = None
        else:
            tag, _, calc_in = self.ps.recv()
        if tag in (STOP_TAG, PERSIS_STOP):
            return None
        if calc_in is None or not len(calc_in):
            return []
        space = self.state.optimizer.space
        evs = []
        for row in calc_in:
            eval_id = int(row["eval_id"])
            status = str(row["status"])
            if status == "error":
                self.state.fatal = str(row["error"])
                return None
            if status == "fault":  # not a result: the watchdog is ending the run
                continue
            params = space.complete(dict(zip(self.names, map(float, row["x_done"]))))
            evs.append(Evaluation(eval_id, self.asked.pop(eval_id), params, float(row["f"]),
                                  status, str(row["error"]), np.asarray(row["grad"]),
                                  np.asarray(row["curv"]), int(row["worker"])))
        values = [e.value for e in evs]
        self.state.told += len(values)
        self.state.best = min([self.state.best, *values])
        if self.state.progress:
            self.state.progress(self.state.told, self.state.best)
        return evs


def gen_ask_tell(H, persis_info, gen_specs, libE_info):
    """libEnsemble persistent gen_f: ``loop.drive`` over libEnsemble's messages."""
    from libensemble.message_numbers import EVAL_GEN_TAG, FINISHED_PERSISTENT_GEN_TAG
    from libensemble.tools.persistent_support import PersistentSupport

    state: GenState = gen_specs["user"]["state"]
    state.comm = libE_info.get("comm")
    opt = state.optimizer
    ps = PersistentSupport(libE_info, EVAL_GEN_TAG)
    try:
        drive(opt, LibeExecutor(ps, gen_specs, state), budget=state.budget,
              workers=state.workers, first_id=state.first_eval_id)
        watchdog.ending(gen_specs["user"]["run_dir"])  # every evaluation is in
    except Exception:
        state.errors.append(traceback.format_exc())
        raise
    finally:
        opt.close()
    return None, persis_info, FINISHED_PERSISTENT_GEN_TAG


def in_process(workers: int, comms: str) -> bool:
    """Whether a fit's evaluations run in the calling process rather than an ensemble."""
    return comms != "mpi" and workers == 1


def run_serial(task: EvalTask, state: GenState) -> None:
    """Run the generator's loop in this process, one evaluation at a time, as one worker.

    The rows, the order of evaluations and the values told are an ensemble of one's
    (``tests/test_ensemble.py``). SIGTERM and SIGHUP stop the run between two bytecodes, so
    a row is written whole or not at all; a row that cannot be written stops the run with
    exit code 2, as a worker's fault does.
    """
    run_dir = os.path.dirname(task.results_path)
    opt = state.optimizer
    names = opt.space.names

    def one(eval_id: int, config: Config) -> Evaluation:
        x = np.array([config[n] for n in names], dtype=float)
        try:
            ev = evaluate_and_log(task, eval_id, x, SERIAL_WORKER)
        except OSError as exc:
            raise watchdog.RunAborted(
                f"{os_error(task.results_path, exc, 'append a result')}; eval_id {eval_id} "
                f"was lost; the run stopped ('tuner resume {run_dir}' continues)", 2) from None
        if ev.status == "error":
            raise LawError(ev.error)
        ev.asked = config
        state.told += 1
        state.best = min(state.best, ev.value)
        if state.progress:
            state.progress(state.told, state.best)
        return ev

    try:
        watchdog.guarded(lambda: drive(opt, InProcess(one), budget=state.budget, workers=1,
                                       first_id=state.first_eval_id),
                         watchdog.Watchdog(run_dir, "serial", 1))
    finally:
        opt.close()


def run_libe(task: EvalTask, state: GenState | None, *, workers: int, comms: str,
             budget: int) -> bool:
    """Run the ensemble; returns True on the manager (rank 0), False on MPI workers."""
    from libensemble.alloc_funcs.start_only_persistent import only_persistent_gens
    from libensemble.libE import libE

    d = len(task.space.names)
    sim_specs = {"sim_f": sim_evaluate, "in": ["x", "eval_id"],
                 "out": [("f", float), ("status", "U8"), ("error", "U200"),
                         ("grad", float, (d,)), ("curv", float, (d, d)), ("x_done", float, (d,)),
                         ("worker", int)],
                 "user": {"task": task, "manager_pid": os.getpid()}}
    run_dir = os.path.dirname(task.results_path)
    # The generator is told every field a sim returns, and which evaluation it was.
    gen_specs = {"gen_f": gen_ask_tell,
                 "persis_in": ["eval_id", *(field[0] for field in sim_specs["out"])],
                 "out": [("x", float, (d,)), ("eval_id", int)],
                 "user": {"state": state, "run_dir": run_dir}}
    # active_recv_gen: the generator may wait for results without sending points first (L-BFGS
    # waits on its line search), so the manager must deliver results whenever they arrive.
    alloc_specs = {"alloc_f": only_persistent_gens,
                   "user": {"async_return": True, "active_recv_gen": True}}
    libE_specs = {"comms": comms, "disable_resource_manager": True, "gen_on_manager": True,
                  "disable_log_files": True, "save_H_and_persis_on_abort": False,
                  "abort_on_exception": True, "workflow_dir_path": run_dir}
    if comms == "mpi":
        libE_specs["mpi_comm"] = mpi.comm()
    else:
        libE_specs["nworkers"] = workers
    # sim_max is a backstop only: the generator stops itself at the budget.
    exit_criteria = {"sim_max": budget}

    def ensemble():
        return libE(sim_specs, gen_specs, exit_criteria, {}, alloc_specs, libE_specs)

    cwd = os.getcwd()
    try:
        if comms == "mpi" and mpi.rank() != 0:
            beat = watchdog.start_heartbeat(run_dir, mpi.rank())
            try:
                ensemble()
            finally:
                beat.set()
            return False
        try:
            watchdog.guarded(ensemble, watchdog.Watchdog(run_dir, comms, workers))
        except watchdog.RunAborted as exc:
            _release_generator(state)
            if comms == "mpi":
                mpi.abort(str(exc), exc.exit_code)
            raise
    finally:
        os.chdir(cwd)  # threads run in this process: libEnsemble moved it into the run dir
    if state is not None and state.fatal:
        raise LawError(state.fatal)
    if state is not None and state.errors:
        raise RuntimeError("generator failed:\n" + state.errors[0])
    return True


def _release_generator(state: GenState | None) -> None:
    """After an abort that cut the manager's shutdown short, stop the generator's thread.

    The manager normally sends STOP to the generator's worker thread at the end of its
    loop; when a dead worker's evaluation kept that loop waiting, the watchdog interrupted it
    before that send, and the non-daemon thread would keep the process alive forever. Two
    STOPs: one for the generator if it is still asking, one for libEnsemble's worker loop.
    """
    from libensemble.message_numbers import MAN_SIGNAL_FINISH, STOP_TAG
    inbox = getattr(getattr(state, "comm", None), "_inbox", None)  # libEnsemble QComm's queue
    if inbox is not None:
        inbox.put((STOP_TAG, MAN_SIGNAL_FINISH))
        inbox.put((STOP_TAG, MAN_SIGNAL_FINISH))
