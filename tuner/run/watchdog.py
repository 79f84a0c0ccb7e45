"""Faults during an ensemble: dead workers, worker exceptions, SIGTERM/SIGHUP, capacity limits.

libEnsemble's manager polls its workers and never notices one that died: it waits for its
result forever, at 100% CPU. A ``Watchdog`` runs beside the manager (a thread in the manager
process) for the length of ``run_libe`` and ends the run when

- a local worker process exits while the run goes on (``multiprocessing`` children);
- an MPI worker rank stops touching its heartbeat file (``RUN/.workers/w<rank>``);
- a worker reports a fault it cannot turn into a failed evaluation (an exception escaping the
  evaluation, results.csv unwritable): a process or rank writes it to its worker file and
  exits, a thread (``--comms threads``) records it here and waits;
- the manager receives SIGTERM or SIGHUP.

It ends the run the way Ctrl-C does: an exception raised in the manager's main thread, which
libEnsemble's ``finally`` blocks answer by stopping the generator and the workers. Workers
still evaluating finish and log first; if a dead worker's evaluation keeps the manager
waiting, the watchdog raises once more. ``run_libe`` turns the exception into ``RunAborted``
(one line, an exit code), and ``tuner resume RUN_DIR`` re-runs only what was lost.

Under ``mpirun`` a rank's death usually ends every rank at once (the launcher kills them
with SIGKILL), before the heartbeat can be missed; ``tuner.run.sentinel`` then says why.

Each worker keeps ``RUN/.workers/w<id>`` (pid and the eval_id it is running) so a death names
the evaluation it lost. Worker processes forked during a run die with the manager
(``PR_SET_PDEATHSIG``), so none is left holding the run's lock.
"""
from __future__ import annotations

import _thread
import json
import multiprocessing
import os
import resource
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Callable

from tuner.errors import TunerError
from tuner.run import sentinel

POLL_SECONDS = 0.5
HEARTBEAT_SECONDS = 1.0
DEAD_AFTER_SECONDS = 6.0  # an MPI rank whose heartbeat is older than this is dead
GRACE_SECONDS = 10.0  # how long live workers may finish their evaluation once the run stops
SIGNAL_EXIT = {signal.SIGTERM: 143, signal.SIGHUP: 129}
_WAKE = signal.SIGUSR1  # how the watchdog thread interrupts the manager's main thread


class RunAborted(TunerError):
    """The run stopped early (a dead worker, a signal, a full disk); resumable.

    ``exit_code`` is what the CLI exits with: 1 for a dead worker, 2 for a run file that
    cannot be written, 128 + signal number for a signal.
    """

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


class _Stop(BaseException):
    """Raised in the manager's main thread. A BaseException, like KeyboardInterrupt, so that
    libEnsemble's ``except Exception`` blocks do not log it as a crash, while its ``finally``
    blocks still stop the generator and the workers."""


# --- capacity -------------------------------------------------------------------------------

BYTES_PER_EVAL = 16 * 1024  # libEnsemble's history row, the optimizer's record and its models
FDS_PER_PROCESS_WORKER = 8  # measured 6: two multiprocessing queues (pipes) and their locks
BYTES_PER_PROCESS_WORKER = 32 * 2**20  # measured ~12 MiB private per forked worker, plus room
FDS_RESERVED = 64  # the manager's own files, libraries, results.csv and its lock
MAX_THREAD_WORKERS = 1024


def memory_bytes() -> int:
    """Physical memory of this machine (0 if unknown)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


MAX_FITS = 1_000_000  # whole fits in one command (bootstrap resamples, seeds x panels)
MAX_EVAL_DELAY = 86400.0


def check_seed(seed: object, what: str = "--seed") -> None:
    """A seed is an integer >= 0 (numpy refuses others with a message naming nothing)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise TunerError(f"{what} must be an integer >= 0, got {seed!r}")


