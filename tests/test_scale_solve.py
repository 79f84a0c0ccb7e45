"""The fast evaluation path equals the straightforward computation.

An evaluation shares the law's powers between its passes (``formula.Terms``), reduces the
linear solve to k x k from A^T A summed block by block, and sums the gradient and the
Gauss-Newton matrix block by block. Here each piece is checked against the direct form
(dense design, QR with Q, full Jacobian), written out below as it was before: the solved
coefficients, value, gradient and curvature agree to ~1e-10 relative, and the value is the
objective's own, bit for bit.
"""
import math

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import lsq_linear

import tuner.fitting.objective as objective_module
from tuner.fitting.evaluation import evaluate
from tuner.fitting.objective import PENALTY, Objective, ObjectiveSpec, huber
from tuner.laws import LAWS, Runs, get_law, predict
from tuner.laws.formula import Terms
from tuner.laws.spaces import paper_space, published


# -- the straightforward computation ------------------------------------------------------------

def direct_solve(obj, params, names, bounds, fallback):
    """solve_linear as written before: the whole design, QR with Q, no shared terms."""
    law, out = obj.law, dict(params)
    for n in names:
        out[n] = float(np.clip(fallback[n], *sorted(bounds[n])))

    def powered_ok(n):
        if n not in law.power:
            return True
        k = params[law.power[n]]
        return bool(np.isfinite(k) and k != 0 and min(bounds[n]) > 0)

    solve = [n for n in names if powered_ok(n)]
    obs = obj.obs if not obj.linear_residual else np.ones_like(obj.obs)
    with np.errstate(all="ignore"):
        offset, cols = law.linear_columns(out, obj.runs, solve)
        m, t = cols / obs[:, None], (obj.obs - offset) / obs
        scale = np.sqrt((m * m).sum(axis=0))
    keep = np.isfinite(scale) & (scale > 0)
    if not keep.all():
        solve = [n for n, k in zip(solve, keep) if k]
        with np.errstate(all="ignore"):
            offset, cols = law.linear_columns(out, obj.runs, solve)
            m, t = cols / obs[:, None], (obj.obs - offset) / obs
        scale = scale[keep]
    if not solve or not (np.all(np.isfinite(m)) and np.all(np.isfinite(t))):
        return out
    lo = np.array([law.to_weight(n, bounds[n][0], out) for n in solve])
    hi = np.array([law.to_weight(n, bounds[n][1], out) for n in solve])
    lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)
    q, r = np.linalg.qr(m / scale)
    x = lsq_linear(r, q.T @ t, bounds=(lo * scale, hi * scale), method="bvls").x
    if obj.spec.kind == "huber":
        x = direct_huber(m / scale, t, x, lo * scale, hi * scale, obj.spec.delta)
    for n, v in zip(solve, np.clip(x / scale, lo, hi)):
        out[n] = float(np.clip(law.from_weight(n, float(v), out), *sorted(bounds[n])))
    return out


def direct_huber(m, t, x, lo, hi, delta):
    """The Huber reweighting as plainly as it goes: each round the whole weighted design, by
    BVLS; stop at the fifth round, or when a round gains less than 1e-6 or nothing."""
    best = huber(m @ x - t, delta).sum()
    for _ in range(5):
        w = np.sqrt(np.minimum(1.0, delta / np.abs(m @ x - t)))
        new = lsq_linear(m * w[:, None], t * w, bounds=(lo, hi), method="bvls").x
        value = huber(m @ new - t, delta).sum()
        if not value < best:
            break
        gain, best, x = best - value, value, new
        if gain <= 1e-6 * best:
            break
    return x


