import numpy as np
import pytest

from tuner.errors import TunerError
from tuner.laws import get_law
from tuner.fitting.objective import PENALTY, Objective, ObjectiveSpec, huber
from tuner.laws.spaces import published
from tuner.fitting.evaluation import evaluate
from tuner.laws.spaces import paper_space


def _ev(obj, space, p):
    """(scored coefficients, value, gradient, curvature) of one evaluation."""
    ev = evaluate(obj, space, p)
    return ev.params, ev.value, ev.grad, ev.curvature

EPOCH = {"e": 1.8169, "a": 482.01, "b": 2085.43, "alpha": 0.3478, "beta": 0.3658}


def test_huber():
    r = np.array([0.0, 5e-4, -1e-3, 2e-3, -0.1])
    d = 1e-3
    want = [0, 0.5 * 25e-8, 0.5e-6, d * (2e-3 - 0.5 * d), d * (0.1 - 0.5 * d)]
    np.testing.assert_allclose(huber(r, d), want)


def test_objective_matches_hand_sum():
    obj = Objective.from_spec(ObjectiveSpec("hoffmann", "chinchilla_epoch"))
    f = obj.dataset.frame
    pred = EPOCH["e"] + EPOCH["a"] / f.n_active ** EPOCH["alpha"] + EPOCH["b"] / f.tokens ** \
        EPOCH["beta"]
    r = np.log(pred) - np.log(f.loss)
    assert obj(EPOCH) == pytest.approx(huber(r.to_numpy(), 1e-3).sum(), rel=1e-12)
    assert obj.rmse_log(EPOCH) == pytest.approx(np.sqrt(np.mean(r ** 2)), rel=1e-12)
    # Epoch's refit is far better than Table II on Epoch's data
    assert obj(EPOCH) < obj(published("hoffmann")) / 3


def test_mse_and_paper():
    mse = Objective.from_spec(ObjectiveSpec("hoffmann", "chinchilla_epoch", kind="mse"))
    assert mse(EPOCH) == pytest.approx(mse.rmse_log(EPOCH) ** 2, rel=1e-12)
    paper = Objective.from_spec(ObjectiveSpec("hoffmann", "hoffmann_table3", kind="paper"))
    assert paper(published("hoffmann")) == pytest.approx(paper.dataset.frame.loss.mean())
    # degenerate: a huge e lowers nothing, a negative-free tiny e lowers the score regardless
    smaller = {**published("hoffmann"), "e": 0.1}
    assert paper(smaller) < paper(published("hoffmann"))


def test_penalty_not_crash():
    obj = Objective.from_spec(ObjectiveSpec("hoffmann", "chinchilla_epoch"))
    assert obj({"e": -10.0, "a": 1.0, "b": 1.0, "alpha": 0.3, "beta": 0.3}) == PENALTY
    assert obj({"e": 1.0, "a": 1e308, "b": 1e308, "alpha": -5, "beta": -5}) == PENALTY
    assert obj({"e": float("nan"), "a": 1.0, "b": 1.0, "alpha": 0.3, "beta": 0.3}) == PENALTY


def test_batch_equals_single():
    obj = Objective.from_spec(ObjectiveSpec("generalized", "frantar_t5"))
    p = published("generalized")
    k = 4
    cols = {n: np.full(k, v) * (1 + 0.01 * np.arange(k)) for n, v in p.items()}
    batch = obj.batch(cols)
    for i in range(k):
        assert batch[i] == pytest.approx(obj({n: cols[n][i] for n in cols}), rel=1e-12)


def test_bad_objective_spec():
    with pytest.raises(TunerError, match="unknown objective"):
        ObjectiveSpec("hoffmann", "chinchilla_epoch", kind="l1")


@pytest.mark.parametrize("law,data,kind", [
    ("kaplan", "chinchilla_epoch", "huber"), ("hoffmann", "chinchilla_epoch", "huber"),
    ("hoffmann", "chinchilla_epoch", "mse"), ("hoffmann", "hoffmann_table3", "paper"),
    ("frantar", "frantar_t5", "huber"), ("frantar_reparam", "frantar_t5", "huber"),
    ("abnar", "abnar_reconstructed", "mse"), ("abnar", "clark_routing", "huber"),
    ("generalized", "frantar_t5", "huber"), ("generalized", "clark_routing", "mse")])
def test_analytic_gradient_matches_finite_differences(law, data, kind):
    obj = Objective.from_spec(ObjectiveSpec(law, data, kind=kind))
    rng = np.random.default_rng(0)
    p = {k: v * rng.uniform(0.9, 1.1) for k, v in published(law).items()}
    if law == "abnar" and data == "clark_routing":
        p["c"] = abs(p["c"])
    _, grad = obj.value_and_grad(p)
    for name, g in grad.items():
        h = 1e-6 * max(abs(p[name]), 1e-3)
        up, down = dict(p), dict(p)
        up[name] += h
        down[name] -= h
        fd = (obj(up) - obj(down)) / (2 * h)
        assert g == pytest.approx(fd, rel=2e-4, abs=1e-9), name


