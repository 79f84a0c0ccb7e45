"""Levenberg-Marquardt steps on the objective's Gauss-Newton curvature, as ask/tell.

The built-in objectives return, from the same pass as the value, the gradient g and an IRLS
Gauss-Newton matrix H = J^T W J (``Objective.value_and_grad(curvature=True)``). From a centre
point each round proposes steps solving (H + lam diag(H)) s = -g over the coordinates not held
at a bound, clipped into the box; with idle workers, more trials in the same round: the step
stretched 2x and 4x, damped 4x more, stretched 8x...
The best step that lowers the objective becomes the centre and lam shrinks; if none does, lam
grows. Near the optimum (gains below 1e-3 relative) the matrix is corrected by BFGS updates
from the gradients' change, since IRLS alone converges only linearly on a Huber objective;
where the k-th corrected step of a run fails (a curved valley, as abnar's on clark_routing),
the run goes on with Gauss-Newton steps for 2^k + 1 successes (3, 5, 9...) before it tries
one again.
A start ends when steps stop improving (relative gain < 1e-7 twice in a row, or lam beyond
1e10), when it comes close to an optimum an earlier start reached (within 0.05 in internal
coordinates and 5% in value: the same basin), or after ``max_rounds`` (set aside, for a
later polish to go on from); then the next start. A detour runs a few rounds from another
start (a limit probe) before the run it interrupts goes on, and replaces it if it gains. On these sum-of-residuals objectives it
converges in tens of evaluations where L-BFGS-B, which only sees values and gradients, needs
hundreds (benchmarks/optimizers.py, benchmarks/speed.py).
"""
from __future__ import annotations

import numpy as np

from .base import Config, Optimizer, config_key

LAMBDA0, LAMBDA_MIN, LAMBDA_MAX = 1e-3, 1e-9, 1e10
TINY_GAIN, TINY_ROUNDS = 1e-7, 2
# A run has reached a known optimum (the same basin) within this internal-coordinate distance
# of it and this factor of its value.
SAME_BASIN, SAME_VALUE = 0.05, 1.05
# Below this relative gain per step the run is near its optimum, where the secant-corrected
# curvature converges fast; farther out the IRLS Gauss-Newton matrix is the safer guide.
ENDGAME = 1e-3


