"""The objective: how well one coefficient set fits one dataset.

``huber`` (default, Hoffmann et al. approach 3): sum over runs of Huber_delta(log L_pred - log
L_obs). ``mse``: mean squared log residual. ``paper``: the literal Fig. 7 objective, the mean
predicted loss, which needs no observed loss (and is degenerate: it rewards any coefficients
that predict low loss, whatever the data say). A prediction that overflows, is NaN or <= 0
scores ``PENALTY``: a bad point, never a crash.
"""
from __future__ import annotations

from dataclasses import dataclass, asdict
from typing import Mapping

import numpy as np

from .datasets import Dataset
from .errors import TunerError
from .laws import Law, get_law

OBJECTIVES = ("huber", "mse", "paper")
PENALTY = 1.0e6


@dataclass(frozen=True)
class ObjectiveSpec:
    """Everything that defines an objective, stored in the run's config."""

    law: str
    data: str
    kind: str = "huber"
    delta: float = 1e-3
    drop_outliers: bool = True

    def __post_init__(self) -> None:
        get_law(self.law)
        if self.kind not in OBJECTIVES:
            raise TunerError(f"unknown objective {self.kind!r}; choose one of "
                             f"{', '.join(OBJECTIVES)}")
        if not self.delta > 0:
            raise TunerError(f"--delta must be > 0, got {self.delta}")

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
        self.law: Law = get_law(spec.law)
        self.runs = dataset.runs
        loss = dataset.loss
        if spec.kind != "paper" and loss is None:
            raise TunerError(f"{dataset.path}: objective {spec.kind!r} needs a loss column "
                             "(only 'paper' works without observed losses)")
        self.log_obs = None if loss is None else np.log(loss)

    @classmethod
    def from_spec(cls, spec: ObjectiveSpec) -> "Objective":
        from .datasets import load
        return cls(spec, load(spec.data, drop_outliers=spec.drop_outliers,
                              need_loss=spec.kind != "paper"))

    def predict(self, params: Mapping[str, np.ndarray | float]) -> np.ndarray:
        with np.errstate(all="ignore"):
            return np.asarray(self.law.predict(params, self.runs), dtype=float)

    def batch(self, params: Mapping[str, np.ndarray]) -> np.ndarray:
        """Score k coefficient sets given as arrays of length k: one (k, n) pass."""
        cols = {n: np.asarray(v, dtype=float)[:, None] for n, v in params.items()}
        pred = np.atleast_2d(self.predict(cols))
        with np.errstate(all="ignore"):
            bad = ~np.all(np.isfinite(pred) & (pred > 0), axis=1)
            if self.spec.kind == "paper":
                value = pred.mean(axis=1)
            else:
                r = np.log(pred) - self.log_obs
                value = (huber(r, self.spec.delta).sum(axis=1) if self.spec.kind == "huber"
                         else (r * r).mean(axis=1))
        value = np.where(bad | ~np.isfinite(value), PENALTY, np.minimum(value, PENALTY))
        return value

    def value_and_grad(self, params: Mapping[str, float]) -> tuple[float, dict[str, float]]:
        """The objective and its gradient in natural units (zeros at a penalized point)."""
        value = self(params)
        names = self.law.params
        if value >= PENALTY:
            return value, {n: 0.0 for n in names}
        with np.errstate(all="ignore"):
            pred = self.predict(params)
            dpred = self.law.gradient(params, self.runs)
            if self.spec.kind == "paper":
                weight = np.full_like(pred, 1.0 / len(pred))
            else:
                r = np.log(pred) - self.log_obs
                if self.spec.kind == "huber":
                    d = self.spec.delta
                    weight = np.clip(r, -d, d) / pred
                else:
                    weight = 2.0 * r / (pred * len(pred))
            grad = {n: float(np.sum(weight * dpred[n])) for n in names}
        return value, grad

    def __call__(self, params: Mapping[str, float]) -> float:
        return float(self.batch({n: np.array([v]) for n, v in params.items()})[0])

    def residuals(self, params: Mapping[str, float]) -> np.ndarray:
        """log L_pred - log L_obs per run (NaN where the law gives no valid prediction)."""
        if self.log_obs is None:
            raise TunerError("residuals need observed losses")
        pred = self.predict(params)
        with np.errstate(all="ignore"):
            return np.where(pred > 0, np.log(pred), np.nan) - self.log_obs

    def rmse_log(self, params: Mapping[str, float]) -> float:
        if self.log_obs is None:
            return float("nan")
        r = self.residuals(params)
        return float(np.sqrt(np.mean(r * r))) if np.all(np.isfinite(r)) else float("inf")
