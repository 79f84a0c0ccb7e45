"""libEnsemble runs: parallel workers, MPI under mpirun, faults, kill -9 and resume."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import ROOT, run_cli
from tuner.run.fit import FitConfig, fit, resume
from tuner.run.rundir import read_results


def nan_objective(params):
    """A bad point for a third of the space: recorded as failed, and the run goes on."""
    if params["alpha"] > 0.55:
        return float("nan")
    return params["e"] + params["alpha"]


def buggy_objective(params):
    """Code that raises: a bug, which must stop the run, not become a bad point."""
    if params["alpha"] > 0.55:
        raise TypeError("simulated bug")
    return params["e"] + params["alpha"]


@pytest.mark.parametrize("comms", ["local", "threads"])
def test_two_workers_share_the_work(tmp_path, comms):
    out = tmp_path / "run"
    r = run_cli("fit", "--law", "hoffmann", "--data", "chinchilla_epoch", "--optimizer",
                "random", "--evals", 16, "--workers", 2, "--comms", comms, "--eval-delay",
                0.05, "--run-dir", out, "--quiet")
    assert r.returncode == 0, r.stderr
    res = pd.read_csv(out / "results.csv")
    assert sorted(res.eval_id) == list(range(16)) and set(res.worker) == {1, 2}
    assert (res.elapsed >= 0.05).all()


def test_one_local_worker_evaluates_in_process_as_an_ensemble_of_one(tmp_path, monkeypatch):
    """One worker outside MPI runs the same loop in the calling process: the same rows as an
    ensemble of one (libEnsemble with one worker process), and libEnsemble is never
    imported."""
    serial = tmp_path / "serial"
    code = ("import sys; from tuner.cli import main; "
            "code = main(['fit', '--law', 'hoffmann', '--data', 'chinchilla_epoch', "
            "'--evals', '60', '--seed', '5', '--quiet', '--run-dir', sys.argv[1]]); "
            "print(code, 'libensemble' in sys.modules)")
    p = subprocess.run([sys.executable, "-c", code, str(serial)], capture_output=True,
                       text=True, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.split()[-2:] == ["0", "False"], p.stdout
    import tuner.run.fit as run_fit
    monkeypatch.setattr(run_fit, "in_process", lambda workers, comms: False)
    fit(FitConfig("hoffmann", "chinchilla_epoch", evals=60, seed=5), tmp_path / "libe",
        quiet=True)
    a, b = (read_results(d / "results.csv") for d in (serial, tmp_path / "libe"))
    same = ["eval_id", "e", "a", "b", "alpha", "beta", "objective", "status", "worker"]
    assert len(a) > 20
    pd.testing.assert_frame_equal(a[same], b[same])
    summaries = [json.loads((d / "summary.json").read_text()) for d in (serial, tmp_path / "libe")]
    assert summaries[0]["best_objective"] == summaries[1]["best_objective"]


def test_ytopt_async_batches_are_distinct(tmp_path):
    s = fit(FitConfig("hoffmann", "chinchilla_epoch", evals=16, workers=2, n_initial_points=4,
                      eval_delay=0.02), tmp_path / "y", quiet=True)
    res = read_results(Path(s["run_dir"]) / "results.csv")
    assert len(res) == 16
    assert len(res[["e", "a", "b", "alpha", "beta"]].drop_duplicates()) == 16


def test_failed_evaluation_is_recorded_and_run_completes(tmp_path):
    s = fit(FitConfig("hoffmann", "chinchilla_epoch", optimizer="random", evals=20),
            tmp_path / "f", quiet=True, objective_fn=nan_objective)
    res = read_results(Path(s["run_dir"]) / "results.csv")
    failed = res[res.status == "failed"]
    assert len(res) == 20 and len(failed) > 0 and s["failed"] == len(failed)
    assert failed.error.str.contains("objective returned nan").all()
    assert (res[res.status == "ok"].alpha <= 0.55).all()


@pytest.mark.parametrize("comms", ["local", "threads"])
def test_an_error_in_the_objectives_code_stops_the_run(tmp_path, comms):
    from tuner.errors import TunerError
    with pytest.raises(TunerError, match="custom objective: TypeError: simulated bug"):
        fit(FitConfig("hoffmann", "chinchilla_epoch", optimizer="random", evals=40,
                      comms=comms), tmp_path / "b", quiet=True, objective_fn=buggy_objective)
    raw = pd.read_csv(tmp_path / "b" / "results.csv")
    assert (raw.status == "error").sum() == 1  # stopped at the first occurrence
    assert len(raw) < 40
    # not a result: resume (once the bug is fixed) evaluates it again
    assert "error" not in set(read_results(tmp_path / "b" / "results.csv").status)


@pytest.mark.parametrize("optimizer", ["ytopt", "lbfgs", "random"])
def test_kill9_then_resume_reaches_budget_without_rerunning(tmp_path, optimizer):
    out = tmp_path / "k"
    budget = 24
    proc = subprocess.Popen(
        [sys.executable, "-m", "tuner", "fit", "--law", "hoffmann", "--data",
         "chinchilla_epoch", "--optimizer", optimizer, "--evals", str(budget), "--workers",
         "2", "--eval-delay", "0.15", "--run-dir", str(out), "--quiet",
         *(["--initial-points", "4"] if optimizer == "ytopt" else [])], cwd=ROOT, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            if (out / "results.csv").exists() and len(read_results(out / "results.csv")) >= 8:
                break
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    done = read_results(out / "results.csv")
    assert 8 <= len(done) < budget and not (out / "summary.json").exists()
    r = run_cli("resume", out, "--quiet", "--json")
    assert r.returncode == 0, r.stderr
    res = read_results(out / "results.csv")
    assert len(res) == budget and res.eval_id.is_unique
    params = ["e", "a", "b", "alpha", "beta"]
    assert len(res[params].drop_duplicates()) == budget  # nothing evaluated twice
    pd.testing.assert_frame_equal(res.iloc[:len(done)][params], done[params])
    assert json.loads(r.stdout)["evals"] == budget


def test_resume_extends_budget(tmp_path):
    out = tmp_path / "x"
    assert run_cli("fit", "--law", "hoffmann", "--data", "chinchilla_epoch", "--optimizer",
                   "lbfgs", "--evals", 50, "--run-dir", out, "--quiet").returncode == 0
    s = resume(out, evals=80, quiet=True)
    assert s["evals"] == 80 and len(read_results(out / "results.csv")) == 80


def test_resume_of_non_run_is_one_line(tmp_path):
    r = run_cli("resume", tmp_path)
    assert r.returncode == 2 and "not a tuner run directory" in r.stderr


MPIRUN = shutil.which("mpirun") or (shutil.which("mpirun", path=str(Path(sys.executable).parent)))


@pytest.mark.skipif(MPIRUN is None, reason="no mpirun on PATH or beside this Python "
                                           "(pip install '.[mpi]' provides one)")
def test_mpirun_three_ranks(tmp_path):
    out = tmp_path / "mpi"
    cmd = [MPIRUN, "-np", "3", sys.executable, "-m", "tuner", "fit", "--law", "hoffmann",
           "--data", "chinchilla_epoch", "--comms", "mpi", "--evals", "40", "--run-dir",
           str(out), "--quiet", "--eval-delay", "0.01"]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    res = read_results(out / "results.csv")
    assert len(res) == 40 and set(res.worker) == {1, 2}
    assert json.loads((out / "summary.json").read_text())["evals"] == 40


@pytest.mark.parametrize("workers", ["1", "2"])  # in process, and an ensemble
def test_ctrl_c_stops_cleanly_and_resumes(tmp_path, workers):
    out = tmp_path / "c"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tuner", "fit", "--law", "hoffmann", "--data",
         "chinchilla_epoch", "--optimizer", "random", "--evals", "60", "--workers", workers,
         "--eval-delay", "0.1", "--run-dir", str(out), "--quiet"], cwd=ROOT,
        start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # A shell's background job (`... &`) ignores SIGINT, and so would the run: as from a
        # terminal, the run starts with the default (Python then raises KeyboardInterrupt).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        # The run directory appears whole (config.json and the results header are renamed
        # into place together), so polling never reads a header-less results.csv.
        deadline = time.time() + 90
        while time.time() < deadline and proc.poll() is None:
            if (out / "results.csv").exists() and len(read_results(out / "results.csv")) >= 5:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be interrupted"
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:  # never leave the run behind when an assertion fails
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.strip().count("\n") == 0 and "interrupted" in err
    done = read_results(out / "results.csv")
    assert 5 <= len(done) < 60
    r = run_cli("resume", out, "--quiet")
    assert r.returncode == 0, r.stderr
    res = read_results(out / "results.csv")
    assert len(res) == 60 and len(res[["e", "a", "b", "alpha", "beta"]].drop_duplicates()) == 60


def test_resume_of_a_converged_run_runs_nothing(tmp_path):
    from tuner.run.fit import FitConfig, fit
    s = fit(FitConfig("hoffmann", "chinchilla_epoch", evals=300, seed=11), tmp_path / "r",
            quiet=True)
    assert s["evals"] < 300 and "converged" in s["stopped"]
    before = (tmp_path / "r" / "results.csv").read_bytes()
    again = resume(tmp_path / "r", quiet=True)
    assert again["evals"] == s["evals"] and (tmp_path / "r" / "results.csv").read_bytes() == before


def test_a_rank_that_runs_no_optimizer_imports_no_scikit_optimize():
    """MPI worker ranks and reports prepare a fit without its optimizer: under mpirun every
    rank imports at once, so scikit-optimize's import (about a second) would be paid by each."""
    import subprocess
    import sys
    code = ("import sys; from tuner.run.fit import FitConfig, prepare; "
            "prepare(FitConfig('hoffmann', 'chinchilla_epoch'), optimizer=sys.argv[1] == '1'); "
            "print('skopt' in sys.modules)")
    out = [subprocess.run([sys.executable, "-c", code, flag], capture_output=True, text=True)
           for flag in ("0", "1")]
    assert all(p.returncode == 0 for p in out), out[0].stderr[-1500:] + out[1].stderr[-1500:]
    assert [p.stdout.strip() for p in out] == ["False", "True"]
