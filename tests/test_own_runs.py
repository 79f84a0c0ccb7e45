"""A researcher's own runs: relative paths, own columns, spaces that follow the data, groups,
linear residuals (issue "Your own runs")."""
import json

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize

from tuner.cli import main
from tuner.fitting.loop import minimize_inprocess
from tuner.fitting.objective import Objective, ObjectiveSpec, huber

EPOCH_BEST = 0.0010182740178


def _law(p, n, d):
    return p["e"] + p["a"] / n ** p["alpha"] + p["b"] / d ** p["beta"]


def _study(path, truth, n_runs, n_range, d_range, noise=0.0, seed=0, columns=None):
    rng = np.random.default_rng(seed)
    n = 10 ** rng.uniform(*n_range, n_runs)
    d = 10 ** rng.uniform(*d_range, n_runs)
    loss = _law(truth, n, d) * np.exp(noise * rng.standard_normal(n_runs))
    names = columns or {"n_active": "n_active", "tokens": "tokens", "loss": "loss"}
    pd.DataFrame({names["n_active"]: n, names["tokens"]: d, names["loss"]: loss}).to_csv(
        path, index=False)
    return path


VISION = {"e": 4.5, "a": 50.0, "alpha": 0.2, "b": 1.0e6, "beta": 0.8}  # losses 5-10
SMALL_E = {"e": 0.5, "a": 300.0, "alpha": 0.3, "b": 900.0, "beta": 0.3}


def _fit(path, budget=200, **spec):
    obj = Objective.from_spec(ObjectiveSpec("hoffmann", str(path), **spec))
    params, best = minimize_inprocess(obj, obj.default_space(), "ytopt", budget=budget)
    return obj, params, best


@pytest.mark.parametrize("truth,n_range,d_range,n_runs", [
    (VISION, (6, 9), (7, 9.5), 60), (SMALL_E, (7, 10), (9, 11.5), 30)])
def test_noise_free_coefficients_within_2_percent(tmp_path, truth, n_range, d_range, n_runs):
    path = _study(tmp_path / "d.csv", truth, n_runs, n_range, d_range)
    obj, params, best = _fit(path)
    if truth is VISION:
        assert 5 <= obj.obs.min() and obj.obs.max() <= 10.5  # unlike the paper's losses
    for k, v in truth.items():
        assert params[k] == pytest.approx(v, rel=0.02), k


def _unbounded_optimum(obj, starts=40):
    """Multi-start L-BFGS on (e, log a, alpha, log b, beta) with no bounds at all."""
    rng = np.random.default_rng(0)

    def f(x):
        p = {"e": x[0], "a": np.exp(x[1]), "alpha": x[2], "b": np.exp(x[3]), "beta": x[4]}
        return obj(p)
    best = np.inf
    for _ in range(starts):
        x0 = [rng.uniform(0, obj.obs.min()), rng.uniform(0, 20), rng.uniform(0.05, 1.5),
              rng.uniform(0, 20), rng.uniform(0.05, 1.5)]
        r = minimize(f, x0, method="L-BFGS-B", options={"ftol": 1e-15, "gtol": 1e-12,
                                                         "maxiter": 5000})
        best = min(best, r.fun)
    return best


@pytest.mark.parametrize("truth,n_range,d_range,n_runs", [
    (VISION, (6, 9), (7, 9.5), 60), (SMALL_E, (7, 10), (9, 11.5), 30)])
def test_noisy_fit_reaches_the_unbounded_optimum(tmp_path, truth, n_range, d_range, n_runs):
    path = _study(tmp_path / "d.csv", truth, n_runs, n_range, d_range, noise=0.01, seed=4)
    obj, params, best = _fit(path)
    assert best <= 1.01 * _unbounded_optimum(obj)


def test_a_bound_that_is_not_physical_is_widened(tmp_path):
    truth = {"e": 1.5, "a": 2000.0, "alpha": 0.3, "b": 1e33, "beta": 4.0}  # beta beyond 3
    path = _study(tmp_path / "steep.csv", truth, 40, (7, 10), (8, 9))
    obj = Objective.from_spec(ObjectiveSpec("hoffmann", str(path)))
    from tuner.fitting.optimizers import make_optimizer
    from tuner.fitting.evaluation import evaluate
    from tuner.fitting.loop import InProcess, drive
    opt = make_optimizer("ytopt", obj.default_space(), budget=200)
    drive(opt, InProcess(lambda i, c: evaluate(obj, opt.space, c, i)), budget=200)
    params, best = opt.best()
    assert any(w["name"] == "beta" and w["bound"] == "upper" for w in opt.widenings)
    assert params["beta"] == pytest.approx(4.0, rel=0.02)


def test_groups_share_exponents_and_recover_each_corpus(tmp_path):
    truth = {"web": (1.8, 400, 2000), "code": (1.2, 250, 1500), "books": (2.2, 600, 3000)}
    frames = []
    rng = np.random.default_rng(1)
    for g, (e, a, b) in truth.items():
        n, d = 10 ** rng.uniform(7.5, 10, 25), 10 ** rng.uniform(9, 11.5, 25)
        frames.append(pd.DataFrame({"n_active": n, "tokens": d, "train_dataset": g,
                                    "loss": e + a / n ** 0.34 + b / d ** 0.37}))
    path = tmp_path / "corpora.csv"
    pd.concat(frames).to_csv(path, index=False)
    obj, params, best = _fit(path, group="train_dataset")
    got = obj.law.group_params(params)
    for g, (e, a, b) in truth.items():
        assert got[g]["e"] == pytest.approx(e, rel=0.02)
        assert got[g]["a"] == pytest.approx(a, rel=0.02)
        assert got[g]["b"] == pytest.approx(b, rel=0.02)
        assert got[g]["alpha"] == pytest.approx(0.34, rel=0.02)
    # without --group the pooling is named, with the column to group by
    pooled = Objective.from_spec(ObjectiveSpec("hoffmann", str(path)))
    assert any("--group train_dataset" in w for w in pooled.dataset.group_hints(None))
    # --per-group: only e per corpus, the rest shared
    obj = Objective.from_spec(ObjectiveSpec("hoffmann", str(path), group="train_dataset",
                                            per_group=("e",)))
    assert obj.law.params == ("e[books]", "e[code]", "e[web]", "a", "b", "alpha", "beta")


