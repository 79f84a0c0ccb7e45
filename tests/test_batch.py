"""Many fits at once: tuner.run.batch, and bootstrap, rank, validate --loo and sweep over it.

Each parallel path must give the one-worker results exactly (tasks are seeded, results come
back in task order), in process and under mpirun.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import tuner
from tuner.errors import TunerError
from tuner.run.batch import Task, TaskFailed, run_tasks

ROOT = Path(__file__).resolve().parent.parent
MPIRUN = shutil.which("mpirun") or shutil.which("mpirun", path=str(Path(sys.executable).parent))


def _slow_square(i: int, delay: float) -> tuple[int, int]:
    time.sleep(delay)
    return i * i, os.getpid()


def _bad_input(i: int) -> int:
    if i == 2:
        raise TunerError(f"task {i} was given bad input")
    return i


def _bug(i: int) -> int:
    if i == 1:
        raise ZeroDivisionError("a bug in task 1")
    return i


@pytest.mark.parametrize("comms", ["local", "threads"])
def test_results_come_back_in_task_order(comms):
    # The first tasks sleep longest, so they end last: order must not follow completion.
    tasks = [Task(_slow_square, i, 0.3 - 0.05 * i) for i in range(6)]
    out = run_tasks(tasks, workers=3, comms=comms)
    assert [r[0] for r in out] == [i * i for i in range(6)]
    pids = {r[1] for r in out}
    assert (len(pids) > 1) if comms == "local" else pids == {os.getpid()}


def test_one_worker_runs_here_and_reports_progress():
    seen = []
    out = run_tasks([Task(_slow_square, i, 0.0) for i in range(3)],
                    progress=lambda done, total: seen.append((done, total)))
    assert [r[0] for r in out] == [0, 1, 4] and {r[1] for r in out} == {os.getpid()}
    assert seen == [(0, 3), (1, 3), (2, 3), (3, 3)]
    assert run_tasks([], workers=2) == []


def test_task_errors_reach_the_caller():
    with pytest.raises(TunerError, match="task 2 was given bad input"):
        run_tasks([Task(_bad_input, i) for i in range(4)], workers=2)
    with pytest.raises(TaskFailed, match="ZeroDivisionError: a bug in task 1"):
        run_tasks([Task(_bug, i) for i in range(3)], workers=2, comms="threads")
    with pytest.raises(TunerError, match="--workers"):
        run_tasks([Task(_bug, 0)], workers=0)


@pytest.fixture(scope="module")
def table3():
    from tuner.fitting.loop import minimize_inprocess
    from tuner.fitting.objective import Objective, ObjectiveSpec
    obj = Objective.from_spec(ObjectiveSpec("hoffmann", "hoffmann_table3"))
    space = obj.default_space()
    best, _ = minimize_inprocess(obj, space, "lbfgs", budget=100)
    return obj, space, best


def test_bootstrap_same_with_one_and_two_workers(table3):
    from tuner.analysis.bootstrap import bootstrap
    obj, space, best = table3
    one = bootstrap(obj, space, best, k=4, seed=3, quiet=True)
    two = bootstrap(obj, space, best, k=4, seed=3, workers=2, quiet=True)
    assert one["bootstrap_params"] == two["bootstrap_params"]
    assert one["intervals"] == two["intervals"]
    assert one["bootstrap"]["parallel"] == "serial"
    assert two["bootstrap"]["parallel"] == "libEnsemble, 2 workers (local)"


def test_rank_same_with_one_and_two_workers():
    kw = dict(laws=["hoffmann", "kaplan", "e + a/N**alpha"], evals=15, seed=1)
    one = tuner.rank("hoffmann_table3", **kw)
    done = []
    two = tuner.rank("hoffmann_table3", workers=2, progress=lambda d, n: done.append(d), **kw)
    assert one.to_json() == two.to_json()
    assert set(one.law) == {"hoffmann", "kaplan", "e + a/N**alpha"} and done[-1] == 3


def test_leave_one_out_same_with_one_and_two_workers(good_csv):
    kw = dict(loo=True, evals=10, residual="log")
    one = tuner.validate("kaplan", str(good_csv), **kw)
    two = tuner.validate("kaplan", str(good_csv), workers=2, comms="threads", **kw)
    assert tuner.api.to_json(one) == tuner.api.to_json(two)
    assert one["test_runs"] == 6 and one["train_runs"] == 5


GRID = {"laws": ["hoffmann", "kaplan"], "datasets": ["hoffmann_table3", "runs.csv"],
        "evals": 12, "seeds": [0, 1], "options": {"optimizer": ["ytopt", "random"]}}


@pytest.fixture
def grid_file(tmp_path, good_csv):
    (tmp_path / "grid.json").write_text(json.dumps(GRID))  # runs.csv: beside it
    return tmp_path / "grid.json"


def _stable(frame):
    return frame.drop(columns="wall_seconds").to_json()


def test_sweep_same_with_one_and_two_workers(grid_file):
    one = tuner.sweep(grid_file)
    two = tuner.sweep(grid_file, workers=2)
    assert len(one) == 16 and _stable(one) == _stable(two)
    assert list(one.fit) == list(range(1, 17))
    first = one.iloc[0]
    assert (first.law, first.data, first.optimizer, first.seed) == ("hoffmann",
                                                                    "hoffmann_table3",
                                                                    "ytopt", 0)
    assert one.iloc[-1][["law", "data", "optimizer", "seed"]].tolist() == \
        ["kaplan", "runs.csv", "random", 1]
    assert (one.evaluations == 12).all() and (one.wall_seconds > 0).all()


def test_sweep_toml_and_cli_json(tmp_path, capsys):
    from tuner.cli import main
    path = tmp_path / "grid.toml"
    path.write_text('laws = ["hoffmann"]\ndatasets = ["hoffmann_table3"]\nevals = 8\n'
                    'seeds = [0, 1]\n[options]\nresidual = ["log", "linear"]\n')
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--json", "--quiet", "--workers", "2",
                 "--comms", "threads"]) == 0
    doc = json.loads(capsys.readouterr().out)
    rows = doc["rows"]
    assert [(r["residual"], r["seed"]) for r in rows] == [("log", 0), ("log", 1),
                                                          ("linear", 0), ("linear", 1)]
    assert set(rows[0]["params"]) == {"e", "a", "b", "alpha", "beta"}
    assert all(r["evaluations"] == 8 and r["best_objective"] >= 0 for r in rows)
    assert doc["tables"] == [str(out / "sweep.md"), str(out / "sweep.csv")]
    csv = (out / "sweep.csv").read_text().splitlines()
    assert len(csv) == 5 and csv[0].startswith("fit,law,data,residual,evals,seed")
    assert "alpha" in csv[0].split(",")
    # the plain output: the table, one coefficient line per fit, the tables' paths
    assert main(["sweep", str(path), "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    header = [c.strip() for c in text.splitlines()[0].strip("|").split("|")]
    assert header[:4] == ["fit", "law", "data", "residual"] and "alpha" not in header
    assert "fit 4: e=" in text and text.rstrip().endswith("sweep.csv")


@pytest.mark.skipif(MPIRUN is None, reason="no mpirun (pip install '.[mpi]' provides one)")
def test_sweep_under_mpirun_matches_one_worker(grid_file, tmp_path):
    r = subprocess.run([MPIRUN, "-np", "3", sys.executable, "-m", "tuner", "sweep",
                        str(grid_file), "--comms", "mpi", "--out", str(tmp_path / "mpi"),
                        "--json", "--quiet"], capture_output=True, text=True, timeout=300,
                       cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr[-2000:]
    rows = json.loads(r.stdout)["rows"]  # only rank 0 prints
    one = tuner.sweep(grid_file)
    strip = [{k: v for k, v in row.items() if k != "wall_seconds"} for row in rows]
    assert strip == json.loads(tuner.api.to_json(one.drop(columns="wall_seconds")))


@pytest.mark.skipif(MPIRUN is None, reason="no mpirun (pip install '.[mpi]' provides one)")
def test_fit_bootstrap_under_mpirun_runs_the_refits_on_the_ranks(tmp_path):
    args = ["fit", "--law", "hoffmann", "--data", "hoffmann_table3", "--optimizer", "lbfgs",
            "--evals", "60", "--bootstrap", "4", "--quiet"]
    r = subprocess.run([MPIRUN, "-np", "3", sys.executable, "-m", "tuner", *args, "--comms",
                        "mpi", "--run-dir", str(tmp_path / "mpi")], capture_output=True,
                       text=True, timeout=300, cwd=tmp_path,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr[-2000:]
    mpi = json.loads((tmp_path / "mpi" / "summary.json").read_text())
    assert mpi["bootstrap"]["parallel"] == "libEnsemble, 2 workers (mpi)"
    serial = tuner.fit("hoffmann", "hoffmann_table3", optimizer="lbfgs", evals=60,
                       bootstrap=4, quiet=True, run_dir=tmp_path / "one")
    assert serial.summary["bootstrap"]["parallel"] == "serial"
    assert mpi["bootstrap_params"] == serial.summary["bootstrap_params"]
