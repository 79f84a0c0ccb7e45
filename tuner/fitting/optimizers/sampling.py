"""Baselines that do not learn: grid search over the space, and random search."""
from __future__ import annotations

import itertools
import math

import numpy as np

from .base import Config, Optimizer, config_key


def grid_shape(d: int, budget: int) -> list[int]:
    """Points per dimension: as even as possible with a product <= budget (at least 1 each)."""
    m = max(1, int(math.floor(budget ** (1.0 / d) + 1e-9)))
    shape = [m] * d
    for i in range(d):  # spend what is left on the first dimensions, one point at a time
        if math.prod(shape) // shape[i] * (shape[i] + 1) <= budget:
            shape[i] += 1
    return shape


class GridSearch(Optimizer):
    """A full grid of cell centres over the box (log scale where the space says), sized to the
    budget, visited in a seeded random order so its best-so-far curve is fair."""

    name = "grid"

    def __init__(self, space, *, seed=0, budget=100):
        super().__init__(space, seed=seed, budget=budget)
        b = space.bounds
        self.shape = grid_shape(len(b), budget)
        axes = [lo + (np.arange(m) + 0.5) * (hi - lo) / m for (lo, hi), m in zip(b, self.shape)]
        points = np.array(list(itertools.product(*axes)))
        self._points = points[self.rng.permutation(len(points))]
        self._next = 0

    @property
    def finished(self) -> bool:
        return self._next >= len(self._points)

    def _propose(self, n: int) -> list[Config]:
        out = []
        while len(out) < n and self._next < len(self._points):
            c = self.to_config(self._points[self._next])
            self._next += 1
            k = config_key(self.space, c)
            if k not in self.seen and k not in self.pending:
                out.append(c)
        return out


class RandomSearch(Optimizer):
    """Independent uniform draws in internal coordinates (log-uniform for log-scale ones)."""

    name = "random"

    def _propose(self, n: int) -> list[Config]:
        b = self.space.bounds
        out = []
        while len(out) < n:
            c = self.to_config(self.rng.uniform(b[:, 0], b[:, 1]))
            k = config_key(self.space, c)
            if k not in self.seen and k not in self.pending:
                out.append(c)
        return out
