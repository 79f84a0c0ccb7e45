"""One evaluation: a coefficient set scored on one dataset, as one record.

``evaluate`` solves the coefficients a proposal leaves open (NaN: the ones the law is linear
in, ``Objective.solve_linear``), scores the completed set, and returns its value with the
gradient and Gauss-Newton curvature in the space's internal coordinates. Overflow and NaN
are a bad point (the objective's penalty, status ``failed``); an exception raised by the law's
own code is a bug and propagates as ``LawError``.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

from tuner.errors import TunerError
from tuner.fitting.objective import PENALTY, Objective
from tuner.laws.spaces import Space

Config = dict[str, float]


class LawError(TunerError):
    """The law's code (or a custom objective) raised: stop the run, name the law and error."""


@dataclass
class Evaluation:
    """One scored point; ``grad`` and ``curvature`` are in internal coordinates (or None)."""

    eval_id: int
    asked: Config
    params: Config
    value: float
    status: str = "ok"  # ok | failed
    error: str = ""
    grad: np.ndarray | None = None
    curvature: np.ndarray | None = None
    worker: int = 0
    elapsed: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def evaluate(objective: Objective, space: Space, asked: Mapping[str, float],
             eval_id: int = 0) -> Evaluation:
    """Solve, score and differentiate one proposal (the built-in objectives)."""
    start = time.perf_counter()
    params = dict(asked)
    linear = set(objective.law.linear)
    solve = [n for n in space.names if math.isnan(params[n]) and n in linear]
    # The solve, the prediction and the derivatives share the law's powers of the data
    # (computed once here, not three times): only the solved coefficients change between them.
    terms = objective.terms(solve)
    try:
        if solve:
            bounds = space.solve_bounds
            default = space.default()
            try:
                params = objective.solve_linear(params, solve, bounds, default, terms)
            except (np.linalg.LinAlgError, ValueError, FloatingPointError, OverflowError):
                params = {**params, **{n: default[n] for n in solve}}  # scored as a bad point
        value, g, curv = objective.value_and_grad(params, curvature=True, terms=terms)
    except (TunerError, KeyboardInterrupt):
        raise
    except Exception as exc:  # the law's own code failed: a bug, not a bad point
        raise LawError(f"law {objective.law.name}: {type(exc).__name__}: {exc}") from exc
    idx = [objective.law.params.index(n) for n in space.names]
    scale = space.internal_grad({n: 1.0 for n in space.names}, params)  # dx/du per dimension
    curv = curv[np.ix_(idx, idx)] * np.outer(scale, scale)
    ok = value < PENALTY and math.isfinite(value)
    return Evaluation(eval_id, dict(asked), dict(params), float(value),
                      "ok" if ok else "failed",
                      "" if ok else "the law gives no valid prediction (overflow, NaN or <= 0)",
                      space.internal_grad(g, params), curv,
                      elapsed=time.perf_counter() - start)


def evaluate_function(fn: Callable[[Mapping[str, float]], float], asked: Mapping[str, float],
                      eval_id: int = 0) -> Evaluation:
    """Score one point with a custom objective (no gradient); its exceptions are bugs."""
    start = time.perf_counter()
    try:
        value = float(fn(dict(asked)))
    except (TunerError, KeyboardInterrupt):
        raise
    except Exception as exc:
        raise LawError(f"custom objective: {type(exc).__name__}: {exc}") from exc
    ok = math.isfinite(value)
    return Evaluation(eval_id, dict(asked), dict(asked), value if ok else PENALTY,
                      "ok" if ok else "failed", "" if ok else f"objective returned {value}",
                      elapsed=time.perf_counter() - start)
