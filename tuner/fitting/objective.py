"""The objective: how well one coefficient set fits one dataset.

``huber`` (default, Hoffmann et al. approach 3): sum over runs of Huber_delta(r) with the
residual r = log L_pred - log L_obs (``residual="log"``) or L_pred - L_obs (``"linear"``, as
Frantar et al. fit their vision runs). ``mse``: mean squared residual. ``paper``: the literal Fig. 7 objective, the mean
predicted loss, which needs no observed loss (and is degenerate: it rewards any coefficients
that predict low loss, whatever the data say). A prediction that overflows, is NaN or <= 0
scores ``PENALTY``: a bad point, never a crash.
"""
from __future__ import annotations

from dataclasses import dataclass, asdict
from typing import Mapping, Sequence

import math

import numpy as np

from tuner.data.datasets import Dataset
from tuner.errors import TunerError
from tuner.laws import Law, get_law
from tuner.laws.formula import Terms
from tuner.fitting.groups import GroupedLaw, base_name

OBJECTIVES = ("huber", "mse", "paper")
RESIDUALS = ("log", "linear")
PENALTY = 1.0e6
# The normal equations square the columns' condition number: above this, the solve's
# solution could lose more than ~1e-10 of its digits and the solve takes the QR way.
_COND_NORMAL = 1e3


@dataclass(frozen=True)
class ObjectiveSpec:
    """Everything that defines an objective, stored in the run's config."""

    law: "str | dict"  # a built-in law's name, a formula, or a law definition
    data: str           # a shipped dataset's name or an absolute CSV path
    kind: str = "huber"
    delta: float = 1e-3
    drop_outliers: bool = True
    residual: str = "log"
    columns: dict | None = None     # tuner name -> CSV column
    group: str | None = None        # fit jointly over the groups of this column
    per_group: tuple | None = None  # coefficients fitted per group (default: the linear ones)

    def __post_init__(self) -> None:
        get_law(self.law)
        if self.kind not in OBJECTIVES:
            raise TunerError(f"unknown objective {self.kind!r}; choose one of "
                             f"{', '.join(OBJECTIVES)}")
        if self.residual not in RESIDUALS:
            raise TunerError(f"unknown --residual {self.residual!r}; choose one of "
                             f"{', '.join(RESIDUALS)}")
        if not (math.isfinite(self.delta) and self.delta > 0):
            raise TunerError(f"--delta must be finite and > 0, got {self.delta}")
        if self.per_group is not None:
            object.__setattr__(self, "per_group", tuple(self.per_group))

    def as_dict(self) -> dict:
        return asdict(self)


def huber(r: np.ndarray, delta: float) -> np.ndarray:
    """0.5 r^2 where |r| <= delta, else delta (|r| - delta/2): the same operations as that
    formula, done in place (on a million runs every temporary vector counts)."""
    a = np.abs(r)
    if np.ndim(a) == 0:
        return np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))
    small = a <= delta
    square = 0.5 * r
    square *= r
    a -= 0.5 * delta
    a *= delta
    np.copyto(a, square, where=small)
    return a