def _synthetic(tmp_path, law, truth, n=120, noise=0.0):
    import pandas as pd
    from tuner.laws import Runs, predict
    rng = np.random.default_rng(0)
    n_total = 10 ** rng.uniform(7, 10, n)
    s = rng.choice([0.0, 0.5, 0.75], n) if get_law(law).sparse else np.zeros(n)
    tokens = 10 ** rng.uniform(9, 11.5, n)
    runs = Runs(n_total, n_total * (1 - s), tokens, s)
    loss = predict(law, truth, runs) * np.exp(rng.normal(0, noise, n))
    path = tmp_path / f"{law}.csv"
    pd.DataFrame({"n_total": n_total, "n_active": runs.n_active, "tokens": tokens,
                  "sparsity": s, "loss": loss}).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("law", ["hoffmann", "frantar", "generalized"])
def test_solve_linear_recovers_the_truth_and_respects_bounds(tmp_path, law):
    truth = {k: v * 1.1 for k, v in published(law).items()}
    obj = Objective.from_spec(ObjectiveSpec(law, str(_synthetic(tmp_path, law, truth))))
    space = paper_space(law)
    lw = get_law(law)
    bounds = {d.name: (d.lower, d.upper) for d in space.dims}
    start = {**truth, **{n: np.nan for n in lw.linear}}
    solved = obj.solve_linear(start, lw.linear, bounds, space.default())
    for n in lw.linear:  # noiseless data: the exact coefficients, to rounding
        assert solved[n] == pytest.approx(truth[n], rel=1e-6), n
    assert obj(solved) == pytest.approx(0.0, abs=1e-12)
    # A box that excludes the truth: the answer stays inside it.
    name = lw.linear[0]
    tight = {**bounds, name: (truth[name] * 1.5, truth[name] * 2.0)}
    boxed = obj.solve_linear(start, lw.linear, tight, space.default())
    assert tight[name][0] <= boxed[name] <= tight[name][1]
    assert boxed[name] == pytest.approx(tight[name][0])  # the nearest edge to the truth


def test_gauss_newton_curvature_is_the_hessian_at_an_exact_fit(tmp_path):
    """With zero residuals J^T W J is the exact Hessian (mse), in internal coordinates too."""
    truth = {"e": 1.8, "a": 480.0, "b": 2100.0, "alpha": 0.35, "beta": 0.37}
    obj = Objective.from_spec(ObjectiveSpec("hoffmann", str(_synthetic(tmp_path, "hoffmann",
                                                                       truth)), kind="mse"))
    space = paper_space("hoffmann")
    u = space.encode(truth)
    _, _, _, curv = _ev(obj, space, truth)
    fd = np.zeros_like(curv)
    for i in range(len(u)):
        h = 1e-5
        up, down = u.copy(), u.copy()
        up[i] += h
        down[i] -= h
        fd[:, i] = (_ev(obj, space, space.decode(up))[2]
                    - _ev(obj, space, space.decode(down))[2]) / (2 * h)
    np.testing.assert_allclose(curv, fd, rtol=1e-4, atol=1e-10)
    assert np.all(np.linalg.eigvalsh(curv) >= -1e-12)


def test_paper_objective_has_no_curvature():
    obj = Objective.from_spec(ObjectiveSpec("hoffmann", "hoffmann_table3", kind="paper"))
    _, _, curv = obj.value_and_grad(published("hoffmann"), curvature=True)
    assert np.all(np.isnan(curv))


def test_solve_linear_keeps_the_fallback_for_what_the_data_cannot_determine():
    """Eq 7 on dense runs: c multiplies S = 0, so it keeps its default, and e, a, b are
    solved exactly as Eq 2's (the lemma)."""
    gen, hof = paper_space("generalized"), paper_space("hoffmann")
    obj_g = Objective.from_spec(ObjectiveSpec("generalized", "chinchilla_epoch"))
    obj_h = Objective.from_spec(ObjectiveSpec("hoffmann", "chinchilla_epoch"))
    nan = {n: np.nan for n in ("e", "a", "b")}
    pg, vg, *_ = _ev(obj_g, gen, {**gen.default(), **nan, "c": np.nan})
    ph, vh, *_ = _ev(obj_h, hof, {**hof.default(), **nan})
    assert pg["c"] == gen.default()["c"]
    for n in ("e", "a", "b"):
        assert pg[n] == pytest.approx(ph[n], rel=1e-9), n
    assert vg == pytest.approx(vh, rel=1e-9) and vh < obj_h(hof.default())


@pytest.mark.parametrize("fix", [{"bD": 0.0}, {"bD": float("nan")}])
def test_unsolvable_weight_is_a_bad_point_not_a_crash(fix):
    space = paper_space("frantar")
    obj = Objective.from_spec(ObjectiveSpec("frantar", "frantar_t5"))
    p = {**space.default(), **fix, **{n: np.nan for n in ("aS", "cS", "aD", "c")}}
    done, value, grad, curv = _ev(obj, space, p)
    assert not any(np.isnan(done[n]) for n in ("aS", "cS", "aD", "c"))
    assert done["aD"] == space.default()["aD"]  # aD^0: no weight to solve
    assert np.isfinite(value)
