"""The ytopt method on scikit-optimize: Bayesian optimization with ytopt's defaults.

Surrogate RF (ET, GBRT, GP selectable), acquisition gp_hedge with kappa 1.96, candidates by
sampling, 10 initial points of which the first is the space's default (the published
coefficients), duplicates skipped, seeded. Points asked while others are still being
evaluated, or several at once, get constant-liar values on a throwaway copy of the skopt
optimizer, so lies never enter the real history. Unlike ytopt's own code, results are told
once, incrementally, never by re-telling the whole history.
"""
from __future__ import annotations

import numpy as np

from .base import Config, Optimizer, config_key
from .lbfgs import LocalSearch

SURROGATES = ("RF", "ET", "GBRT", "GP")
DEFAULT_POLISH = 0.5  # share of the budget for the L-BFGS-B polish; 0 = ytopt as published
LIARS = ("cl_max", "cl_min", "cl_mean")


def _gbrt_estimator(random_state: int):
    """skopt's GBRT quantile regressor, mended for scikit-learn >= 1.6 and numpy 2.

    scikit-learn 1.6 reads the estimator type from ``__sklearn_tags__``, and skopt's class
    lists ``RegressorMixin`` after ``BaseEstimator``, so ``is_regressor`` says no; its
    ``predict(return_std=True)`` calls ``np.in1d``, removed in numpy 2.
    """
    from sklearn.ensemble import GradientBoostingRegressor
    from skopt.learning import GradientBoostingQuantileRegressor

    class GBRTQuantiles(GradientBoostingQuantileRegressor):
        _estimator_type = "regressor"  # scikit-learn < 1.6

        def __sklearn_tags__(self):
            tags = super().__sklearn_tags__()
            tags.estimator_type = "regressor"
            return tags

        def predict(self, X, return_std=False, return_quantiles=False):
            if return_std and not return_quantiles:
                q = list(self.quantiles)
                if not all(v in q for v in (0.16, 0.5, 0.84)):
                    raise ValueError("return_std needs quantiles 0.16, 0.5 and 0.84")
                low, mean, high = (self.regressors_[q.index(v)].predict(X)
                                   for v in (0.16, 0.5, 0.84))
                return mean, (high - low) / 2.0
            return super().predict(X, return_std=return_std,
                                   return_quantiles=return_quantiles)

    return GBRTQuantiles(base_estimator=GradientBoostingRegressor(n_estimators=30,
                                                                  loss="quantile"),
                         random_state=random_state)


class YtoptOptimizer(Optimizer):
    name = "ytopt"

    def __init__(self, space, *, seed: int = 0, budget: int = 100, surrogate: str = "RF",
                 liar: str = "cl_max", n_initial_points: int = 10, kappa: float = 1.96,
                 acq_func: str = "gp_hedge", n_candidates: int = 10000, polish: float = DEFAULT_POLISH,
                 gradients: bool = True):
        super().__init__(space, seed=seed, budget=budget)
        if not 0.0 <= polish < 1.0:
            raise ValueError(f"polish must be in [0, 1), got {polish}")
        # The last `polish` share of the budget runs L-BFGS-B from the best points found.
        self.n_bo = budget - int(round(polish * budget)) if polish > 0 else None
        self._local = LocalSearch(self, gradients)
        self._polishing = False
        from skopt import Optimizer as SkOptimizer
        from skopt.space import Real

        surrogate = surrogate.upper()
        if surrogate not in SURROGATES:
            raise ValueError(f"unknown surrogate {surrogate!r}; choose one of "
                             f"{', '.join(SURROGATES)}")
        if liar not in LIARS:
            raise ValueError(f"unknown liar strategy {liar!r}; choose one of {', '.join(LIARS)}")
        self.surrogate, self.liar = surrogate, liar
        dims = [Real(d.lower, d.upper, prior="log-uniform" if d.log else "uniform", name=d.name)
                for d in space.dims]
        estimator = _gbrt_estimator(seed) if surrogate == "GBRT" else surrogate
        self._opt = SkOptimizer(dims, base_estimator=estimator, n_initial_points=n_initial_points,
                                acq_func=acq_func, acq_optimizer="sampling",
                                acq_func_kwargs={"kappa": kappa},
                                acq_optimizer_kwargs={"n_points": n_candidates},
                                random_state=seed)
        self._default = space.default()

    def _lie(self) -> float:
        if not self.y:
            return 0.0
        real = np.asarray(self.y)
        return float({"cl_max": real.max, "cl_min": real.min, "cl_mean": real.mean}[self.liar]())

    def _propose(self, n: int) -> list[Config]:
        if self.n_bo is not None and len(self.y) + len(self.pending) >= self.n_bo:
            if not self._polishing:
                if self.pending:
                    return []  # the incumbent is not known until these are told
                order = np.argsort(self.y)[:5]
                self._local.starts = [self.space.encode(dict(zip(self.space.names, self.X[i])))
                                      for i in order]
                self._polishing = True
            out = self._local.propose(n)
            if out or not self._local.finished:
                return out
        return self._bayes(n)

    def _bayes(self, n: int) -> list[Config]:
        out: list[Config] = []
        dk = config_key(self.space, self._default)
        if dk not in self.seen and dk not in self.pending:
            out.append(self._default)
        if len(out) == n:
            return out
        opt, lie = self._opt, self._lie()
        inflight = [k for k in self.pending] + [config_key(self.space, c) for c in out]
        need = n - len(out)
        if inflight or need > 1:
            # A throwaway copy carries the lies; the real optimizer never sees them.
            opt = self._opt.copy(random_state=int(self.rng.integers(2**31 - 1)))
            if inflight:
                opt.tell([list(k) for k in inflight], [lie] * len(inflight))
        for i in range(need):
            x = [float(v) for v in opt.ask()]
            c = self.space.complete(dict(zip(self.space.names, x)))
            k = config_key(self.space, c)
            if k in self.seen or k in self.pending or c in out:
                # ytopt skips duplicates; a fresh random point keeps the batch full.
                b = self.space.bounds
                c = self.to_config(self.rng.uniform(b[:, 0], b[:, 1]))
                x = list(config_key(self.space, c))
            out.append(c)
            if i < need - 1:
                opt.tell(x, lie)
        return out

    def _observe(self, keys, values) -> None:
        # While polishing, refitting the surrogate on every step would dominate the time.
        self._opt.tell([list(k) for k in keys], list(values), fit=not self._polishing)
        self._local.observe(keys)

    def close(self) -> None:
        self._local.close()