class Objective:
    """A callable scoring coefficient sets (natural units) on one dataset."""

    def __init__(self, spec: ObjectiveSpec, dataset: Dataset):
        self.spec = spec
        self.dataset = dataset
        law = get_law(spec.law)
        missing = [v for v in law.variables if v not in dataset.frame]
        if missing:
            raise TunerError(f"law {law.name} uses {', '.join(missing)}, which "
                             f"{dataset.path} does not have")
        if spec.group is not None:
            law = GroupedLaw(law, dataset.groups(spec.group), spec.per_group)
        self.law: Law = law
        self.runs = dataset.runs
        loss = dataset.loss
        if spec.kind != "paper" and loss is None:
            raise TunerError(f"{dataset.path}: objective {spec.kind!r} needs a loss column "
                             "(only 'paper' works without observed losses)")
        self.obs = loss
        self.linear_residual = spec.residual == "linear"
        # target: what predictions are compared with (log L or L itself)
        self.target = None if loss is None else (loss if self.linear_residual else np.log(loss))
        # terms of the data alone (log N, ...) the derivatives need, kept across evaluations
        self._data_terms: dict = {}

    @classmethod
    def from_spec(cls, spec: ObjectiveSpec) -> "Objective":
        from tuner.data.datasets import load
        return cls(spec, load(spec.data, drop_outliers=spec.drop_outliers,
                              need_loss=spec.kind != "paper", columns=spec.columns))

    def default_space(self):
        """The space that follows these data (``laws.spaces.default_space``) for the law."""
        from tuner.laws.spaces import default_space
        law = getattr(self.law, "base", self.law)
        frame = self.dataset.frame
        magnitudes = np.concatenate([frame[c].to_numpy(dtype=float) for c in law.variables
                                     if c != "sparsity"] or [np.ones(1)])
        space = default_space(law, self.obs, magnitudes)
        if law is self.law:
            return space
        return self.law.expand_space(space, self.obs)

    def _residual(self, pred: np.ndarray) -> np.ndarray:
        if self.linear_residual:
            return pred - self.target
        r = np.log(pred)
        r -= self.target  # in place: one vector fewer at the peak
        return r

    def terms(self, solving: Sequence[str] = ()) -> Terms:
        """A store sharing the costly terms (powers, logs) between the passes of one
        evaluation (``formula.Terms``): pass it to ``solve_linear`` and ``value_and_grad``.
        It stays valid while only the coefficients ``solving`` change."""
        return Terms({base_name(n) for n in solving}, self._data_terms)

    def predict(self, params: Mapping[str, np.ndarray | float],
                terms: Terms | None = None) -> np.ndarray:
        with np.errstate(all="ignore"):
            return np.asarray(self.law.predict(params, self.runs, terms), dtype=float)

    def batch(self, params: Mapping[str, np.ndarray]) -> np.ndarray:
        """Score k coefficient sets given as arrays of length k: one (k, n) pass."""
        cols = {n: np.asarray(v, dtype=float)[:, None] for n, v in params.items()}
        return self._score(np.atleast_2d(self.predict(cols)))

    def _score(self, pred: np.ndarray) -> np.ndarray:
        """Objective values of (k, n) predictions; PENALTY where a prediction is invalid."""
        return self._score_and_residual(pred)[0]

    def _score_and_residual(self, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """``_score`` and the (k, n) residuals it used (None for 'paper'), which the
        derivatives reuse."""
        r = None
        with np.errstate(all="ignore"):
            valid = np.isfinite(pred) if self.linear_residual else np.isfinite(pred) & (pred > 0)
            bad = ~np.all(valid, axis=1)
            if self.spec.kind == "paper":
                value = pred.mean(axis=1)
            else:
                r = self._residual(pred)
                value = (huber(r, self.spec.delta).sum(axis=1) if self.spec.kind == "huber"
                         else (r * r).mean(axis=1))
        value = np.where(bad | ~np.isfinite(value), PENALTY, np.minimum(value, PENALTY))
        return value, r

    def solve_linear(self, params: Mapping[str, float], names: Sequence[str],
                     bounds: Mapping[str, tuple[float, float]],
                     fallback: Mapping[str, float],
                     terms: Terms | None = None) -> dict[str, float]:
        """``params`` with the coefficients ``names``, which the law is linear in, solved.

        They minimise the squared relative error sum(((L_pred - L_obs) / L_obs)^2), the
        first-order form of the log residual (the squared error itself for linear residuals),
        and then, for the Huber objective, its Huber loss by reweighted least squares
        (``_huber_reweighted``; the polish finishes the job), within ``bounds``
        (natural units): a bounded linear least-squares problem, built from the law's terms
        at these runs and reduced to a k x k system (``_reduce``), so its cost after that does
        not grow with the data. A coefficient the data cannot determine (an all-zero column,
        e.g. Eq 7's c on dense runs, or a weight aD^bD with bD = 0 or a box reaching aD <= 0)
        keeps its ``fallback`` value, clipped to its box. ``terms`` (from ``self.terms``)
        lets the prediction and gradient that follow reuse the law's terms."""
        from scipy.optimize import lsq_linear

        if self.target is None:
            raise TunerError("solving linear coefficients needs observed losses")
        law, out = self.law, dict(params)
        for n in names:
            out[n] = float(np.clip(fallback[n], *sorted(bounds[n])))

        def powered_ok(n: str) -> bool:
            if n not in law.power:
                return True
            k = params[law.power[n]]
            return bool(np.isfinite(k) and k != 0 and min(bounds[n]) > 0)

        solve = [n for n in names if powered_ok(n)]
        columns = self._columns(out, solve, terms)
        gram = _blockwise_gram(*columns)
        scale = np.sqrt(np.diag(gram)[:len(solve)])
        keep = np.isfinite(scale) & (scale > 0)
        if not keep.all():  # unidentifiable columns: their fallback value joins the offset
            solve = [n for n, k in zip(solve, keep) if k]
            columns = self._columns(out, solve, terms)
            gram = _blockwise_gram(*columns)
            scale = scale[keep]
        # An overflow in the design leaves the fallback to score as it may. A^T A is not
        # finite whenever the design is not (an inf or NaN reaches its diagonal), so the
        # design itself is read only when A^T A is not finite (it may merely have overflowed).
        if not solve or not (np.all(np.isfinite(gram)) or _finite(*columns)):
            return out
        with np.errstate(all="ignore"):
            lo = np.array([law.to_weight(n, bounds[n][0], out) for n in solve])
            hi = np.array([law.to_weight(n, bounds[n][1], out) for n in solve])
        lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
            return out
        r, qt = _reduce(columns, gram, scale)
        x = lsq_linear(r, qt, bounds=(lo * scale, hi * scale), method="bvls").x
        if self.spec.kind == "huber" and len(self.obs) <= _HUBER_ROWS:
            x = _huber_reweighted(columns, scale, x, lo * scale, hi * scale, self.spec.delta)
        for n, v in zip(solve, np.clip(x / scale, lo, hi)):
            out[n] = float(np.clip(law.from_weight(n, float(v), out), *sorted(bounds[n])))
        return out

    def _columns(self, params: Mapping[str, float], solve: Sequence[str],
                 terms: Terms | None) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        """The least squares of ``solve_linear`` as (law columns, L_obs - offset, divisor):
        the design is [columns | L_obs - offset] / divisor (L_obs for log residuals, 1 for
        linear ones), formed block by block where it is used, never as a whole."""
        offset, cols = self.law.linear_parts(params, self.runs, solve, terms)
        with np.errstate(all="ignore"):
            np.subtract(self.obs, offset, out=offset)
        return cols, offset, (np.ones(1) if self.linear_residual else self.obs)

    def value_and_grad(self, params: Mapping[str, float], curvature: bool = False,
                       terms: Terms | None = None):
        """The objective and its gradient in natural units (zeros at a penalized point).

        With ``curvature``, also a Gauss-Newton matrix over the law's coefficients from the
        same pass: J^T W J with J the log-prediction's Jacobian and W the IRLS weights of the
        objective (Huber: min(1, delta/|r|)), the curvature a Levenberg-Marquardt step uses;
        NaN for the 'paper' objective, which has no residuals. ``terms`` (``self.terms``)
        shares the law's powers with a ``solve_linear`` just made at the same exponents."""
        terms = self.terms() if terms is None else terms  # powers shared by both passes
        pred = self.predict(params, terms)  # one prediction serves the value and derivatives
        value, r = self._score_and_residual(pred[None, :])
        value = float(value[0])
        names = self.law.params
        k = len(names)
        if value >= PENALTY:
            zero = {n: 0.0 for n in names}
            return (value, zero, np.zeros((k, k))) if curvature else (value, zero)
        with np.errstate(all="ignore"):
            g, curv = self._derivatives(params, terms, pred, None if r is None else r[0],
                                        curvature and self.spec.kind != "paper")
        grad = dict(zip(names, map(float, g)))
        if curv is None:
            curv = np.full((k, k), np.nan)
        return (value, grad, curv) if curvature else (value, grad)

    def _derivatives(self, params: Mapping[str, float], terms: Terms, pred: np.ndarray,
                     r: np.ndarray | None, curvature: bool
                     ) -> tuple[np.ndarray, np.ndarray | None]:
        """(gradient, Gauss-Newton curvature or None): sum(slope * dpred) and
        sum(root^2 * dpred dpred^T) over the runs (``_weights``), dpred the prediction's
        derivatives. Made block by block, the law's derivatives included: a block's
        temporaries stay in the CPU cache, and no (n, k) Jacobian is ever held."""
        names = self.law.params
        k, n = len(names), len(pred)
        grad, curv = np.zeros(k), (np.zeros((k, k)) if curvature else None)
        jac = np.empty((min(_BLOCK, n), k), order="F")
        gradient = self.law.gradient_rows(params, self.runs, terms)
        for rows in _blocks(n):
            dpred = gradient(rows)
            block = jac[:rows.stop - rows.start]
            for j, name in enumerate(names):
                block[:, j] = dpred[name]
            del dpred
            slope, root = self._weights(pred[rows], None if r is None else r[rows], n)
            grad += slope @ block
            if curv is not None:
                block *= root[:, None]
                curv += block.T @ block
        return grad, curv

    def _weights(self, pred: np.ndarray, r: np.ndarray | None, n: int
                 ) -> tuple[np.ndarray, np.ndarray | None]:
        """(d objective / d prediction, root of the Gauss-Newton weight) for some of the ``n``
        runs: the gradient is sum(slope * dpred), the curvature sum(root^2 dpred dpred^T)
        (no root for 'paper')."""
        if self.spec.kind == "paper":
            return np.full_like(pred, 1.0 / n), None
        if self.spec.kind == "huber":
            d = self.spec.delta
            slope = np.clip(r, -d, d)
            root = np.abs(r)  # IRLS weight min(1, d/|r|), written d / max(|r|, d)
            np.maximum(root, d, out=root)
            np.divide(d, root, out=root)
            np.sqrt(root, out=root)
        else:
            slope = r * (2.0 / n)
            root = np.full_like(r, math.sqrt(2.0 / n))
        if not self.linear_residual:  # d residual / d prediction: 1/L (> 0 where scored)
            dres = 1.0 / pred
            slope *= dres
            root *= dres
        return slope, root

    def __call__(self, params: Mapping[str, float]) -> float:
        return float(self.batch({n: np.array([v]) for n, v in params.items()})[0])

    def residuals(self, params: Mapping[str, float]) -> np.ndarray:
        """log L_pred - log L_obs per run (NaN where the law gives no valid prediction)."""
        if self.obs is None:
            raise TunerError("residuals need observed losses")
        pred = self.predict(params)
        with np.errstate(all="ignore"):
            return np.where(pred > 0, np.log(pred), np.nan) - np.log(self.obs)

    def fit_residuals(self, params: Mapping[str, float]) -> np.ndarray:
        """The residuals the objective scores: log or linear, as its spec says."""
        with np.errstate(all="ignore"):
            return self._residual(self.predict(params))

    def rmse_log(self, params: Mapping[str, float]) -> float:
        if self.obs is None:
            return float("nan")
        r = self.residuals(params)
        return float(np.sqrt(np.mean(r * r))) if np.all(np.isfinite(r)) else float("inf")


_BLOCK = 16384  # rows per block of a block-wise sum: its temporaries stay in the CPU cache


def _blocks(n: int):
    return (slice(i, min(i + _BLOCK, n)) for i in range(0, n, _BLOCK))


def _design_block(cols: list[np.ndarray], target: np.ndarray, divisor: np.ndarray,
                  rows: slice, out: np.ndarray) -> np.ndarray:
    """Rows ``rows`` of the design [cols | target] / divisor, written into ``out``."""
    d = divisor[rows] if len(divisor) > 1 else divisor[0]
    for j, c in enumerate(cols):
        np.divide(c[rows], d, out=out[:, j])
    np.divide(target[rows], d, out=out[:, len(cols)])
    return out


def _blockwise_gram(cols: list[np.ndarray], target: np.ndarray, divisor: np.ndarray
                    ) -> np.ndarray:
    """A^T A for the design A = [cols | target] / divisor, without forming A."""
    k = len(cols) + 1
    gram = np.zeros((k, k))
    buf = np.empty((min(_BLOCK, len(target)), k), order="F")
    with np.errstate(all="ignore"):
        for rows in _blocks(len(target)):
            a = _design_block(cols, target, divisor, rows, buf[:rows.stop - rows.start])
            gram += a.T @ a
    return gram


def _finite(cols: list[np.ndarray], target: np.ndarray, divisor: np.ndarray) -> bool:
    with np.errstate(all="ignore"):
        return all(np.all(np.isfinite(np.divide(c, divisor))) for c in [*cols, target])


# The Huber reweighting of the linear solve: at most this many rounds (3, 5 and 10 measured:
# 5 found the best basins as often as 10 at half its cost, 3 less often), on data of at most
# this many runs. Each round is a pass over the data, so beyond it the solve stays least
# squares (the polish finishes the job). A subsample would keep the cost flat but can
# misrepresent the data: a stride aliased with runs listed in a repeating order of model
# sizes (2.43 against 0.696 for least squares on 45,000 such runs), and a group of a few runs
# kept 3 of them.
_HUBER_ROUNDS, _HUBER_ROWS = 5, 20000


def _huber_reweighted(columns: tuple, scale: np.ndarray, x: np.ndarray, lo: np.ndarray,
                      hi: np.ndarray, delta: float) -> np.ndarray:
    """The scaled linear coefficients ``x`` (a least-squares solution) moved to the minimum of
    the Huber loss of the same residuals, by iteratively reweighted least squares.

    The Huber objective with delta 1e-3 is close to least absolute deviations on real runs
    (most residuals are ten times delta), and its minimum over the linear coefficients can
    sit far from the least-squares one: on abnar x clark_routing at the best exponents known,
    0.001972 against 0.002080, so that the least-squares profile hid the best basin from the
    search (``benchmarks/speed.py``). Each round weights the runs by min(1, delta/|r|) and
    solves again (a majorize-minimize step: the Huber loss never grows), for at most
    ``_HUBER_ROUNDS`` rounds or until a round gains less than 1e-6 of it. A round solves its
    k x k normal equations with the bounds held where they held before; where that is not
    the answer, or does not gain, it takes the careful way (``_reduce``, then BVLS)."""
    from scipy.optimize import lsq_linear

    cols, target, divisor = columns
    n, k = len(target), len(x)
    design = np.empty((n, k + 1), order="F")
    with np.errstate(all="ignore"):
        _design_block(cols, target, divisor, slice(0, n), design)
        design[:, :k] /= scale
    a, t = design[:, :k], design[:, k]
    if not np.all(np.isfinite(design)):
        return x
    res = a @ x - t
    best = huber(res, delta).sum()
    for _ in range(_HUBER_ROUNDS):
        root = np.sqrt(delta / np.maximum(np.abs(res), delta))
        weighted = design * root[:, None]
        gram = weighted.T @ weighted
        sw = np.sqrt(np.diag(gram)[:k])  # the weighted columns' norms: the rounds' units
        if not (np.all(np.isfinite(gram)) and np.all(sw > 0)):
            break
        new = _held_solve(gram[:k, :k] / np.outer(sw, sw), gram[:k, k] / sw, lo * sw,
                          hi * sw, x * sw)
        if new is not None:
            new_res = a @ (new / sw) - t
            value = huber(new_res, delta).sum()
        if new is None or not value < best:
            r, qt = _reduce(([weighted[:, j] for j in range(k)], weighted[:, k], np.ones(1)),
                            gram, sw)
            new = lsq_linear(r, qt, bounds=(lo * sw, hi * sw), method="bvls").x
            new_res = a @ (new / sw) - t
            value = huber(new_res, delta).sum()
            if not value < best:
                break
        gain, best, x, res = best - value, value, new / sw, new_res
        if gain <= 1e-6 * best:
            break
    return x


def _held_solve(g: np.ndarray, b: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                guess: np.ndarray) -> np.ndarray | None:
    """argmin x^T g x / 2 - b^T x over lo <= x <= hi when the bounds active at ``guess`` are
    the active ones (the rest solved with those held, feasible, none pulling inwards); None
    when they are not, or the system is singular."""
    at_lo, at_hi = guess <= lo, guess >= hi
    held, free = at_lo | at_hi, ~(at_lo | at_hi)
    x = np.where(at_lo, lo, hi)
    with np.errstate(all="ignore"):
        try:
            if free.any():
                x[free] = np.linalg.solve(g[np.ix_(free, free)],
                                          b[free] - g[np.ix_(free, held)] @ x[held])
        except np.linalg.LinAlgError:
            return None
        slope = g @ x - b
        tol = 1e-12 * float(np.abs(b).max(initial=1.0))
        ok = (np.all(x[free] > lo[free]) and np.all(x[free] < hi[free])  # False for NaN
              and np.all(slope[at_lo] >= -tol) and np.all(slope[at_hi] <= tol))
    return x if ok else None


def _reduce(columns: tuple, gram: np.ndarray, scale: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    """(R, Q^T t): a k x k upper-triangular system with the same least-squares solution as
    the design's first k columns, divided by ``scale``, against its last column t.

    From the Cholesky factor of the scaled A^T A (no pass over the data) when it is well
    conditioned; else from a QR factorization of the design (one more pass)."""
    k = len(scale)
    g = gram[:k, :k] / np.outer(scale, scale)
    try:
        lower = np.linalg.cholesky(g)
        if np.all(np.isfinite(gram)) and np.linalg.cond(lower) <= _COND_NORMAL:
            from scipy.linalg import solve_triangular
            return lower.T, solve_triangular(lower, gram[:k, k] / scale, lower=True)
    except np.linalg.LinAlgError:
        pass
    cols, target, divisor = columns
    design = np.empty((len(target), k + 1), order="F")
    with np.errstate(all="ignore"):
        _design_block(cols, target, divisor, slice(0, len(target)), design)
        design[:, :k] /= scale
    rr = np.linalg.qr(design, mode="r")
    return rr[:k, :k], rr[:k, k]