class NewtonSearch:
    """Levenberg-Marquardt runs from a queue of starts, driven by an optimizer's ask/tell."""

    def __init__(self, opt: Optimizer, optima: list | None = None):
        self.opt = opt
        self.starts: list[Config] = []  # configurations, as told (no round trip through log)
        self.centre: tuple | None = None
        self.lam = LAMBDA0
        self.tiny = 0
        self.trials: dict[tuple, float] = {}  # proposed key -> its damping (nan: a start)
        # Where earlier runs ended (internal coordinates, value): the caller passes one list
        # to every polish of a fit, so a later one knows the basins found before it.
        self.optima: list[tuple[np.ndarray, float]] = [] if optima is None else optima
        self.max_rounds: int | None = None  # rounds per start before it is set aside
        self.rounds = 0
        self.hess: np.ndarray | None = None  # the run's curvature, secant-corrected
        self.set_aside: list[tuple] = []  # centres of runs cut off by max_rounds
        self.secant_failures = 0  # secant-corrected steps of this run that failed
        self.path: list[float] = []  # the run's value after each round
        self.stall_seen: int | None = None  # the round a stall was last reported
        self.secant_wait = 0      # Gauss-Newton successes to go, less one, before the next
        # A detour: (its start's key, its rounds, the value it must beat to take over).
        self.detour_plan: tuple[tuple, int, float] | None = None
        self.on_detour = False

    @property
    def finished(self) -> bool:
        return not self.starts and self.centre is None and not self.trials

    def _usable(self, k: tuple) -> bool:
        o = self.opt
        return k in o.seen and k in o.grads and k in o.curvatures

    def propose(self, n: int) -> list[Config]:
        o, space = self.opt, self.opt.space
        while not self.trials:
            if self.centre is None:
                if not self.starts:
                    return []
                c = space.complete(self.starts.pop(0))
                k = config_key(space, c)
                if self._usable(k):
                    self._begin(k)
                    continue
                if k in o.seen or k in o.pending:
                    continue  # known without curvature (failed), or someone else's
                self.trials[k] = np.nan
                return [c]
            out = self._steps(n)
            if out:
                return out
            self.centre = None  # no step moves: converged at a corner of the box
        return []

    def _steps(self, n: int) -> list[Config]:
        o = self.opt
        g = o.grads[self.centre]
        h = self.hess if self.hess is not None else o.curvatures[self.centre]
        while True:
            space = o.space
            lo, hi = space.bounds.T
            u = space.encode(space.complete(dict(zip(space.names, self.centre))))
            pressing = ((u <= lo) & (g > 0)) | ((u >= hi) & (g < 0))
            # A bound that is not physical moves out of the way (once more each time).
            if not any(o.widen(space.dims[i].name, 0 if u[i] <= lo[i] else 1)
                       for i in np.flatnonzero(pressing)):
                break
        # Coordinates at a bound with the gradient pushing outwards stay there.
        free = ~pressing
        if not free.any():
            return []
        hf = h[np.ix_(free, free)]
        diag = np.diag(hf).copy()
        diag[diag <= 0] = max(float(diag.max(initial=0.0)), 1.0) * 1e-12
        out: list[Config] = []
        base = None
        for j in range(max(n, 1)):
            # Trials of one round: the step at the current damping, the same stretched 2x
            # and 4x (the IRLS curvature overstates, so longer steps along the direction
            # often gain more), one damped 4x more should they all fail, then 8x, 16x...
            damped = j == 3
            lam = self.lam * (4.0 if damped else 1.0)
            if j == 0 or damped or base is None:
                step = np.zeros_like(u)
                try:
                    step[free] = np.linalg.solve(hf + lam * np.diag(diag), -g[free])
                except np.linalg.LinAlgError:
                    continue
                if j == 0:
                    base = step
            else:
                step = base * 2.0 ** (j if j < 3 else j - 1)
            c = o.to_config(np.clip(u + step, lo, hi))
            k = config_key(space, c)
            if k == self.centre or k in self.trials or k in o.pending:
                continue
            self.trials[k] = lam
            if k not in o.seen:
                out.append(c)
        if self.trials and not out:  # every step already evaluated: judge them now
            self._judge()
            return self._steps(n) if self.centre is not None else []
        return out

    def observe(self, keys) -> None:
        if self.trials and all(k in self.opt.seen for k in self.trials):
            self._judge()

    def _judge(self) -> None:
        """A round is in: move to its best point if it improves, else damp more."""
        o = self.opt
        trials, self.trials = self.trials, {}
        if self.centre is None:  # the round was a start's first evaluation
            k = next(iter(trials))
            if self._usable(k):
                self._begin(k)
            return
        self.rounds += 1
        best = min(trials, key=lambda k: o.seen[k])
        self.path.append(min(o.seen[best], o.seen[self.centre]))
        v0, v1 = o.seen[self.centre], o.seen[best]
        if v1 < v0 and self._usable(best):
            if v0 - v1 <= ENDGAME * abs(v0) and self.secant_wait <= 0:
                self._secant(self.centre, best)
            else:
                self.secant_wait -= 1
                self.hess = None  # far from the optimum, or the secant failed: Gauss-Newton
            self.tiny = self.tiny + 1 if (v0 - v1) <= TINY_GAIN * abs(v0) else 0
            self.centre, self.lam = best, max(trials[best] / 3.0, LAMBDA_MIN)
            if self.tiny >= TINY_ROUNDS:
                self._end()
            elif self._known_basin():
                self.centre = None
        elif self.hess is not None:
            # The secant-corrected step failed: back to Gauss-Newton, and not straight back
            # to the secant after the next success (in a curved valley that wasted two
            # evaluations of every three: a failed secant step, then a Gauss-Newton step
            # damped too little; benchmarks/speed.py).
            self.hess = None
            self.secant_failures += 1
            self.secant_wait = 2 ** self.secant_failures
        else:
            self.lam = max(trials.values()) * 4.0
            if self.lam > LAMBDA_MAX:
                self._end()
        if self.on_detour and (self.centre is None or self.rounds >= self.detour_plan[1]):
            self._detour_over()
        if (self.centre is not None and self.max_rounds is not None
                and self.rounds >= self.max_rounds):
            # Slow progress (the IRLS curvature of a Huber objective converges linearly):
            # leave the rest of this run to a later polish and let the search look elsewhere.
            self.set_aside.append(self.centre)
            self.centre = None

    def detour(self, start: Config, rounds: int, beat: float) -> None:
        """Run ``rounds`` rounds from ``start`` before going back to the run now going on;
        the detour takes over (that run is set aside) if it gets below ``beat``."""
        space = self.opt.space
        if self.centre is not None:
            self.starts.insert(0, space.complete(dict(zip(space.names, self.centre))))
            self.centre = None
        self.starts.insert(0, start)
        self.detour_plan = (config_key(space, space.complete(start)), rounds, beat)

    def _detour_over(self) -> None:
        """The detour's rounds are done (or it ended): it goes on if it won, else the run it
        interrupted resumes."""
        _, _, beat = self.detour_plan
        self.detour_plan, self.on_detour = None, False
        if self.path and self.path[-1] < beat:
            if self.starts:
                space = self.opt.space
                self.set_aside.append(config_key(space, space.complete(self.starts.pop(0))))
        else:
            self.centre = None

    def _begin(self, k: tuple) -> None:
        self.on_detour = self.detour_plan is not None and k == self.detour_plan[0]
        self.centre, self.lam, self.tiny, self.rounds = k, LAMBDA0, 0, 0
        self.hess = None
        self.secant_failures = self.secant_wait = 0
        self.path = []
        self.stall_seen = None

    def new_stall(self, rounds: int = 10, gain: float = 1e-3, every: int = 20) -> bool:
        """True when the run goes on but has gained less than ``gain`` (relative) in its last
        ``rounds`` rounds, at most once every ``every`` rounds of a run."""
        p = self.path
        if (self.centre is None or len(p) <= rounds
                or (self.stall_seen is not None and len(p) < self.stall_seen + every)
                or p[-rounds - 1] - p[-1] > gain * abs(p[-1])):
            return False
        self.stall_seen = len(p)
        return True

    def _secant(self, k0: tuple, k1: tuple) -> None:
        """BFGS update of the curvature along the step just taken. The IRLS Gauss-Newton
        matrix of a Huber objective overstates the curvature of residuals beyond delta, so
        its steps alone converge linearly; corrected by the gradients' change they converge
        superlinearly, as quasi-Newton methods started from a good matrix do."""
        o, space = self.opt, self.opt.space
        u0, u1 = (space.encode(space.complete(dict(zip(space.names, k)))) for k in (k0, k1))
        b = self.hess if self.hess is not None else o.curvatures[k0]
        s, y = u1 - u0, o.grads[k1] - o.grads[k0]
        bs = b @ s
        sy, sbs = float(s @ y), float(s @ bs)
        if sy > 1e-12 * np.linalg.norm(s) * np.linalg.norm(y) and sbs > 0:
            self.hess = b - np.outer(bs, bs) / sbs + np.outer(y, y) / sy
        else:
            self.hess = o.curvatures[k1]

    def _here(self) -> np.ndarray:
        space = self.opt.space
        return space.encode(space.complete(dict(zip(space.names, self.centre))))

    def _end(self) -> None:
        """The run from this start has converged: remember where."""
        self.optima.append((self._here(), self.opt.seen[self.centre]))
        self.centre = None

    def _known_basin(self) -> bool:
        u, v = self._here(), self.opt.seen[self.centre]
        return any(np.max(np.abs(u - o)) < SAME_BASIN and v <= SAME_VALUE * vo
                   for o, vo in self.optima)

    def close(self) -> None:
        """Nothing to release (``LocalSearch``, its alternative, has threads)."""
