"""Cheap in-process refits: drive any ask/tell optimizer directly (no libEnsemble, no run dir).

Used by bootstrap resamples, held-out validation and law ranking. ``start`` warm-starts the
search: the space's default (the first point every optimizer scores) becomes ``start``.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Mapping

import numpy as np

from tuner.fit.objective import Objective, evaluate
from tuner.fit.optimizers import make_optimizer
from tuner.laws.spaces import Space


def warm_space(space: Space, start: Mapping[str, float]) -> Space:
    """``space`` with ``start`` (clipped into the bounds) as its default configuration."""
    dims = tuple(replace(d, default=float(min(max(start[d.name], d.lower), d.upper)))
                 for d in space.dims)
    return replace(space, dims=dims)


def minimize_inprocess(objective: Objective, space: Space, optimizer: str = "lbfgs", *,
                       budget: int = 400, seed: int = 0,
                       start: Mapping[str, float] | None = None,
                       n_starts: int | None = None, history: list[float] | None = None,
                       **options) -> tuple[dict[str, float], float]:
    """Best (coefficients, objective) after at most ``budget`` evaluations, one at a time.

    ``history``, when given, receives every objective value in order; ``options`` go to the
    optimizer (e.g. ``surrogate``, ``polish``)."""
    if start is not None:
        space = warm_space(space, start)
    # The 'paper' objective has no residuals to solve linear coefficients from.
    options.setdefault("profile", objective.spec.kind != "paper")
    opt = make_optimizer(optimizer, space, seed=seed, budget=budget, n_starts=n_starts,
                         **options)
    try:
        for _ in range(budget):
            if opt.finished:
                break
            configs = opt.ask(1)
            if not configs:
                break
            done, values, grads, curvs = zip(*(evaluate(objective, space, c) for c in configs))
            opt.tell(list(done), list(values), list(grads), asked=configs,
                     curvatures=list(curvs))
            if history is not None:
                history.extend(values)
    finally:
        opt.close()
    best = opt.best()
    if best is None:
        raise RuntimeError("optimizer proposed no configuration")
    return dict(best[0]), float(best[1])