def check_fits(n: int, what: str) -> None:
    """Refuse, with the limit named, a number of whole fits no machine finishes."""
    if n > MAX_FITS:
        raise TunerError(f"{what} asks for {n} fits; at most {MAX_FITS} in one command")


def check_capacity(evals: int, workers: int, comms: str) -> None:
    """Refuse, with the limit named, a budget or worker count this machine cannot hold.

    Checked before anything starts: libEnsemble preallocates its history for the whole
    budget, and every local worker process costs open files.
    """
    mem = memory_bytes()
    if mem:
        max_evals = mem // 2 // BYTES_PER_EVAL
        if evals > max_evals:
            raise TunerError(f"--evals {evals} exceeds what this machine can hold: at most "
                             f"{max_evals} evaluations ({BYTES_PER_EVAL // 1024} KiB each in "
                             f"half of {mem / 2**30:.1f} GiB of memory)")
    if comms == "local":
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY:
            max_workers = max(1, (soft - FDS_RESERVED) // FDS_PER_PROCESS_WORKER)
            if workers > max_workers:
                raise TunerError(f"--workers {workers} exceeds what this machine can hold with "
                                 f"--comms local: at most {max_workers} worker processes "
                                 f"(open-file limit {soft}, {FDS_PER_PROCESS_WORKER} per "
                                 "worker; raise it with 'ulimit -n')")
        if mem:
            max_workers = max(1, mem // 2 // BYTES_PER_PROCESS_WORKER)
            if workers > max_workers:
                raise TunerError(f"--workers {workers} exceeds what this machine can hold with "
                                 f"--comms local: at most {max_workers} worker processes "
                                 f"({BYTES_PER_PROCESS_WORKER // 2**20} MiB each in half of "
                                 f"{mem / 2**30:.1f} GiB of memory)")
    elif comms == "threads" and workers > MAX_THREAD_WORKERS:
        raise TunerError(f"--workers {workers} exceeds the limit of {MAX_THREAD_WORKERS} "
                         "worker threads with --comms threads")


# --- worker side ----------------------------------------------------------------------------

def worker_file(run_dir: str | Path, worker: int) -> Path:
    return Path(run_dir) / ".workers" / f"w{int(worker)}"


_HOST = socket.gethostname()  # the sentinel watches only the ranks on its own machine


def mark(run_dir: str | Path, worker: int, eval_id: int | None, fault: str | None = None,
         exit_code: int = 1) -> None:
    """Record what ``worker`` is doing (the eval_id it runs, None when idle) or its fault."""
    path = worker_file(run_dir, worker)
    data = json.dumps({"pid": os.getpid(), "host": _HOST, "eval_id": eval_id, "fault": fault,
                       "exit_code": exit_code}).encode()
    try:
        # Rewritten in place, twice per evaluation: a temporary file and a rename cost
        # milliseconds of directory updates each. Only this worker writes its file; a reader
        # racing a write sees unparseable JSON, which counts as no mark (read_mark).
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.pwrite(fd, data, 0)
            os.ftruncate(fd, len(data))
        finally:
            os.close(fd)
    except OSError:
        pass  # bookkeeping only: a full disk is reported by the results.csv append itself


def read_mark(run_dir: str | Path, worker: int) -> dict:
    try:
        return json.loads(worker_file(run_dir, worker).read_text())
    except (OSError, ValueError):
        return {}


def read_marks(run_dir: str | Path) -> dict[int, dict]:
    out = {}
    for p in (Path(run_dir) / ".workers").glob("w*"):
        try:
            out[int(p.name[1:])] = json.loads(p.read_text()) | {"mtime": p.stat().st_mtime}
        except (OSError, ValueError):
            continue
    return out


_THREAD_FAULTS: dict[str, list[tuple[int, int | None, str, int]]] = {}
_ENDING: set[str] = set()  # run directories whose ensemble hands out no more work


def ending(run_dir: str | Path) -> None:
    """No more work will be handed out in this run: a worker that now exits while idle ends
    normally, whatever its exit code (libEnsemble's shutdown terminates workers that are slow
    to stop, with SIGTERM, on a loaded machine)."""
    _ENDING.add(str(run_dir))
_RELEASE: dict[str, threading.Event] = {}


def report_fault(run_dir: str, worker: int, eval_id: int | None, fault: str,
                 exit_code: int, in_thread: bool) -> None:
    """A worker cannot go on: stop the run. A process or MPI rank records the fault and exits
    at once (the watchdog sees it die); a worker thread records it and waits until the
    manager is stopping, so that its return is not taken for a result."""
    if in_thread:
        _THREAD_FAULTS.setdefault(run_dir, []).append((worker, eval_id, fault, exit_code))
        event = _RELEASE.get(run_dir)
        if event is not None:
            event.wait(timeout=60)
        return
    mark(run_dir, worker, eval_id, fault, exit_code)
    os._exit(70)


def start_heartbeat(run_dir: str | Path, rank: int) -> threading.Event:
    """On an MPI worker rank: touch the rank's worker file every second until stopped."""
    stop = threading.Event()
    path = worker_file(run_dir, rank)
    path.parent.mkdir(exist_ok=True)
    if not path.exists():
        mark(run_dir, rank, None)

    def beat() -> None:
        while not stop.wait(HEARTBEAT_SECONDS):
            try:
                os.utime(path)
            except OSError:
                pass

    threading.Thread(target=beat, name="tuner-heartbeat", daemon=True).start()
    if threading.current_thread() is threading.main_thread():
        for sig in SIGNAL_EXIT:
            signal.signal(sig, _noted_signal(path))
    return stop


def _noted_signal(path: Path) -> Callable:
    """On an MPI worker rank: a signal that ends the rank is written to its worker file first,
    for the sentinel to name (``mpirun`` passes SIGTERM to every rank, and the first rank it
    ends is what the launcher then ends the whole run for)."""
    def handler(signum: int, frame) -> None:
        try:
            m = json.loads(path.read_text())
            path.write_text(json.dumps(m | {"signal": signal.Signals(signum).name}))
        except (OSError, ValueError):
            pass
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
    return handler


def _signal_name(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


# --- manager side ---------------------------------------------------------------------------

_ACTIVE: "Watchdog | None" = None


def _in_child_after_fork() -> None:
    """A worker forked during a run: default signal handling, and die with the manager."""
    global _ACTIVE
    if _ACTIVE is None:
        return
    _ACTIVE = None
    for sig in (*SIGNAL_EXIT, _WAKE):
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (ValueError, OSError):
            pass
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG: no orphan outlives the manager
        if os.getppid() == 1:  # the manager died before the line above ran
            os._exit(1)
    except (OSError, AttributeError):
        pass  # not Linux: orphans end when their queues close


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_in_child_after_fork)


class Watchdog:
    """Watches the workers of one run and ends the run on a fault or signal (see module)."""

    def __init__(self, run_dir: str | Path, comms: str, workers: int,
                 resume_hint: str | None = None, unit: str = "eval_id"):
        self.run_dir, self.comms, self.workers = str(run_dir), comms, workers
        self.unit = unit  # what a worker's mark counts: a run's eval_id, a batch's task
        self.hint = resume_hint or f"'tuner resume {run_dir}' continues"
        self.reason: tuple[str, int] | None = None
        self.active = False
        self.stopping = False  # the main thread has raised _Stop at least once
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._old_handlers: dict = {}
        self._children: dict[int, multiprocessing.process.BaseProcess] = {}
        self._interrupts = 0
        self._escaped = False  # the interrupt that ends the manager's wait has been sent
        self._last_interrupt = 0.0
        self._stopped_at = 0.0
        self._main = threading.current_thread() is threading.main_thread()
        self._sentinel = None

    def __enter__(self) -> "Watchdog":
        global _ACTIVE
        wd = Path(self.run_dir) / ".workers"
        wd.mkdir(exist_ok=True)
        for p in wd.iterdir():  # marks of an earlier, ended run
            try:
                p.unlink()
            except OSError:
                pass
        _RELEASE[self.run_dir] = threading.Event()
        _THREAD_FAULTS.pop(self.run_dir, None)
        if self._main:
            for sig in (*SIGNAL_EXIT, _WAKE):
                self._old_handlers[sig] = signal.signal(sig, self._on_signal)
        if self.comms == "mpi":
            self._sentinel = sentinel.start(self.run_dir, self.hint, self.unit)
        self.active = True
        _ACTIVE = self
        self._thread = threading.Thread(target=self._watch, name="tuner-watchdog", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop watching and restore the signal handlers (idempotent)."""
        global _ACTIVE
        with self._lock:
            self.active = False
        _ACTIVE = None
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        _ENDING.discard(self.run_dir)
        release = _RELEASE.pop(self.run_dir, None)
        if release is not None:
            release.set()
        _THREAD_FAULTS.pop(self.run_dir, None)
        # From here the manager speaks for itself: the run ended, or its caller prints why.
        sentinel.said(self._sentinel)
        self._sentinel = None
        for sig, old in self._old_handlers.items():
            signal.signal(sig, old)
        self._old_handlers = {}

    def end_workers(self) -> None:
        """After an abort: end the worker processes libEnsemble's cleanup did not reach
        (multiprocessing would otherwise wait for them when this process exits)."""
        for p in self._children.values():
            if p.exitcode is None:
                p.terminate()
        for p in self._children.values():
            p.join(timeout=2)
            if p.exitcode is None:
                p.kill()

    def aborted(self) -> RunAborted | None:
        """What ended the run, as the one-line error to raise (None: it was not stopped)."""
        if self.reason is None:
            return None
        return RunAborted(self.reason[0], self.reason[1])

    # Runs in the main thread: Python delivers every signal there.
    def _on_signal(self, signum: int, frame) -> None:
        if not self.active:
            return
        if signum in SIGNAL_EXIT and self.reason is None:
            name = signal.Signals(signum).name
            self.reason = (f"stopped by {name}; finished evaluations are in "
                           f"{self.run_dir}/results.csv ({self.hint})", SIGNAL_EXIT[signum])
        if self.reason is None:
            return
        self.stopping = True
        self._stopped_at = self._stopped_at or time.monotonic()
        raise _Stop(self.reason[0])

    def _interrupt(self) -> None:
        with self._lock:
            if self.active and self._main:
                self._interrupts += 1
                self._last_interrupt = time.monotonic()
                _thread.interrupt_main(_WAKE)
                self._escaped = self.stopping

    def _watch(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            try:
                self._check()
            except Exception:  # the watchdog must never be what breaks a run
                continue

    def _check(self) -> None:
        dead = self._dead_workers()
        if self.reason is None and dead:
            self.reason = dead[0]
        if self.reason is None:
            return
        if not self.stopping:
            if self._interrupts == 0 or time.monotonic() - self._last_interrupt > 2:
                self._interrupt()
            return
        _RELEASE.get(self.run_dir, threading.Event()).set()  # worker threads may return now
        # The manager waits for every worker it gave work to; a dead one never answers (its
        # mark may not even show the evaluation, if it died before starting it). Once the
        # live ones are done (or had their grace), interrupt that wait.
        if self._escaped or time.monotonic() - self._last_interrupt < 2:
            return  # once only: another interrupt could cut libEnsemble's worker cleanup short
        if self._any_dead() and (not self._busy_alive()
                                 or time.monotonic() - self._stopped_at > GRACE_SECONDS):
            self._interrupt()

    def _processes(self) -> dict[int, multiprocessing.process.BaseProcess]:
        for p in multiprocessing.active_children():
            self._children.setdefault(p.pid, p)
        return self._children

    def _dead_workers(self) -> list[tuple[str, int]]:
        """One (message, exit code) per worker that died or reported a fault."""
        found = []
        for worker, eval_id, fault, code in list(_THREAD_FAULTS.get(self.run_dir, [])):
            found.append((self._lost(worker, None, eval_id, fault), code))
        if found:
            return found
        marks = read_marks(self.run_dir)
        by_pid = {m.get("pid"): (w, m) for w, m in marks.items()}
        if self.comms == "local":
            for pid, p in self._processes().items():
                code = p.exitcode
                if code is None:
                    continue
                worker, m = by_pid.get(pid, (None, {}))
                if (m.get("eval_id") is None and not m.get("fault")
                        and (code == 0 or self.run_dir in _ENDING)):
                    continue  # a normal exit at the end of the run
                found.append((self._lost(worker, pid, m.get("eval_id"), m.get("fault"),
                                         _signal_name(code)), m.get("exit_code", 1)
                              if m.get("fault") else 1))
        elif self.comms == "mpi":
            now = time.time()
            for worker, m in marks.items():
                if m.get("fault") or now - m["mtime"] > DEAD_AFTER_SECONDS:
                    found.append((self._lost(worker, m.get("pid"), m.get("eval_id"),
                                             m.get("fault"), "stopped responding"),
                                  m.get("exit_code", 1) if m.get("fault") else 1))
        return found

    def _lost(self, worker, pid, eval_id, fault, how: str = "failed") -> str:
        who = f"worker {worker}" if worker is not None else "a worker"
        if pid is not None:
            who += f" (pid {pid})"
        what = f" ({fault})" if fault else ""
        lost = (f"{self.unit} {eval_id} was lost" if eval_id is not None
                else f"no {'evaluation' if self.unit == 'eval_id' else self.unit} was lost")
        return f"{who} {how}{what}; {lost}; the run stopped ({self.hint})"

    def _busy(self) -> list[tuple[int, dict]]:
        return [(w, m) for w, m in read_marks(self.run_dir).items()
                if m.get("eval_id") is not None]

    def _alive(self, m: dict) -> bool:
        if m.get("fault"):
            return False
        if self.comms == "local":
            p = self._processes().get(m.get("pid"))
            return p is not None and p.exitcode is None
        if self.comms == "mpi":
            return time.time() - m["mtime"] <= DEAD_AFTER_SECONDS
        return True

    def _any_dead(self) -> bool:
        if self.comms in ("threads", "serial"):
            return False  # a faulted thread returns once released; nothing blocks the wait
        if self.comms == "local":
            return any(p.exitcode is not None for p in self._processes().values())
        return any(not self._alive(m) for m in read_marks(self.run_dir).values())

    def _busy_alive(self) -> bool:
        return any(self._alive(m) for _, m in self._busy())


def guarded(run: Callable[[], object], watchdog: Watchdog) -> object:
    """Call ``run`` under ``watchdog``; a stop becomes RunAborted (one line, an exit code)."""
    try:
        with watchdog:
            result = run()
    except _Stop:
        watchdog.close()  # a stop may land inside __exit__ before it finished
        watchdog.end_workers()
        raise watchdog.aborted() or RunAborted("the run stopped", 1) from None
    except Exception as exc:
        watchdog.close()
        # libEnsemble wraps what a stopped worker caused in its own exceptions.
        aborted = watchdog.aborted()
        if aborted is not None:
            watchdog.end_workers()
            raise aborted from None
        if _interrupted(exc):
            # Ctrl-C reached libEnsemble's manager, and its clean-up then failed (a worker
            # slower than its timeout to end, on a loaded machine): still an interruption.
            watchdog.end_workers()
            raise KeyboardInterrupt from None
        raise
    aborted = watchdog.aborted()
    if aborted is not None:
        raise aborted
    return result


def _interrupted(exc: BaseException) -> bool:
    """True when a KeyboardInterrupt is among the exceptions ``exc`` was raised while handling."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__context__
    return False