def direct_value_and_grad(obj, params):
    """value_and_grad(curvature=True) as written before: a full (n, k) Jacobian."""
    pred = obj.predict(params)
    value = float(obj._score(np.atleast_2d(pred))[0])
    names = obj.law.params
    with np.errstate(all="ignore"):
        dpred = obj.law.value_and_grad(params, obj.runs)[1]
        dres = np.ones_like(pred) if obj.linear_residual else 1.0 / pred
        if obj.spec.kind == "paper":
            weight = np.full_like(pred, 1.0 / len(pred))
            irls = None
        else:
            r = obj._residual(pred)
            if obj.spec.kind == "huber":
                d = obj.spec.delta
                weight = np.clip(r, -d, d) * dres
                irls = np.minimum(1.0, d / np.maximum(np.abs(r), 1e-300))
            else:
                weight = 2.0 * r * dres / len(pred)
                irls = np.full_like(r, 2.0 / len(r))
        grad = np.array([np.sum(weight * dpred[n]) for n in names])
        curv = np.full((len(names), len(names)), np.nan)
        if irls is not None:
            jac = np.column_stack([np.broadcast_to(dpred[n], pred.shape) * dres for n in names])
            curv = (jac * irls[:, None]).T @ jac
    return value, grad, curv


# -- data ------------------------------------------------------------------------------------------

def _csv(tmp_path, law, n=3000, noise=0.02, groups=False, seed=0):
    """Runs of ``law`` at its published coefficients times 1.1, with log-normal noise."""
    rng = np.random.default_rng(seed)
    n_total = 10 ** rng.uniform(7, 10.5, n)
    s = rng.choice([0.0, 0.5, 0.75, 0.9], n) if get_law(law).sparse else np.zeros(n)
    tokens = 10 ** rng.uniform(9, 11.5, n)
    runs = Runs(n_total, n_total * (1 - s), tokens, s)
    truth = {k: v * 1.1 for k, v in published(law).items()}
    loss = predict(law, truth, runs) * np.exp(rng.normal(0, noise, n))
    frame = pd.DataFrame({"n_total": n_total, "n_active": runs.n_active, "tokens": tokens,
                          "sparsity": s, "loss": loss})
    if groups:
        frame["corpus"] = rng.choice(["c4", "pile", "web"], n)
        frame["loss"] *= frame["corpus"].map({"c4": 1.0, "pile": 0.9, "web": 1.15})
    path = tmp_path / f"{law}_{n}_{int(groups)}.csv"
    frame.to_csv(path, index=False)
    return str(path)


def _rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


SOLVABLE = [n for n, law in LAWS.items() if law.linear]
CASES = [(law, kind, residual) for law in SOLVABLE for kind, residual in
         [("huber", "log"), ("mse", "log"), ("huber", "linear")]]


def _proposal(space, law, rng):
    """Published exponents, moved a little; the linear coefficients left to the solve."""
    p = space.default()
    for n in space.names:
        if n not in law.linear:
            p[n] *= rng.uniform(0.95, 1.05)
    return {**p, **{n: math.nan for n in law.linear if n in space.names}}


@pytest.fixture(params=[1, 20_000])
def blocks(request, monkeypatch):
    """Block sizes: one row per block (many partial sums) and one block for all."""
    monkeypatch.setattr(objective_module, "_BLOCK", request.param)
    return request.param


# -- tests -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("law,kind,residual", CASES)
def test_evaluation_equals_the_direct_computation(tmp_path, law, kind, residual):
    obj = Objective.from_spec(ObjectiveSpec(law, _csv(tmp_path, law), kind=kind,
                                            residual=residual))
    space = paper_space(law)
    rng = np.random.default_rng(1)
    for _ in range(3):
        asked = _proposal(space, get_law(law), rng)
        solve = [n for n in space.names if math.isnan(asked[n])]
        ev = evaluate(obj, space, asked)
        want = direct_solve(obj, asked, solve, space.solve_bounds, space.default())
        for n in space.names:
            assert ev.params[n] == pytest.approx(want[n], rel=1e-10, abs=1e-300), n
        # the value is the objective's own, to the last bit
        assert ev.value == obj(ev.params)
        value, grad, curv = direct_value_and_grad(obj, ev.params)
        fast_value, fast_grad, fast_curv = obj.value_and_grad(ev.params, curvature=True)
        assert fast_value == value
        assert _rel([fast_grad[n] for n in obj.law.params], grad) < 1e-10
        assert _rel(fast_curv, curv) < 1e-10


