"""The ask/tell interface every optimizer implements, and the bookkeeping they share."""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Sequence

import numpy as np

from tuner.laws.spaces import Space

Config = dict[str, float]


def config_key(space: Space, config: Config) -> tuple[float | None, ...]:
    """Identity of a configuration: its free coefficients, as exact floats (None for a NaN,
    a coefficient the evaluator is asked to solve, so that the key equals itself)."""
    return tuple(None if math.isnan(v) else v for v in (float(config[n]) for n in space.names))


class Optimizer(ABC):
    """Proposes coefficient sets (``ask``) and learns their objective values (``tell``).

    ``ask(n)`` returns up to ``n`` new configurations (complete coefficient dicts in natural
    units); fewer, possibly none, when the method has nothing to propose until results
    arrive, or is done (``finished``). ``tell`` accepts any configurations with their values,
    including ones this instance never proposed (a resumed run's history).

    A proposed configuration may hold NaN for coefficients the law is linear in: the evaluator
    solves them (``Objective.solve_linear``) and the completed configuration is told, with
    the proposal as ``asked``.
    """

    name: str = "optimizer"
    OPTIONS: tuple[str, ...] = ()  # the user options the method takes (see make_optimizer)

    def __init__(self, space: Space, *, seed: int = 0, budget: int = 100):
        if budget < 1:
            raise ValueError(f"budget must be >= 1, got {budget}")
        self.space = space
        self.seed = int(seed)
        self.budget = int(budget)
        self.rng = np.random.default_rng(seed)
        self.X: list[tuple[float, ...]] = []   # told configurations (keys), in order
        self.y: list[float] = []
        self.seen: dict[tuple[float, ...], float] = {}
        # Gradients in internal coordinates, when the evaluator supplies them.
        self.grads: dict[tuple[float, ...], np.ndarray] = {}
        self.curvatures: dict[tuple[float, ...], np.ndarray] = {}
        self.pending: dict[tuple[float, ...], Config] = {}
        # A proposal that left coefficients to the evaluator -> the key of a told point that
        # answers it (filled by an optimizer that makes such proposals: ``ytopt``).
        self.answers: dict[tuple, tuple[float, ...]] = {}
        self.widenings: list[dict] = []  # soft bounds widened during the run, in order

    MAX_WIDENINGS = 4  # per coefficient and side

    def widen(self, name: str, side: int) -> bool:
        """Widen a soft bound a local search presses against; False when it may not be."""
        d = next(d for d in self.space.dims if d.name == name)
        done = sum(1 for w in self.widenings if w["name"] == name and w["side"] == side)
        if not d.soft[side] or done >= self.MAX_WIDENINGS:
            return False
        self.space = self.space.widened(name, side)
        new = next(d for d in self.space.dims if d.name == name)
        self.widenings.append({"name": name, "side": side,
                               "bound": "lower" if side == 0 else "upper",
                               "old": d.lower if side == 0 else d.upper,
                               "new": new.lower if side == 0 else new.upper,
                               "after_evals": len(self.y)})
        return True

    @property
    def finished(self) -> bool:
        """True when the method has nothing more to propose."""
        return False

    # True when the method stopped on its own because it converged, before its budget.
    converged: bool = False

    @abstractmethod
    def _propose(self, n: int) -> list[Config]:
        """Up to n new configurations, not yet seen nor pending."""

    def _observe(self, keys: list[tuple[float, ...]], values: list[float]) -> None:
        """Hook for methods that learn from results (called once per tell)."""

    def ask(self, n: int = 1) -> list[Config]:
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        if n == 0 or self.finished:
            return []
        out = self._propose(n)
        for c in out:
            self.pending[config_key(self.space, c)] = c
        return out

    def tell(self, configs: Sequence[Config], values: Sequence[float],
             grads: Sequence[np.ndarray] | None = None,
             asked: Sequence[Config] | None = None,
             curvatures: Sequence[np.ndarray] | None = None) -> None:
        """Record results. Optional: ``grads`` and Gauss-Newton ``curvatures`` (internal
        coordinates, free dims); ``asked``, the proposals the evaluated ``configs`` completed
        when they differ."""
        if len(configs) != len(values):
            raise ValueError(f"{len(configs)} configurations but {len(values)} values")
        if grads is not None and len(grads) != len(values):
            raise ValueError(f"{len(values)} values but {len(grads)} gradients")
        if curvatures is not None and len(curvatures) != len(values):
            raise ValueError(f"{len(values)} values but {len(curvatures)} curvatures")
        if asked is not None and len(asked) != len(values):
            raise ValueError(f"{len(values)} values but {len(asked)} proposals")
        keys = [config_key(self.space, c) for c in configs]
        if any(None in k for k in keys):
            raise ValueError("a told configuration has unsolved (NaN) coefficients; tell the "
                             "scored configuration and pass the proposal as 'asked'")
        for c in asked or ():
            self.pending.pop(config_key(self.space, c), None)
        vals = [float(v) for v in values]
        for i, (k, v) in enumerate(zip(keys, vals)):
            if grads is not None:
                g = np.asarray(grads[i], dtype=float)
                if np.all(np.isfinite(g)):
                    self.grads[k] = g
            if curvatures is not None:
                h = np.asarray(curvatures[i], dtype=float)
                if np.all(np.isfinite(h)):
                    self.curvatures[k] = h
            self.pending.pop(k, None)
            self.seen[k] = v
            self.X.append(k)
            self.y.append(v)
        if keys:
            self._observe(keys, vals)

    def tell_evaluations(self, evaluations: Sequence) -> None:
        """Tell finished ``Evaluation`` records (the one form results travel in)."""
        evs = list(evaluations)
        self.tell([e.params for e in evs], [e.value for e in evs],
                  [e.grad if e.grad is not None else np.full(len(self.space.names), np.nan)
                   for e in evs],
                  asked=[e.asked for e in evs],
                  curvatures=[e.curvature if e.curvature is not None
                              else np.full((len(self.space.names),) * 2, np.nan) for e in evs])

    def close(self) -> None:
        """Release what the method holds (L-BFGS-B runs live in threads)."""

    def best(self) -> tuple[Config, float] | None:
        if not self.y:
            return None
        i = int(np.argmin(self.y))
        return self.space.complete(dict(zip(self.space.names, self.X[i]))), self.y[i]

    def to_config(self, u: np.ndarray) -> Config:
        """Internal coordinates -> complete natural-unit configuration."""
        return self.space.decode(u)
