"""The Python API a notebook uses: tuner.fit/load/load_runs/score/predict/allocate, the
quickstart example, a cheap `import tuner`, progress displays, and run bookkeeping."""
import io
import json
import os
import runpy
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import tuner
from conftest import ROOT
from tuner.run.progress import Progress


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    base = tmp_path_factory.mktemp("api")
    a = tuner.fit("hoffmann", "chinchilla_epoch", evals=30, seed=1, run_dir=base / "a",
                  quiet=True)
    b = tuner.fit("frantar", "frantar_t5", optimizer="random", evals=8, run_dir=base / "b",
                  quiet=True)
    return base, a, b


def test_quickstart_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["quickstart.py", str(tmp_path / "qs")])
    runpy.run_path(str(ROOT / "examples" / "quickstart.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "FitResult(hoffmann on chinchilla_epoch, ytopt, 60 evals" in out
    assert "eval_id" in out and "best_objective" in out
    runs = tuner.load_runs(tmp_path / "qs")
    assert sorted(runs.optimizer) == ["random", "ytopt"] and runs.finished.all()


def test_fit_result(fitted):
    base, a, _ = fitted
    assert isinstance(a, tuner.FitResult) and a.run_dir == (base / "a").resolve()
    assert set(a.params) == {"e", "a", "b", "alpha", "beta"}
    assert a.objective == pytest.approx(a.trials.objective.min())
    assert a.objective < a.published_objective
    assert isinstance(a.trials, pd.DataFrame) and len(a.trials) == 30
    assert a.intervals == {} and isinstance(a.warnings, list)
    text = repr(a)
    assert text.startswith("FitResult(hoffmann on chinchilla_epoch, ytopt, 30 evals")
    assert "alpha" in text and str(a.run_dir) in text
    loaded = tuner.load(base / "a")
    assert loaded.params == a.params and loaded.summary == a.summary


def test_load_runs_paths_glob_folder_and_unfinished(fitted, tmp_path):
    base, a, b = fitted
    by_list = tuner.load_runs([base / "a", base / "b"])
    by_glob = tuner.load_runs(str(base / "*"))
    by_folder = tuner.load_runs(base)
    for df in (by_list, by_glob, by_folder):
        assert list(df.law) == ["hoffmann", "frantar"]
    row = by_list.set_index("law")
    assert row.loc["hoffmann", "best_objective"] == a.objective
    assert row.loc["hoffmann", "alpha"] == a.params["alpha"]
    assert pd.isna(row.loc["frantar", "alpha"]) and row.loc["frantar", "aS"] == b.params["aS"]
    # A run without summary.json (killed) still shows its best so far.
    shutil.copytree(base / "a", tmp_path / "killed")
    (tmp_path / "killed" / "summary.json").unlink()
    k = tuner.load_runs(tmp_path / "killed").iloc[0]
    assert not k.finished and k.best_objective == a.objective and k.alpha == a.params["alpha"]
    with pytest.raises(tuner.TunerError, match="no run directories"):
        tuner.load_runs(str(tmp_path / "nothing*"))
    with pytest.raises(tuner.TunerError, match="unfinished|no summary"):
        tuner.load(tmp_path / "killed")


def test_score_predict_allocate(fitted):
    _, a, _ = fitted
    s = tuner.score("hoffmann", "chinchilla_epoch", a)
    assert s["objective"] == pytest.approx(a.objective, rel=1e-12)
    # A partial mapping is completed with published values.
    s2 = tuner.score("hoffmann", "chinchilla_epoch", {"e": 1.8})
    assert s2["params"]["e"] == 1.8 and s2["params"]["alpha"] == 0.34
    one = tuner.predict("hoffmann", 7e10, 1.4e12, coefficients=a)
    assert isinstance(one, dict) and one["loss"] > a.params["e"]
    many = tuner.predict("hoffmann", [1e9, 7e10], 1.4e12, coefficients=a)
    assert isinstance(many, pd.DataFrame) and many.loss.iloc[1] == pytest.approx(one["loss"])
    table = tuner.predict("hoffmann", "hoffmann_table3")
    assert len(table) == 9 and (table.loss > 1.69).all()
    alloc = tuner.allocate("hoffmann", [1e20, 5.76e23], coefficients=a)
    assert list(alloc.compute) == [1e20, 5.76e23] and alloc.n_active.is_monotonic_increasing
    with pytest.raises(tuner.TunerError, match="zeta"):
        tuner.score("hoffmann", "chinchilla_epoch", {"zeta": 1.0})


def test_bad_options_raise_tuner_error(tmp_path):
    with pytest.raises(tuner.TunerError, match="unknown option.*evalz"):
        tuner.fit("hoffmann", "chinchilla_epoch", evalz=3, run_dir=tmp_path / "x")
    with pytest.raises(tuner.TunerError, match="unknown optimizer"):
        tuner.fit("hoffmann", "chinchilla_epoch", optimizer="sgd", run_dir=tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_import_is_cheap_and_lazy():
    code = ("import sys, tuner; heavy = [m for m in ('numpy', 'pandas', 'skopt', 'libensemble',"
            " 'matplotlib', 'tqdm') if m in sys.modules]; print(heavy); "
            "print(sorted(n for n in tuner.__all__ if not hasattr(tuner, n)))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["[]", "[]"]


def test_public_names_have_docstrings_and_hints():
    import inspect

    import tuner.api
    missing = []
    for name in tuner.__all__:
        obj = getattr(tuner, name)
        if name.startswith("__"):
            continue
        if not inspect.getdoc(obj):
            missing.append(name)
        if inspect.isfunction(obj) and "return" not in obj.__annotations__:
            missing.append(f"{name} (return type)")
    for name, prop in inspect.getmembers(tuner.FitResult, lambda m: isinstance(m, property)):
        if not prop.__doc__:
            missing.append(f"FitResult.{name}")
    assert missing == []


def test_fit_is_the_function_whatever_is_imported():
    import tuner.fitting.objective  # noqa: F401  (a submodule import must not hide tuner.fit())
    assert callable(tuner.fit) and tuner.fit is tuner.api.fit
    assert "law" in str(__import__("inspect").signature(tuner.fit))


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_progress_plain_lines_in_logs():
    log = io.StringIO()
    p = Progress(40, quiet=False, desc="fit x", stream=log)
    assert p.mode == "lines"
    p(1, 0.5)
    time.sleep(0.02)
    for told in range(2, 41):
        p(told, 0.5 / told)
    p.close(40, 0.5 / 40)
    lines = log.getvalue().splitlines()
    assert lines[0].startswith("fit x: [ 1/40] best 0.5") and "ETA ?" in lines[0]
    assert len(lines) == 11 and lines[-1].startswith("fit x: [40/40] best 0.0125")
    assert all("\r" not in line for line in lines)


def test_progress_bar_on_a_terminal_and_quiet():
    tty = _Tty()
    p = Progress(10, done=4, stream=tty, desc="fit x")
    assert p.mode == "bar"
    p(1, 2.0)
    time.sleep(0.02)
    p(3, 1.0)
    p.close()
    out = tty.getvalue()
    assert "\r" in out and "7/10" in out and "best 1" in out and "eval/s" in out
    # The rate counts from the first result, not from the start: no ETA of minutes here.
    assert p.eta() < 5
    silent = _Tty()
    q = Progress(10, quiet=True, stream=silent)
    q(5, 1.0)
    q.close(10)
    assert silent.getvalue() == "" and q.mode == "none"


MPIRUN = shutil.which("mpirun") or shutil.which("mpirun", path=str(Path(sys.executable).parent))


@pytest.mark.skipif(MPIRUN is None, reason="no mpirun (pip install '.[mpi]' provides one)")
def test_mpi_config_records_real_workers(tmp_path):
    out = tmp_path / "mpi"
    r = subprocess.run([MPIRUN, "-np", "3", sys.executable, "-m", "tuner", "fit", "--law",
                        "hoffmann", "--data", "hoffmann_table3", "--optimizer", "random",
                        "--comms", "mpi", "--evals", "6", "--run-dir", str(out), "--quiet"],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr[-2000:]
    config = json.loads((out / "config.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    assert config["fit"]["workers"] == 2 and summary["segments"][0]["workers"] == 2
    # An error only the manager rank checks (the optimizer: worker ranks build none) stops
    # every rank with its one line, rather than leaving the workers waiting for it.
    config["fit"]["optimizer"] = "nonsense"
    (out / "config.json").write_text(json.dumps(config))
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    r = subprocess.run([MPIRUN, "-np", "3", sys.executable, "-m", "tuner", "resume", str(out),
                        "--evals", "10"], capture_output=True, text=True, timeout=120,
                       cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 2, r.stderr[-2000:]
    assert "tuner: error: unknown optimizer 'nonsense'" in r.stderr and "Traceback" not in r.stderr
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_progress_in_jupyter_is_a_bar(monkeypatch):
    import types

    class Shell:
        config = {"IPKernelApp": {}}

    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=Shell))
    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    from tuner.run.progress import in_notebook
    assert in_notebook()
    assert Progress(10, stream=io.StringIO()).mode == "bar"  # not a TTY, yet a bar
    monkeypatch.delitem(sys.modules, "ipykernel")
    assert not in_notebook() and Progress(10, stream=io.StringIO()).mode == "lines"
