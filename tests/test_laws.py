import math

import numpy as np
import pytest

from tuner.laws import LAWS, Runs, get_law, predict
from tuner.errors import TunerError
from tuner.laws.spaces import published


def random_runs(rng, n=200, sparse=True):
    n_total = 10 ** rng.uniform(6, 12, n)
    s = rng.uniform(0, 0.98, n) if sparse else np.zeros(n)
    return Runs(n_total, n_total * (1 - s), 10 ** rng.uniform(8, 13, n), s)


def test_lemma_generalized_at_zero_sparsity_is_hoffmann_exactly():
    rng = np.random.default_rng(1)
    for _ in range(20):
        p = {"e": rng.uniform(0.5, 3), "a": 10 ** rng.uniform(1, 5), "b": 10 ** rng.uniform(1, 5),
             "alpha": rng.uniform(0.05, 1), "beta": rng.uniform(0.05, 1),
             "c": 10 ** rng.uniform(-1, 4), "gamma": rng.uniform(-1, 1)}
        r = random_runs(rng, sparse=False)
        assert np.array_equal(predict("generalized", p, r), predict("hoffmann", p, r))


def test_generalized_differs_from_hoffmann_when_sparse():
    rng = np.random.default_rng(2)
    r = random_runs(rng)
    p = published("generalized")
    assert not np.allclose(predict("generalized", p, r), predict("hoffmann", p, r))


def test_eq4_equals_eq3_under_renaming():
    p3 = published("frantar")
    p4 = {"aS": p3["aS"], "bS": p3["bS"], "cS": p3["cS"], "b": p3["aD"] ** p3["bD"],
          "alpha": p3["bN"], "beta": p3["bD"], "e": p3["c"]}
    r = random_runs(np.random.default_rng(3))
    np.testing.assert_allclose(predict("frantar_reparam", p4, r), predict("frantar", p3, r),
                               rtol=1e-12)
    # The published Table IV b is Table III's aD^bD (SPEC: 6.9e8^0.203 = 62.27).
    assert published("frantar_reparam")["b"] == pytest.approx(p3["aD"] ** p3["bD"], rel=1e-4)


# Hand computations at the published coefficients (SPEC.md tables).
N, D = 1e9, 2e10


def test_kaplan_by_hand():
    want = ((6.4e13 / N) ** (0.076 / 0.103) + 1.8e13 / D) ** 0.103
    got = predict("kaplan", published("kaplan"), Runs(np.array([N]), np.array([N]),
                                                      np.array([D]), np.array([0.0])))
    assert got[0] == pytest.approx(want, rel=1e-12)


def test_hoffmann_by_hand():
    want = 1.69 + 406.4 / N ** 0.34 + 410.7 / D ** 0.28
    r = Runs(np.array([N]), np.array([N]), np.array([D]), np.array([0.0]))
    assert predict("hoffmann", published("hoffmann"), r)[0] == pytest.approx(want, rel=1e-12)
    assert want == pytest.approx(2.5799, abs=1e-3)


def test_frantar_by_hand():
    s, n = 0.5, 5e7
    want = (16.8 * 0.5 ** 0.722 + 45) * (1 / n) ** 0.245 + (6.9e8 / D) ** 0.203 + 0.651
    r = Runs(np.array([n / 0.5]), np.array([n]), np.array([D]), np.array([s]))
    assert predict("frantar", published("frantar"), r)[0] == pytest.approx(want, rel=1e-12)


def test_abnar_by_hand_uses_total_parameters():
    s, n_total = 0.75, 4e9
    want = (0.94 + 16612.5 / n_total ** 0.5962 + 5455.67 / D ** 0.3954
            + 0.4598 / 0.25 ** -0.1666 + 17.26 / (0.25 ** 0.1603 * n_total ** 0.1595))
    r = Runs(np.array([n_total]), np.array([n_total * 0.25]), np.array([D]), np.array([s]))
    assert predict("abnar", published("abnar"), r)[0] == pytest.approx(want, rel=1e-12)


def test_generalized_by_hand():
    s, n_active = 0.9, 1e8
    want = (1.69 * 0.1 ** 0.01 + (406.4 * 0.1 ** 0.34 + 93.45 * 0.9) / n_active ** 0.34
            + 410.7 / D ** 0.28)
    r = Runs(np.array([n_active / 0.1]), np.array([n_active]), np.array([D]), np.array([s]))
    assert predict("generalized", published("generalized"), r)[0] == pytest.approx(want,
                                                                                   rel=1e-12)


def test_registry_names_and_parameters():
    assert set(LAWS) == {"kaplan", "hoffmann", "frantar", "frantar_reparam", "abnar",
                         "generalized"}
    assert get_law("hoffmann").params == ("e", "a", "b", "alpha", "beta")
    with pytest.raises(TunerError, match="unknown law 'nope'"):
        get_law("nope")


@pytest.mark.parametrize("law", sorted(LAWS))
def test_overflow_gives_nonfinite_not_exception(law):
    p = {k: 1e300 for k in get_law(law).params}
    r = Runs(np.array([1e-300]), np.array([1e-300]), np.array([1e-300]), np.array([0.5]))
    out = predict(law, p, r)
    assert out.shape == (1,)


@pytest.mark.parametrize("law", sorted(LAWS))
def test_vectorized_over_coefficient_sets(law):
    rng = np.random.default_rng(4)
    r = random_runs(rng, n=30)
    p = published(law)
    k = 5
    cols = {n: np.full((k, 1), v) for n, v in p.items()}
    out = predict(law, cols, r)
    assert out.shape == (k, 30)
    np.testing.assert_allclose(out[3], predict(law, p, r))


@pytest.mark.parametrize("law", [n for n, law in LAWS.items() if law.linear])
def test_linear_columns_reproduce_the_law(law):
    """L = offset + columns @ weights for the declared linear coefficients, at any values of
    the others, also with some linear coefficients held (they go into the offset)."""
    rng = np.random.default_rng(1)
    runs = random_runs(rng, sparse=get_law(law).sparse)
    lw = get_law(law)
    for trial in range(3):
        p = {k: v * rng.uniform(0.8, 1.2) for k, v in published(law).items()}
        names = lw.linear if trial < 2 else lw.linear[1:]
        offset, cols = lw.linear_columns(p, runs, names)
        w = np.array([lw.to_weight(n, p[n], p) for n in names])
        np.testing.assert_allclose(offset + cols @ w, predict(lw, p, runs), rtol=1e-12)
        for n, v in zip(names, w):
            assert lw.from_weight(n, lw.to_weight(n, p[n], p), p) == pytest.approx(p[n])


def test_kaplan_has_no_linear_form():
    assert get_law("kaplan").linear == ()