def test_linear_residual(tmp_path):
    path = _study(tmp_path / "d.csv", VISION, 60, (6, 9), (7, 9.5), noise=0.003)
    obj, params, best = _fit(path, residual="linear", delta=0.05)
    pred = obj.predict(params)
    assert best == pytest.approx(huber(pred - obj.obs, 0.05).sum())
    log_obj = Objective.from_spec(ObjectiveSpec("hoffmann", str(path)))
    assert best < obj({**params, "e": params["e"] * 1.01})  # a true optimum of this residual
    assert log_obj(params) != pytest.approx(best)


def _cli(argv, capsys):
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_relative_path_resume_elsewhere_and_changed_data(tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"
    work.mkdir()
    _study(work / "mine.csv", SMALL_E, 30, (7, 10), (9, 11.5), noise=0.01)
    monkeypatch.chdir(work)
    code, out, err = _cli(["fit", "--law", "hoffmann", "--data", "mine.csv", "--evals", "12",
                           "--run-dir", "run", "--quiet", "--workers", "2"], capsys)
    assert code == 0, err
    config = json.loads((work / "run" / "config.json").read_text())["fit"]
    assert config["data"] == str(work / "mine.csv") and len(config["data_sha256"]) == 64
    monkeypatch.chdir(tmp_path)
    code, out, err = _cli(["resume", "work/run", "--evals", "20", "--quiet", "--comms",
                           "threads"], capsys)
    assert code == 0, err
    assert len(pd.read_csv(work / "run" / "results.csv")) == 20
    with open(work / "mine.csv", "a") as fh:
        fh.write("1e9,1e10,2.5\n")
    before = (work / "run" / "config.json").read_text()
    code, out, err = _cli(["resume", "work/run", "--evals", "30"], capsys)
    assert code == 2 and "mine.csv: the dataset changed" in err
    assert (work / "run" / "config.json").read_text() == before


def test_columns_map_a_dense_csv_with_several_losses(tmp_path, monkeypatch, capsys):
    rng = np.random.default_rng(2)
    n, d = 10 ** rng.uniform(7, 10, 40), 10 ** rng.uniform(9, 11.5, 40)
    loss = _law(SMALL_E, n, d)
    pd.DataFrame({"params": n, "toks": d, "loss_a": loss, "loss_b": loss * 1.1}).to_csv(
        tmp_path / "dense.csv", index=False)
    monkeypatch.chdir(tmp_path)
    fits = {}
    for col in ("loss_a", "loss_b"):
        code, out, err = _cli(["fit", "--law", "hoffmann", "--data", "dense.csv", "--columns",
                               f"n_active=params,tokens=toks,loss={col}", "--evals", "150",
                               "--run-dir", col, "--quiet", "--json"], capsys)
        assert code == 0, err
        fits[col] = json.loads(out)["best_params"]
    assert fits["loss_a"]["e"] == pytest.approx(0.5, rel=0.02)
    assert fits["loss_b"]["alpha"] == pytest.approx(0.3, rel=0.02)  # 1.1 L: same exponents
    code, out, err = _cli(["score", "--law", "hoffmann", "--data", "dense.csv", "--columns",
                           "n_active=params,tokens=toks,loss=loss_a", "--coefficients",
                           "loss_a", "--json"], capsys)
    assert code == 0 and json.loads(out)["objective"] < 1e-20


@pytest.mark.parametrize("extra,message", [
    (["--columns", "n_active=nope,tokens=toks,loss=loss_a"], "no column 'nope'"),
    (["--columns", "tokens=toks,loss=loss_a"], "missing column(s) n_active"),
    (["--columns", "n_active=params,tokens=toks"], "missing column(s) loss"),
    (["--columns", "params=n_active"], "'params' is not one of tuner's names"),
    (["--columns", "n_active=params,tokens=toks,loss=loss_a", "--group", "one"],
     "one value"),
    (["--columns", "n_active=params,tokens=toks,loss=loss_a", "--group", "run"],
     "each group needs at least 2 runs"),
    (["--columns", "n_active=params,tokens=toks,loss=loss_a", "--group", "kind",
      "--per-group", "zeta"], "--per-group: zeta not coefficients of hoffmann"),
    (["--columns", "n_active=params,tokens=toks,loss=loss_a", "--group", "missing"],
     "no column 'missing'")])
def test_bad_columns_and_groups_are_one_line_and_write_nothing(tmp_path, monkeypatch, capsys,
                                                               extra, message):
    frame = pd.DataFrame({"params": [1e8, 2e8, 4e8, 8e8], "toks": [1e9, 2e9, 4e9, 8e9],
                          "loss_a": [3.0, 2.8, 2.6, 2.5], "one": "x", "run": list("abcd"),
                          "kind": ["p", "p", "q", "q"]})
    frame.to_csv(tmp_path / "d.csv", index=False)
    monkeypatch.chdir(tmp_path)
    code, out, err = _cli(["fit", "--law", "hoffmann", "--data", "d.csv", "--evals", "5",
                           "--quiet", *extra], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.csv"]
