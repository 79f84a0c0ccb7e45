"""Faults during a run: dead workers, worker exceptions, signals, torn log lines, full disks.

Each ends the run with one line and a non-zero exit code within 10 s, leaves no process, and
``resume`` reaches the exact budget with unique eval_ids, re-running only what was lost.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT
from tuner.cli import main
from tuner.run.rundir import read_results

PARAMS = ["e", "a", "b", "alpha", "beta"]
BUDGET = 30


def fit_cmd(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "tuner", "fit", "--law", "hoffmann", "--data",
            "chinchilla_epoch", "--optimizer", "random", "--evals", str(BUDGET), "--workers",
            "2", "--eval-delay", "0.3", "--run-dir", str(out), "--quiet", *extra]


def wait_rows(out: Path, n: int, proc=None, timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if (out / "results.csv").exists() and len(read_results(out / "results.csv")) >= n:
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"run ended early: {proc.returncode}")
        time.sleep(0.05)
    raise AssertionError("no progress")


def children(pid: int) -> list[int]:
    r = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(x) for x in r.stdout.split()]


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def check_resume(out: Path, lost: set[int] = frozenset()) -> None:
    done = read_results(out / "results.csv")
    assert len(done) < BUDGET and not (out / "summary.json").exists()
    assert not lost & set(done.eval_id)
    r = subprocess.run([sys.executable, "-m", "tuner", "resume", str(out), "--quiet"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    res = read_results(out / "results.csv")
    assert len(res) == BUDGET and res.eval_id.is_unique
    assert len(res[PARAMS].drop_duplicates()) == BUDGET
    # What finished before the fault is kept as it was: nothing re-run but the lost ones.
    kept = res[res.eval_id.isin(done.eval_id)]
    assert kept[PARAMS].reset_index(drop=True).equals(done[PARAMS].reset_index(drop=True))


@pytest.fixture
def session():
    procs = []
    yield procs
    for p in procs:  # never leave a run behind, pass or fail
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def test_killed_local_worker_ends_run_and_resumes(tmp_path, session):
    out = tmp_path / "w"
    p = subprocess.Popen(fit_cmd(out), cwd=ROOT, start_new_session=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    session.append(p)
    wait_rows(out, 5, p)
    workers = children(p.pid)
    victim = workers[0]
    mark = next(json.loads(f.read_text()) for f in (out / ".workers").glob("w*")
                if json.loads(f.read_text())["pid"] == victim)
    t0 = time.time()
    os.kill(victim, signal.SIGKILL)
    _, err = p.communicate(timeout=30)
    assert time.time() - t0 < 10
    assert p.returncode == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and f"pid {victim}" in lines[0] and "SIGKILL" in lines[0], err
    assert "tuner resume" in lines[0]
    lost = set()
    if mark["eval_id"] is not None and f"eval_id {mark['eval_id']} was lost" in lines[0]:
        lost.add(mark["eval_id"])
    time.sleep(0.5)
    assert not any(alive(w) for w in workers)
    check_resume(out, lost)


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_signal_to_manager_alone_stops_workers(tmp_path, session, sig, code):
    out = tmp_path / "s"
    p = subprocess.Popen(fit_cmd(out), cwd=ROOT, start_new_session=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    session.append(p)
    wait_rows(out, 5, p)
    workers = children(p.pid)
    assert len(workers) == 2
    t0 = time.time()
    os.kill(p.pid, sig)  # the manager only, not its process group
    _, err = p.communicate(timeout=30)
    assert time.time() - t0 < 10 and p.returncode == code, err
    assert err.strip().count("\n") == 0 and signal.Signals(sig).name in err
    time.sleep(0.5)
    assert not any(alive(w) for w in workers), "workers outlived the manager"
    check_resume(out)


def test_sigterm_stops_a_run_in_process_with_one_line(tmp_path, session):
    """One local worker evaluates in the manager's process; SIGTERM ends it as it ends an
    ensemble: one line, exit 143, every logged row whole, resumable."""
    out = tmp_path / "one"
    cmd = fit_cmd(out)
    cmd[cmd.index("--workers") + 1] = "1"
    p = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    session.append(p)
    wait_rows(out, 3, p)
    assert children(p.pid) == []
    os.kill(p.pid, signal.SIGTERM)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 143 and err.strip().count("\n") == 0 and "SIGTERM" in err, err
    check_resume(out)


def test_manager_killed_leaves_no_orphan_holding_the_lock(tmp_path, session):
    out = tmp_path / "o"
    p = subprocess.Popen(fit_cmd(out), cwd=ROOT, start_new_session=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    session.append(p)
    wait_rows(out, 5, p)
    workers = children(p.pid)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    deadline = time.time() + 5
    while time.time() < deadline and any(alive(w) for w in workers):
        time.sleep(0.1)
    assert not any(alive(w) for w in workers)
    check_resume(out)


def test_exception_in_worker_thread_ends_run(tmp_path, monkeypatch, capsys):
    import tuner.run.ensemble as ens
    out = tmp_path / "t"
    real = ens.evaluate_and_log
    t_fault = []

    def faulty(task, eval_id, x, worker):
        if eval_id == 7:
            t_fault.append(time.time())
            raise RuntimeError("simulated crash")
        return real(task, eval_id, x, worker)
    monkeypatch.setattr(ens, "evaluate_and_log", faulty)
    code = main(["fit", "--law", "hoffmann", "--data", "chinchilla_epoch", "--optimizer",
                 "random", "--evals", str(BUDGET), "--workers", "2", "--comms", "threads",
                 "--eval-delay", "0.1", "--run-dir", str(out), "--quiet"])
    assert time.time() - t_fault[0] < 10
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1, err
    assert "RuntimeError: simulated crash" in err and "eval_id 7 was lost" in err
    monkeypatch.setattr(ens, "evaluate_and_log", real)
    check_resume(out, {7})


@pytest.mark.parametrize("workers,comms", [("2", "threads"), ("1", "local")])
def test_full_disk_mid_run_is_exit_2_and_resumable(tmp_path, monkeypatch, capsys, workers,
                                                   comms):
    import tuner.run.ensemble as ens
    out = tmp_path / "d"
    real = ens.append_row
    calls = []

    def append(path, header, row):
        calls.append(row["eval_id"])
        if len(calls) > 6:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(path, header, row)
    monkeypatch.setattr(ens, "append_row", append)
    code = main(["fit", "--law", "hoffmann", "--data", "chinchilla_epoch", "--optimizer",
                 "random", "--evals", str(BUDGET), "--workers", workers, "--comms", comms,
                 "--run-dir", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "No space left on device" in err, err
    monkeypatch.setattr(ens, "append_row", real)
    check_resume(out)


def test_torn_line_is_not_a_result(tmp_path, capsys):
    from tuner.run.fit import FitConfig, fit
    out = tmp_path / "torn"
    fit(FitConfig("hoffmann", "chinchilla_epoch", optimizer="random", evals=12,
                  comms="threads"), out, quiet=True)
    raw = (out / "results.csv").read_bytes()
    (out / "results.csv").write_bytes(raw[:-30])  # the last record loses its tail
    assert len(read_results(out / "results.csv")) == 11
    code = main(["resume", str(out), "--evals", "20", "--quiet"])
    err = capsys.readouterr().err
    assert code == 0
    assert err.count("torn or unparseable") == 1 and err.startswith("tuner: warning:")
    res = read_results(out / "results.csv")
    assert len(res) == 20 and res.eval_id.is_unique and 11 not in set(res.eval_id)
    assert res.eval_id.max() == 20  # the torn line's id 11 is never reused


def test_refused_resume_touches_nothing(tmp_path, capsys):
    from tuner.run.fit import FitConfig, fit
    from tuner.run.rundir import RunDir
    out = tmp_path / "busy"
    fit(FitConfig("hoffmann", "chinchilla_epoch", optimizer="random", evals=4,
                  comms="threads"), out, quiet=True)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    holder = RunDir(out).lock()  # another process would hold it the same way
    try:
        code = main(["resume", str(out), "--evals", "9", "--workers", "3"])
    finally:
        holder.release()
    err = capsys.readouterr().err
    assert code == 2 and "another tuner process" in err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


MPIRUN = shutil.which("mpirun") or shutil.which("mpirun", path=str(Path(sys.executable).parent))


@pytest.mark.skipif(MPIRUN is None, reason="no mpirun")
def test_killed_mpi_rank_ends_run_and_resumes(tmp_path, session):
    out = tmp_path / "m"
    cmd = [MPIRUN, "-np", "3", *fit_cmd(out, "--comms", "mpi")]
    cmd.remove("--workers"), cmd.remove("2")
    p = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    session.append(p)
    wait_rows(out, 5, p)
    rank2 = json.loads((out / ".workers" / "w2").read_text())["pid"]
    t0 = time.time()
    os.kill(rank2, signal.SIGKILL)
    _, err = p.communicate(timeout=30)
    assert time.time() - t0 < 10 and p.returncode != 0
    # MPICH kills every rank, the manager too; the sentinel says why, in one line.
    lines = [x for x in err.splitlines() if x.startswith("tuner:")]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"tuner: error: MPI rank 2 (pid {rank2}) ended"), err
    assert " lost; " in lines[0] and f"'tuner resume {out}' continues" in lines[0], err
    time.sleep(0.5)
    left = subprocess.run(["pgrep", "-s", str(p.pid)], capture_output=True, text=True)
    assert not left.stdout.split()
    done = read_results(out / "results.csv")
    r = subprocess.run([MPIRUN, "-np", "3", sys.executable, "-m", "tuner", "resume", str(out),
                        "--quiet"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    res = read_results(out / "results.csv")
    assert len(done) < BUDGET and len(res) == BUDGET and res.eval_id.is_unique
    assert len(res[PARAMS].drop_duplicates()) == BUDGET


def test_sentinel_names_the_first_rank_to_end_and_the_lost_evaluations(tmp_path):
    from tuner.run import sentinel
    from tuner.run.watchdog import mark
    (tmp_path / ".workers").mkdir()
    mark(tmp_path, 1, 4)
    mark(tmp_path, 2, None)
    mark(tmp_path, 3, 6)
    hint = "'tuner resume R' continues"
    line = sentinel.message(str(tmp_path), hint, 99, [(10.0, [3]), (10.1, [1, 2])], 10.5)
    assert line == (f"tuner: error: MPI rank 3 (pid {os.getpid()}) ended; MPI then ended every "
                    f"rank; eval_ids 4, 6 were lost; the run stopped ({hint})")
    # a rank that ended long before the manager did not end the run
    line = sentinel.message(str(tmp_path), hint, 99, [(1.0, [3])], 10.0)
    assert line.startswith("tuner: error: the manager (MPI rank 0, pid 99) was killed;")
    w3 = tmp_path / ".workers" / "w3"
    w3.write_text(json.dumps(json.loads(w3.read_text()) | {"signal": "SIGTERM"}))
    line = sentinel.message(str(tmp_path), hint, 99, [(10.0, [3])], 10.0)
    assert "MPI rank 3 (pid" in line and "was stopped by SIGTERM" in line
    # a batch's marks count tasks, not eval_ids
    line = sentinel.message(str(tmp_path), "h", 99, [(10.0, [1])], 10.0, unit="task")
    assert "MPI rank 1 (pid" in line and "tasks 4, 6 were lost" in line


def test_ctrl_c_is_an_interruption_even_when_the_ensemble_clean_up_fails(tmp_path):
    """A Ctrl-C lands in libEnsemble's manager, whose clean-up then raises its own Timeout
    (a worker slower to end than its timeout, seen on a loaded machine): the caller still
    sees an interruption (exit 130, one line), not libEnsemble's traceback."""
    from libensemble.comms.comms import Timeout
    from tuner.run import watchdog

    def ensemble():
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise Timeout()

    with pytest.raises(KeyboardInterrupt):
        watchdog.guarded(ensemble, watchdog.Watchdog(str(tmp_path), "threads", 2))

    def failing():
        raise Timeout()

    with pytest.raises(Timeout):  # without an interruption it is libEnsemble's error
        watchdog.guarded(failing, watchdog.Watchdog(str(tmp_path), "threads", 2))
