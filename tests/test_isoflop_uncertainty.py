"""Approach 2 (isoFLOP profiles) and curvature-based standard errors."""
import math

import numpy as np
import pandas as pd
import pytest

from tuner.analysis.isoflop import approach3, cluster_compute, isoflop
from tuner.data.datasets import Dataset
from tuner.errors import TunerError
from tuner.fitting.objective import Objective, ObjectiveSpec
from tuner.fitting.uncertainty import standard_errors
from tuner.laws.spaces import paper_space, published

TRUE = {"e": 1.8, "a": 480.0, "b": 2000.0, "alpha": 0.35, "beta": 0.37}


def synthetic(noise=0.0, seed=0, budgets=(1e18, 1e19, 1e20, 1e21, 1e22), column=False):
    """Eq 2 losses on 9 sizes around each budget's optimum (so each vertex is interior)."""
    from tuner.analysis.allocate import hoffmann_closed_form
    rng = np.random.default_rng(seed)
    rows = []
    for c in budgets:
        n0, _ = hoffmann_closed_form(TRUE, c)
        for f in np.logspace(-0.8, 0.8, 9):
            n = n0 * f
            d = c / (6 * n)
            loss = TRUE["e"] + TRUE["a"] / n ** TRUE["alpha"] + TRUE["b"] / d ** TRUE["beta"]
            rows.append({"n_total": n, "n_active": n, "tokens": d, "sparsity": 0.0,
                         "loss": loss * math.exp(noise * rng.standard_normal()),
                         "budget": f"{c:g}"})
    frame = pd.DataFrame(rows)
    if not column:
        frame = frame.drop(columns="budget")
    return Dataset("synthetic", "synthetic.csv", frame, "computed")


def test_clustering_finds_budgets_and_leaves_strays_out():
    c = np.concatenate([np.full(6, 1e19) * np.exp(np.linspace(-0.1, 0.1, 6)),
                        np.full(6, 1e20), [3e20], np.full(5, 1e21)])
    label = cluster_compute(c)
    assert list(label[:6]) == [0] * 6 and list(label[6:12]) == [1] * 6
    assert label[12] == -1 and list(label[13:]) == [2] * 5


def test_recovers_eq2_exponent_and_agrees_with_approach3():
    ds = synthetic(noise=0.002)
    r = isoflop(ds, bootstrap=200)
    implied = approach3(TRUE)
    assert r.a == pytest.approx(implied["a"], abs=0.01)
    assert r.a + r.b == pytest.approx(1.0, abs=1e-9)
    assert r.a_interval[0] <= r.a <= r.a_interval[1]
    assert all(b.used for b in r.budgets) and len(r.budgets) == 5


def test_budget_column_and_bad_input():
    ds = synthetic(column=True)
    r = isoflop(ds, budget_column="budget", bootstrap=0)
    assert "column 'budget'" in r.grouping and math.isnan(r.a_interval[0])
    with pytest.raises(TunerError, match="no column 'nope'"):
        isoflop(ds, budget_column="nope")
    with pytest.raises(TunerError, match="at least 3"):
        isoflop(synthetic(budgets=(1e19, 1e20)), bootstrap=0)


def test_vertex_outside_sampled_range_is_not_an_optimum():
    ds = synthetic()
    f = ds.frame.copy()
    # Keep only the smaller half of the sizes of the first budget: its loss falls monotonically.
    first = f.index[:9]
    f = f.drop(first[4:]).reset_index(drop=True)
    r = isoflop(Dataset("x", "x.csv", f, "computed"), bootstrap=0, min_runs=3)
    assert not r.budgets[0].used and "range" in r.budgets[0].status
    assert any("left out" in w for w in r.warnings)


def test_isoflop_cli_on_chinchilla(cli, tmp_path):
    r = cli("isoflop", "--data", "chinchilla_epoch", "--bootstrap", "100",
            "--out", tmp_path / "iso")
    assert r.returncode == 0, r.stderr
    assert "N_opt ∝ C^a: a = 0.5" in r.stdout and "Approach 3" in r.stdout
    assert (tmp_path / "iso" / "isoflop.png").stat().st_size > 0
    r = cli("isoflop", "--data", "chinchilla_epoch", "--budget-column", "nope")
    assert r.returncode == 2 and "no column 'nope'" in r.stderr


def test_standard_errors_flag_unidentifiable_and_bounds():
    # Eq 7 on dense runs: c and gamma multiply S = 0.
    obj = Objective.from_spec(ObjectiveSpec("generalized", "hoffmann_table3"))
    space = paper_space("generalized")
    p = published("generalized")
    e = standard_errors(obj, space, p)
    assert e["status"]["c"] == "not identifiable" and e["status"]["gamma"] == "not identifiable"
    assert "c" not in e["correlation"]["names"]
    p2 = {**p, "alpha": space.dims[space.names.index("alpha")].upper}
    assert standard_errors(obj, space, p2)["status"]["alpha"] == "at bound"


def test_standard_errors_match_linear_least_squares():
    """mse objective on a law linear in (e, a, b) with exponents fixed: the classical
    covariance RSS/(n-p) (J^T J)^-1 of the log-residual problem."""
    ds = synthetic(noise=0.01, seed=3)
    obj = Objective(ObjectiveSpec("hoffmann", "synthetic", kind="mse"), ds)
    space = paper_space("hoffmann").with_fixed({"alpha": 0.35, "beta": 0.37})
    params = {**TRUE}
    e = standard_errors(obj, space, params)
    pred = obj.predict(params)
    g = obj.law.gradient(params, obj.runs)
    jac = np.column_stack([g[n] / pred for n in ("e", "a", "b")])
    r = obj.residuals(params)
    cov = np.linalg.inv(jac.T @ jac) * (r @ r) / (len(r) - 3)
    assert [e["stderr"][n] for n in ("e", "a", "b")] == pytest.approx(
        np.sqrt(np.diag(cov)).tolist(), rel=1e-6)
    corr = np.array(e["correlation"]["matrix"])
    assert np.allclose(np.diag(corr), 1.0)