def test_block_sums_do_not_depend_on_the_block_size(tmp_path, blocks):
    obj = Objective.from_spec(ObjectiveSpec("generalized", _csv(tmp_path, "generalized",
                                                                n=700)))
    space = paper_space("generalized")
    asked = _proposal(space, obj.law, np.random.default_rng(2))
    solve = [n for n in space.names if math.isnan(asked[n])]
    solved = obj.solve_linear(asked, solve, space.solve_bounds, space.default())
    want = direct_solve(obj, asked, solve, space.solve_bounds, space.default())
    for n in solve:
        assert solved[n] == pytest.approx(want[n], rel=1e-10), n
    _, grad, curv = obj.value_and_grad(solved, curvature=True)
    _, want_grad, want_curv = direct_value_and_grad(obj, solved)
    assert _rel(list(grad.values()), want_grad) < 1e-10
    assert _rel(curv, want_curv) < 1e-10


def test_grouped_law_equals_the_direct_computation(tmp_path, blocks):
    obj = Objective.from_spec(ObjectiveSpec("hoffmann", _csv(tmp_path, "hoffmann", groups=True),
                                            group="corpus"))
    space = obj.default_space()
    asked = {**space.default(), **{n: math.nan for n in obj.law.linear}}
    asked.update(alpha=0.33, beta=0.29)
    ev = evaluate(obj, space, asked)
    want = direct_solve(obj, asked, list(obj.law.linear), space.solve_bounds, space.default())
    for n in obj.law.params:
        assert ev.params[n] == pytest.approx(want[n], rel=1e-10), n
    value, grad, curv = direct_value_and_grad(obj, ev.params)
    fast = obj.value_and_grad(ev.params, curvature=True)
    assert fast[0] == value == ev.value
    assert _rel(list(fast[1].values()), grad) < 1e-10 and _rel(fast[2], curv) < 1e-10


def test_paper_objective_gradient_and_no_curvature():
    obj = Objective.from_spec(ObjectiveSpec("hoffmann", "hoffmann_table3", kind="paper"))
    p = published("hoffmann")
    value, grad, curv = obj.value_and_grad(p, curvature=True)
    want_value, want_grad, _ = direct_value_and_grad(obj, p)
    assert value == want_value and _rel(list(grad.values()), want_grad) < 1e-12
    assert np.all(np.isnan(curv))


def test_ill_conditioned_columns_take_the_qr_way(tmp_path, monkeypatch):
    """Tiny exponents make N**-alpha nearly constant, like e's column: the normal equations
    would lose digits, so the solve factors the data by QR instead, as before."""
    obj = Objective.from_spec(ObjectiveSpec("hoffmann", _csv(tmp_path, "hoffmann")))
    space = paper_space("hoffmann")
    asked = {**space.default(), "e": math.nan, "a": math.nan, "b": math.nan,
             "alpha": 1e-4, "beta": 0.3}
    calls = []
    qr = np.linalg.qr
    monkeypatch.setattr(np.linalg, "qr", lambda *a, **k: calls.append(1) or qr(*a, **k))
    solved = obj.solve_linear(asked, ["e", "a", "b"], space.solve_bounds, space.default())
    assert calls, "an ill-conditioned solve should use QR"
    want = direct_solve(obj, asked, ["e", "a", "b"], space.solve_bounds, space.default())
    assert obj(solved) == pytest.approx(obj(want), rel=1e-9)
    calls.clear()
    obj.solve_linear({**asked, "alpha": 0.3}, ["e", "a", "b"], space.solve_bounds,
                     space.default())
    assert not calls, "a well-conditioned solve needs no QR of the data"


