"""Multi-start L-BFGS-B: the classical fitting reference (Hoffmann et al. / Epoch AI style).

Phase 1 scores a set of starts (the published default, then a grid of 3 points per dimension
or, in high dimension, a scrambled Sobol sample); phase 2 runs L-BFGS-B with tight tolerances
from the best starts in turn, in internal coordinates (log scale for large coefficients).
With gradients told alongside values (the built-in objectives compute them in the same pass)
each L-BFGS step costs one evaluation; without them, finite differences, one evaluation per
coordinate. Either way every pass over the data is an evaluation the ensemble runs and logs.

``LocalSearch`` turns scipy's callback loop into ask/tell: each local run lives in a thread
that blocks until its point is told; ``propose(n)`` keeps up to n runs going at once. The
ytopt optimizer reuses it to polish its incumbent.
"""
from __future__ import annotations

import itertools
import queue
import threading

import numpy as np
from scipy.optimize import minimize


from .base import Config, Optimizer, config_key

OPTIONS = {"ftol": 1e-15, "gtol": 1e-11, "maxiter": 20000, "maxfun": 10**7, "maxcor": 20}


class _Stop(Exception):
    pass


class _LocalRun(threading.Thread):
    def __init__(self, search: "LocalSearch", u0: np.ndarray):
        super().__init__(daemon=True)
        self.search, self.u0 = search, u0
        self.requests: queue.Queue = queue.Queue()
        self.replies: queue.Queue = queue.Queue()

    def _value(self, u: np.ndarray):
        opt = self.search.opt
        c = opt.to_config(u)
        k = config_key(opt.space, c)
        if k not in opt.seen:
            self.requests.put(c)
            if self.replies.get() is None:
                raise _Stop
        return opt.seen[k], opt.grads.get(k)

    def fun(self, u: np.ndarray) -> float:
        return self._value(u)[0]

    def fun_grad(self, u: np.ndarray):
        value, grad = self._value(u)
        if grad is None:
            grad = np.zeros(len(u))
        return value, grad

    def run(self) -> None:
        try:
            if self.search.gradients:
                minimize(self.fun_grad, self.u0, jac=True, method="L-BFGS-B",
                         bounds=self.search.opt.space.bounds, options=OPTIONS)
            else:
                minimize(self.fun, self.u0, method="L-BFGS-B",
                         bounds=self.search.opt.space.bounds, options={**OPTIONS, "eps": 1e-8})
        except _Stop:
            pass
        finally:
            self.requests.put(None)


class LocalSearch:
    """L-BFGS-B runs from a queue of starts, driven by an optimizer's ask/tell."""

    def __init__(self, opt: Optimizer, gradients: bool):
        self.opt, self.gradients = opt, gradients
        self.starts: list[np.ndarray] = []
        self.runs: list[_LocalRun] = []
        self.waiting: dict[tuple[float, ...], list[_LocalRun]] = {}

    @property
    def finished(self) -> bool:
        return not self.starts and not self.runs

    def propose(self, n: int) -> list[Config]:
        out: list[Config] = []
        while True:
            self.runs = [r for r in self.runs if r.is_alive() or not r.requests.empty()]
            busy = {id(r) for runs in self.waiting.values() for r in runs}
            idle = [r for r in self.runs if id(r) not in busy]
            while len(self.runs) < n and self.starts:
                r = _LocalRun(self, self.starts.pop(0))
                r.start()
                self.runs.append(r)
                idle.append(r)
            for r in idle:
                c = r.requests.get()
                if c is None:
                    self.runs.remove(r)
                    continue
                k = config_key(self.opt.space, c)
                if k in self.opt.seen:  # told meanwhile, e.g. asked by another run
                    r.replies.put(True)
                elif k in self.waiting:  # another run already asked for this point
                    self.waiting[k].append(r)
                else:
                    self.waiting[k] = [r]
                    out.append(c)
            if out or self.waiting or self.finished:
                return out

    def observe(self, keys) -> None:
        for k in keys:
            for r in self.waiting.pop(k, []):
                r.replies.put(True)

    def close(self) -> None:
        for r in self.runs:
            r.replies.put(None)


class LBFGSOptimizer(Optimizer):
    name = "lbfgs"
    OPTIONS = ()

    def __init__(self, space, *, seed: int = 0, budget: int = 2000, n_starts: int | None = None,
                 gradients: bool = True):
        super().__init__(space, seed=seed, budget=budget)
        b = space.bounds
        d = len(b)
        n = n_starts or max(8, min(243, budget // 10))
        if 3 ** d <= n:
            axes = [lo + np.array([1, 3, 5]) * (hi - lo) / 6 for lo, hi in b]
            starts = np.array(list(itertools.product(*axes)))
        else:
            m = int(np.ceil(np.log2(n)))
            from scipy.stats import qmc  # imported here: scipy.stats is slow to import
            unit = qmc.Sobol(d, scramble=True, seed=seed).random_base2(m)[:n]
            starts = b[:, 0] + unit * (b[:, 1] - b[:, 0])
        default = space.encode(space.default())
        self._starts = [self.to_config(u) for u in np.vstack([default, starts])]
        self._screen = 0
        self._local = LocalSearch(self, gradients)
        self._ranked = False

    @property
    def finished(self) -> bool:
        return self._ranked and self._local.finished

    @property
    def converged(self) -> bool:
        return self.finished

    def _propose(self, n: int) -> list[Config]:
        out: list[Config] = []
        while len(out) < n and self._screen < len(self._starts):
            c = self._starts[self._screen]
            self._screen += 1
            k = config_key(self.space, c)
            if k not in self.seen and k not in self.pending:
                out.append(c)
        if out or (self.pending and not self._ranked):
            return out
        if not self._ranked:
            scored = sorted(self._starts,
                            key=lambda c: self.seen.get(config_key(self.space, c), np.inf))
            self._local.starts = [self.space.encode(c) for c in scored]
            self._ranked = True
        return self._local.propose(n)

    def _observe(self, keys, values) -> None:
        self._local.observe(keys)

    def close(self) -> None:
        self._local.close()
