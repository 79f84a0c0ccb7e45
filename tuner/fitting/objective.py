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
from tuner.fitting.groups import GroupedLaw

OBJECTIVES = ("huber", "mse", "paper")
RESIDUALS = ("log", "linear")
PENALTY = 1.0e6


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
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


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
        return pred - self.target if self.linear_residual else np.log(pred) - self.target

    def predict(self, params: Mapping[str, np.ndarray | float]) -> np.ndarray:
        with np.errstate(all="ignore"):
            return np.asarray(self.law.predict(params, self.runs), dtype=float)

    def batch(self, params: Mapping[str, np.ndarray]) -> np.ndarray:
        """Score k coefficient sets given as arrays of length k: one (k, n) pass."""
        cols = {n: np.asarray(v, dtype=float)[:, None] for n, v in params.items()}
        return self._score(np.atleast_2d(self.predict(cols)))

    def _score(self, pred: np.ndarray) -> np.ndarray:
        """Objective values of (k, n) predictions; PENALTY where a prediction is invalid."""
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
        return value

    def solve_linear(self, params: Mapping[str, float], names: Sequence[str],
                     bounds: Mapping[str, tuple[float, float]],
                     fallback: Mapping[str, float]) -> dict[str, float]:
        """``params`` with the coefficients ``names``, which the law is linear in, solved.

        They minimise the squared relative error sum(((L_pred - L_obs) / L_obs)^2), the
        first-order form of the log residual (the squared error itself for linear residuals) (not the Huber objective itself: the polish
        finishes the job), within ``bounds`` (natural units): a bounded linear least-squares
        problem, built from the law's terms at these runs and reduced to a k x k system by QR,
        so its cost after that does not grow with the data. A coefficient the data cannot
        determine (an all-zero column, e.g. Eq 7's c on dense runs, or a weight aD^bD with
        bD = 0 or a box reaching aD <= 0) keeps its ``fallback`` value, clipped to its box."""
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
        with np.errstate(all="ignore"):
            offset, cols = law.linear_columns(out, self.runs, solve)
            obs = self.obs if not self.linear_residual else np.ones_like(self.obs)
            target = self.obs
            m, t = cols / obs[:, None], (target - offset) / obs
            scale = np.sqrt((m * m).sum(axis=0))
        keep = np.isfinite(scale) & (scale > 0)
        if not keep.all():  # unidentifiable columns: their fallback value joins the offset
            solve = [n for n, k in zip(solve, keep) if k]
            with np.errstate(all="ignore"):
                offset, cols = law.linear_columns(out, self.runs, solve)
                m, t = cols / obs[:, None], (target - offset) / obs
            scale = scale[keep]
        if not solve or not (np.all(np.isfinite(m)) and np.all(np.isfinite(t))):
            return out  # nothing to solve, or an overflow: the fallback scores as it may
        with np.errstate(all="ignore"):
            lo = np.array([law.to_weight(n, bounds[n][0], out) for n in solve])
            hi = np.array([law.to_weight(n, bounds[n][1], out) for n in solve])
        lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
            return out
        q, r = np.linalg.qr(m / scale)
        res = lsq_linear(r, q.T @ t, bounds=(lo * scale, hi * scale), method="bvls")
        for n, v in zip(solve, np.clip(res.x / scale, lo, hi)):
            out[n] = float(np.clip(law.from_weight(n, float(v), out), *sorted(bounds[n])))
        return out

    def value_and_grad(self, params: Mapping[str, float], curvature: bool = False):
        """The objective and its gradient in natural units (zeros at a penalized point).

        With ``curvature``, also a Gauss-Newton matrix over the law's coefficients from the
        same pass: J^T W J with J the log-prediction's Jacobian and W the IRLS weights of the
        objective (Huber: min(1, delta/|r|)), the curvature a Levenberg-Marquardt step uses;
        NaN for the 'paper' objective, which has no residuals."""
        pred = self.predict(params)  # one prediction serves the value and the derivatives
        value = float(self._score(np.atleast_2d(pred))[0])
        names = self.law.params
        k = len(names)
        curv = np.full((k, k), np.nan)
        if value >= PENALTY:
            zero = {n: 0.0 for n in names}
            return (value, zero, np.zeros((k, k))) if curvature else (value, zero)
        with np.errstate(all="ignore"):
            dpred = self.law.gradient(params, self.runs)
            # d residual / d prediction: 1/L for log residuals, 1 for linear ones
            dres = np.ones_like(pred) if self.linear_residual else 1.0 / pred
            if self.spec.kind == "paper":
                weight = np.full_like(pred, 1.0 / len(pred))
            else:
                r = self._residual(pred)
                if self.spec.kind == "huber":
                    d = self.spec.delta
                    weight = np.clip(r, -d, d) * dres
                    irls = np.minimum(1.0, d / np.maximum(np.abs(r), 1e-300))
                else:
                    weight = 2.0 * r * dres / len(pred)
                    irls = np.full_like(r, 2.0 / len(r))
            grad = {n: float(np.sum(weight * dpred[n])) for n in names}
            if curvature and self.spec.kind != "paper":
                jac = np.column_stack([np.broadcast_to(dpred[n], pred.shape) * dres
                                       for n in names])
                curv = (jac * irls[:, None]).T @ jac
        return (value, grad, curv) if curvature else (value, grad)

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