def test_terms_are_shared_and_never_stale(tmp_path):
    obj = Objective.from_spec(ObjectiveSpec("hoffmann", _csv(tmp_path, "hoffmann", n=50)))
    p = dict(published("hoffmann"))
    terms = obj.terms(["e", "a", "b"])
    first = obj.predict(p, terms)
    assert terms.values, "N**alpha and D**beta are kept"
    stored = dict(terms.values)
    # the solved coefficients may change: the kept powers stay and are reused
    second = obj.predict({**p, "e": 2.0, "a": 300.0}, terms)
    assert all(terms.values[k] is v for k, v in stored.items())
    assert np.array_equal(second, obj.predict({**p, "e": 2.0, "a": 300.0}))
    # an exponent changes: the store starts over rather than serve a stale power
    moved = {**p, "alpha": 0.5}
    assert np.array_equal(obj.predict(moved, terms), obj.predict(moved))
    assert not np.array_equal(first, obj.predict(moved))


def test_terms_of_the_data_are_kept_across_evaluations(tmp_path, blocks):
    """log N and log D (the exponents' derivatives) are computed block by block on the first
    evaluation, then kept whole: later evaluations read them, with the same results."""
    obj = Objective.from_spec(ObjectiveSpec("hoffmann", _csv(tmp_path, "hoffmann", n=500)))
    p = dict(published("hoffmann"))
    first = obj.value_and_grad(p, curvature=True)
    kept = {k: v for k, v in obj._data_terms.items() if isinstance(v, np.ndarray)}
    assert len(kept) == 2 and all(v.shape == (500,) for v in kept.values())
    logs = [np.log(obj.runs.n_active), np.log(obj.runs.tokens)]
    assert all(any(np.array_equal(v, w) for w in logs) for v in kept.values())
    again = obj.value_and_grad(p, curvature=True)
    assert first[0] == again[0] and first[1] == again[1]
    np.testing.assert_array_equal(first[2], again[2])


def test_terms_of_other_runs_are_not_served(tmp_path):
    law = get_law("hoffmann")
    rng = np.random.default_rng(0)
    runs = [Runs(*(10 ** rng.uniform(8, 11, (4, 30)))) for _ in range(2)]
    lasting: dict = {}
    p = published("hoffmann")
    for r in runs:
        grad = law.gradient(p, r, Terms((), lasting))
        want = law.gradient(p, r)
        for n in law.params:
            assert np.array_equal(grad[n], want[n]), n


def test_a_penalized_point_scores_as_before(tmp_path):
    obj = Objective.from_spec(ObjectiveSpec("hoffmann", _csv(tmp_path, "hoffmann", n=40)))
    bad = {"e": -10.0, "a": 1.0, "b": 1.0, "alpha": 0.3, "beta": 0.3}
    value, grad, curv = obj.value_and_grad(bad, curvature=True)
    assert value == PENALTY and not any(grad.values()) and not curv.any()


def test_huber_sum_unchanged():
    r = np.random.default_rng(0).normal(0, 0.01, 1000)
    assert huber(r, 1e-3).sum() == pytest.approx(
        sum(0.5 * x * x if abs(x) <= 1e-3 else 1e-3 * (abs(x) - 0.5e-3) for x in r), rel=1e-12)


def test_beyond_huber_rows_the_solve_stays_least_squares(tmp_path, monkeypatch):
    """Each reweighting round is a pass over the data: beyond _HUBER_ROWS runs the solve is
    the least-squares one (a subsample had misrepresented ordered data and small groups)."""
    obj = Objective.from_spec(ObjectiveSpec("hoffmann", _csv(tmp_path, "hoffmann")))
    space = paper_space("hoffmann")
    asked = {**space.default(), "e": math.nan, "a": math.nan, "b": math.nan,
             "alpha": 0.3, "beta": 0.3}

    def solve():
        return obj.solve_linear(asked, ["e", "a", "b"], space.solve_bounds, space.default())

    reweighted = solve()
    monkeypatch.setattr(objective_module, "_HUBER_ROUNDS", 0)
    plain = solve()
    assert obj(reweighted) < obj(plain)  # 3000 runs: reweighted
    monkeypatch.setattr(objective_module, "_HUBER_ROUNDS", 5)
    monkeypatch.setattr(objective_module, "_HUBER_ROWS", 2999)
    assert solve() == plain
