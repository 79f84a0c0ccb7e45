"""Bootstrap intervals, held-out validation, law ranking and degenerate-fit warnings."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tuner.laws import LAWS

from tuner.analysis.bootstrap import bootstrap
from tuner.fitting.diagnostics import degenerate
from tuner.fitting.objective import Objective, ObjectiveSpec
from tuner.fitting.loop import minimize_inprocess
from tuner.laws.spaces import paper_space

EPOCH = {"a": 482.01, "b": 2085.43, "e": 1.8169, "alpha": 0.3478, "beta": 0.3658}


@pytest.fixture(scope="module")
def chinchilla():
    obj = Objective.from_spec(ObjectiveSpec("hoffmann", "chinchilla_epoch"))
    space = paper_space("hoffmann")
    best, _ = minimize_inprocess(obj, space, budget=600)
    return obj, space, best


def test_point_estimates_match_epoch(chinchilla):
    _, _, best = chinchilla
    for n in ("e", "alpha", "beta"):
        assert best[n] == pytest.approx(EPOCH[n], rel=0.01)


def test_bootstrap_intervals_contain_epoch_and_are_reproducible(chinchilla):
    obj, space, best = chinchilla
    out = bootstrap(obj, space, best, k=30, seed=0)
    for n, v in EPOCH.items():
        lo, hi = out["intervals"][n]
        assert lo <= v <= hi, (n, lo, hi)
        assert lo <= best[n] <= hi
    assert out["bootstrap"]["K"] == 30 and len(out["bootstrap_params"]) == 30
    again = bootstrap(obj, space, best, k=5, seed=0)
    assert again["bootstrap_params"] == out["bootstrap_params"][:5]


def test_fit_bootstrap_cli(cli, tmp_path):
    run = tmp_path / "run"
    r = cli("fit", "--law", "hoffmann", "--data", "chinchilla_epoch", "--optimizer", "lbfgs",
            "--evals", "400", "--bootstrap", "4", "--quiet", "--run-dir", run)
    assert r.returncode == 0, r.stderr
    assert "bootstrap 95% intervals (K=4, seed=0" in r.stdout
    s = json.loads((run / "summary.json").read_text())
    assert set(s["intervals"]) == {"e", "a", "b", "alpha", "beta"}
    assert s["bootstrap"]["seed"] == 0
    assert len(s["warnings"]) == 1 and "K = 4 resamples" in s["warnings"][0]
    assert "warning: bootstrap used K = 4 resamples" in r.stdout
    assert "standard errors (local, from the curvature" in r.stdout
    assert s["uncertainty"]["status"] == {n: "ok" for n in ("e", "a", "b", "alpha", "beta")}


def test_validate_small_models(cli):
    r = cli("validate", "--law", "hoffmann", "--data", "chinchilla_epoch", "--train",
            "n_active < 1e9", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["rows"] and all(row["n_active"] >= 1e9 for row in out["rows"])
    assert 0 < out["median_abs_rel_error"] <= out["max_abs_rel_error"] < 0.2


@pytest.mark.parametrize("expr, message", [("nope < 1", "not a valid expression"),
                                           ("n_active < 0", "empty"),
                                           ("n_active > 0", "nothing left"),
                                           ("n_active * 2", "true/false")])
def test_validate_bad_selection(cli, expr, message):
    r = cli("validate", "--law", "hoffmann", "--data", "chinchilla_epoch", "--train", expr)
    assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_rank_frantar_t5(cli, tmp_path):
    r = cli("rank", "--data", "frantar_t5", "--evals", "100", "--out", tmp_path)
    assert r.returncode == 0, r.stderr
    header = [c.strip() for c in r.stdout.splitlines()[0].strip("|").split("|")]
    assert header[:8] == ["rank", "law", "k", "k_free", "objective", "rmse_log", "AIC", "BIC"]
    table = [line.split("|") for line in r.stdout.splitlines()[2:] if line.startswith("|")]
    laws = {row[2].strip(): row for row in table}
    assert set(laws) == set(LAWS)  # sparse runs: every law in the registry is compared
    # A fit with a coefficient on a bound of its space is listed but not ranked, and says why.
    for law, row in laws.items():
        if row[11].strip():
            assert row[1].strip() == "-" and f"{law}: not ranked" in r.stdout
    assert laws["frantar"][1].strip() in ("1", "2")
    assert (tmp_path / "rank.md").is_file() and (tmp_path / "rank.csv").is_file()


def test_clark_routing_tokens_unidentifiable():
    obj = Objective.from_spec(ObjectiveSpec("hoffmann", "clark_routing"))
    space = paper_space("hoffmann")
    params, _ = minimize_inprocess(obj, space, budget=300)
    warnings = degenerate(space, params, obj.dataset)
    assert any("tokens is nearly constant" in w and "b, beta" in w for w in warnings)


def test_dense_data_sparsity_terms_and_bounds():
    obj = Objective.from_spec(ObjectiveSpec("generalized", "chinchilla_epoch"))
    space = paper_space("generalized")
    at_bound = {**space.default(), "alpha": space.dims[space.names.index("alpha")].lower}
    warnings = degenerate(space, at_bound, obj.dataset)
    assert any("sparsity is 0 in every run" in w and "c, gamma" in w for w in warnings)
    assert any(w.startswith("alpha = ") and "lower bound" in w for w in warnings)
    e_low = {**space.default(), "e": space.dims[space.names.index("e")].lower}
    assert any(w.startswith("irreducible loss e") for w in degenerate(space, e_low,
                                                                      obj.dataset))


def test_user_csv_all_commands(cli, tmp_path):
    rng = np.random.default_rng(1)
    n = np.repeat([1e8, 3e8, 1e9, 3e9], 4)
    d = np.tile([2e9, 6e9, 2e10, 6e10], 4)
    loss = (1.8 + 480 / n ** 0.35 + 2000 / d ** 0.37) * np.exp(rng.normal(0, 0.003, len(n)))
    path = tmp_path / "mine.csv"
    path.write_text("n_total,n_active,tokens,sparsity,loss\n" + "".join(
        f"{a:g},{a:g},{b:g},0,{c:.6f}\n" for a, b, c in zip(n, d, loss)))
    r = cli("fit", "--law", "hoffmann", "--data", path, "--optimizer", "lbfgs", "--evals",
            "300", "--bootstrap", "3", "--quiet", "--run-dir", tmp_path / "run")
    assert r.returncode == 0 and "bootstrap 95% intervals" in r.stdout, r.stderr
    r = cli("validate", "--law", "hoffmann", "--data", path, "--train",
            "tokens*n_active*6 < 1e20", "--evals", "100", "--out", tmp_path / "validate")
    assert r.returncode == 0 and "median |rel error|" in r.stdout, r.stderr
    r = cli("rank", "--data", path, "--evals", "100", "--out", tmp_path / "rank")
    laws = {line.split("|")[2].strip() for line in r.stdout.splitlines()[2:] if "|" in line}
    assert r.returncode == 0 and "kaplan" in laws and "abnar" not in laws, r.stderr


def test_rank_counts_identifiable_coefficients_on_dense_data():
    """Eq 7's c and gamma multiply S = 0 on dense runs: not counted, so Eq 7 and Eq 2 tie."""
    from tuner.analysis.rank import rank
    rows = {r["law"]: r for r in rank("hoffmann_table3", ["hoffmann", "generalized"],
                                      evals=100)}
    assert rows["generalized"]["k_free"] == 7 and rows["generalized"]["k"] == 5
    assert rows["hoffmann"]["k"] == 5
    assert any("not counted in k" in w and "gamma" in w for w in rows["generalized"]["warnings"])


def test_bootstrap_flags_intervals_on_a_bound_and_few_resamples():
    from tuner.analysis.bootstrap import check_intervals
    space = paper_space("generalized")
    names = space.names
    rng = np.random.default_rng(0)
    d = space.default()
    thetas = np.array([[d[n] for n in names] for _ in range(30)])
    thetas[:, names.index("alpha")] += rng.normal(0, 0.01, 30)
    c_upper = space.dims[names.index("c")].upper
    thetas[:, names.index("c")] = c_upper  # 30 of 30 resamples on the bound
    q = np.percentile(thetas, [2.5, 97.5], axis=0)
    intervals = {n: [float(q[0, j]), float(q[1, j])] for j, n in enumerate(names)}
    flags, warnings = check_intervals(space, thetas, intervals)
    assert flags["c"] == [f"touches upper bound {c_upper:g}"]
    assert "alpha" not in flags
    assert any("30 of 30 resamples sit on it" in w for w in warnings)
    assert any("K = 30 resamples" in w and "fewer than 100" in w for w in warnings)
    # 200 resamples whose halves disagree: unstable endpoints are flagged.
    many = np.repeat(thetas[:1], 200, axis=0)
    many[:100, names.index("alpha")] = np.linspace(0.3, 0.31, 100)
    many[100:, names.index("alpha")] = np.linspace(0.3, 0.4, 100)
    q = np.percentile(many, [2.5, 97.5], axis=0)
    intervals = {n: [float(q[0, j]), float(q[1, j])] for j, n in enumerate(names)}
    flags, warnings = check_intervals(space, many, intervals)
    assert "unstable endpoints" in flags["alpha"]
    assert not any("fewer than 100" in w for w in warnings)


def test_validate_prints_warnings(cli):
    r = cli("validate", "--law", "generalized", "--data", "hoffmann_table3", "--train",
            "n_active < 1e11", "--evals", "100")
    assert r.returncode == 0, r.stderr
    assert "warning: sparsity is 0 in every run: the data cannot identify c, gamma" in r.stdout
