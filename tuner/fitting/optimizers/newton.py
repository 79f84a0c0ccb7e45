"""Levenberg-Marquardt steps on the objective's Gauss-Newton curvature, as ask/tell.

The built-in objectives return, from the same pass as the value, the gradient g and an IRLS
Gauss-Newton matrix H = J^T W J (``Objective.value_and_grad(curvature=True)``). From a centre
point each round proposes steps solving (H + lam diag(H)) s = -g over the coordinates not held
at a bound, clipped into the box; with idle workers, more trials in the same round: the step
stretched 2x and 3x, damped 4x more, stretched 4x, 8x...
The best step that lowers the objective becomes the centre and lam shrinks; if none does, lam
grows.

A run first takes profile steps (variable projection): only the coefficients the evaluator
does not solve move, on the Schur complement of H, and each trial leaves the linear
coefficients to the evaluator's solve. Across a curved valley where the linear coefficients
must follow the exponents (abnar on clark_routing: e, c and d all change by orders of
magnitude while delta and gamma go from 0.3 to 1) these steps cross in tens of evaluations
what steps over every coefficient crawled along for hundreds. When they stop gaining
(< 1e-4 twice), the run goes on over every coefficient: near the optimum the matrix is
corrected by BFGS updates from the gradients' change, since IRLS alone converges only
linearly on a Huber objective; after the k-th failed corrected step of a run, it takes
Gauss-Newton steps for 2^k + 1 successes (3, 5, 9...) before it tries one again.
A start ends when steps stop improving (relative gain < 1e-7 twice in a row, or lam beyond
1e10), when it comes close to an optimum an earlier start reached (``_known_basin``), when it
falls behind the best value found (``_behind``), or after ``max_rounds`` (set aside, for a
later polish to go on from); then the next start. On these sum-of-residuals objectives it
converges in tens of evaluations where L-BFGS-B, which only sees values and gradients, needs
hundreds (benchmarks/optimizers.py, benchmarks/speed.py).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .base import Config, Optimizer, config_key

LAMBDA0, LAMBDA_MIN, LAMBDA_MAX = 1e-3, 1e-9, 1e10
TINY_GAIN, TINY_ROUNDS = 1e-7, 2
# Profile steps end sooner, after two rounds gaining less than this: the solve of the linear
# coefficients is a few reweighting rounds, not exact, and the profile it makes crawls where
# steps over every coefficient converge (a 30-run fit of Eq 2: stalled at 1.0102 of the
# optimum after 200 evaluations with 1e-7; 1e-3 ended them too early on generalized x
# frantar_t5: 1% after 74 evaluations instead of 19).
PROFILE_GAIN = 1e-4
# A run has reached a known optimum (the same basin) within this internal-coordinate distance
# of it and this factor of its value.
SAME_BASIN, SAME_VALUE = 0.05, 1.05
# A run has stalled when it gained less than this share in this many rounds; it is behind
# when it is further above the best value found than PACE times what it gained in them.
STALL_GAIN, STALL_ROUNDS, PACE = 1e-3, 10, 2.0
SAME_LEVEL = 1e-4  # ... or level with it in value
SAME_FIT = 1e-3  # ... or residuals within about 3% of its own (see _known_basin)
# Below this relative gain per step the run is near its optimum, where the secant-corrected
# curvature converges fast; farther out the IRLS Gauss-Newton matrix is the safer guide.
ENDGAME = 1e-3
FLOOR = 1e-9  # the damping's scale of a coordinate: at least this share of the largest


class NewtonSearch:
    """Levenberg-Marquardt runs from a queue of starts, driven by an optimizer's ask/tell."""

    def __init__(self, opt: Optimizer, optima: list | None = None,
                 solved: Sequence[str] = ()):
        self.opt = opt
        # Coordinates the evaluator solves (the law's linear coefficients): a run first takes
        # profile steps over the others, their solved values left to the evaluator, then
        # finishes with steps over all of them.
        self.solved = np.array([n in set(solved) for n in opt.space.names])
        self.profile = False  # this run takes profile steps now
        self.starts: list[Config] = []  # configurations, as told (no round trip through log)
        self.centre: tuple | None = None
        self.lam = LAMBDA0
        self.tiny = 0
        self.trials: dict[tuple, float] = {}  # proposed key -> its damping (nan: a start)
        # Where earlier runs ended (internal coordinates, value): the caller passes one list
        # to every polish of a fit, so a later one knows the basins found before it.
        self.optima: list[tuple[np.ndarray, float]] = [] if optima is None else optima
        self.max_rounds: int | None = None  # rounds per start before it is set aside
        self.stall_rounds = STALL_ROUNDS  # rounds a stall is judged over (``new_stall``)
        self.rounds = 0
        self.hess: np.ndarray | None = None  # the run's curvature, secant-corrected
        self.set_aside: list[tuple] = []  # centres of runs cut off by max_rounds
        self.secant_failures = 0  # secant-corrected steps of this run that failed
        self.path: list[float] = []  # the run's value after each round
        self.stall_seen: int | None = None  # the round a stall was last reported
        self.secant_wait = 0      # Gauss-Newton successes to go, less one, before the next

    @property
    def finished(self) -> bool:
        return not self.starts and self.centre is None and not self.trials

    def _told(self, k: tuple) -> tuple:
        """The key a proposal was told as (itself unless the evaluator solved some of it)."""
        return self.opt.answers.get(k, k)

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
            if self.centre is None or self.trials:
                continue  # the run ended while its steps were judged, or waits for them
            if self.profile:
                self._converged()  # no profile step moves: steps over every coefficient
            else:
                self._end()  # no step moves: converged at a corner of the box
        return []

    def _system(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
        """(centre, coordinates that move, their curvature, their gradient), None if none
        moves. Profile steps move the unsolved coordinates only, on the curvature and gradient
        left when the solved ones follow their optimum (the Schur complement of the
        Gauss-Newton matrix, as variable projection does); solved coefficients resting on a
        bound stay out of it. A coordinate at a bound that its gradient pushes outwards stays
        there, or the bound moves if it is not physical."""
        o = self.opt
        g = o.grads[self.centre]
        h = self.hess if self.hess is not None else o.curvatures[self.centre]
        moving = ~self.solved if self.profile else np.ones(len(g), dtype=bool)
        space = o.space
        u = self._here()
        lo, hi = space.bounds.T
        hm, gm = h[np.ix_(moving, moving)], g[moving]
        if self.profile:
            inner = self.solved & (u > lo) & (u < hi)
            if inner.any():
                cross = h[np.ix_(moving, inner)]
                with np.errstate(all="ignore"):
                    fold = np.linalg.lstsq(h[np.ix_(inner, inner)],
                                           np.column_stack([cross.T, g[inner]]), rcond=None)[0]
                hm = hm - cross @ fold[:, :-1]
                gm = gm - cross @ fold[:, -1]
                if not (np.all(np.isfinite(hm)) and np.all(np.isfinite(gm))):
                    return None
        index = np.flatnonzero(moving)
        while True:
            lo, hi = o.space.bounds.T
            pressing = (((u[index] <= lo[index]) & (gm > 0))
                        | ((u[index] >= hi[index]) & (gm < 0)))
            # A bound that is not physical moves out of the way (once more each time).
            if not any(o.widen(space.dims[i].name, 0 if u[i] <= lo[i] else 1)
                       for i in index[pressing]):
                break
        if pressing.all():
            return None
        free = np.zeros(len(g), dtype=bool)
        free[index[~pressing]] = True
        keep = ~pressing
        return u, free, hm[np.ix_(keep, keep)], gm[keep]

    def _trial(self, u: np.ndarray) -> Config:
        """The configuration at internal coordinates ``u``; in a profile step its solved
        coefficients are left to the evaluator (NaN)."""
        c = self.opt.to_config(u)
        if self.profile:
            c.update({n: float("nan") for n, s in zip(self.opt.space.names, self.solved) if s})
        return c

    def _steps(self, n: int) -> list[Config]:
        o = self.opt
        system = self._system()
        if system is None:
            return []
        u, free, hf, gf = system
        space = o.space
        lo, hi = space.bounds.T
        diag = np.diag(hf).copy()
        # A floor under the damping's scale: a coordinate that barely moves the predictions
        # (a coefficient of 1e-12 at its bound, the exponent of a term it multiplies) has a
        # gradient of order e and a curvature of order e^2, so its undamped step of order 1/e
        # would fling it across the box, failing round after round.
        np.maximum(diag, FLOOR * max(float(diag.max(initial=0.0)), 1e-300), out=diag)
        out: list[Config] = []
        base = None
        for j in range(max(n, 1)):
            # Trials of one round: the step at the current damping, the same stretched 2x
            # and 3x (the IRLS curvature overstates, so longer steps along the direction
            # often gain more), one damped 4x more should they all fail, then 4x, 8x...
            # From hoffmann's published start the best stretch is about 3x (1.004 of the
            # optimum; 2x and 4x: 1.022): 1% after 7 evaluations at 4 workers, not 10.
            damped = j == 3
            lam = self.lam * (4.0 if damped else 1.0)
            if j == 0 or damped or base is None:
                step = np.zeros_like(u)
                try:
                    step[free] = np.linalg.solve(hf + lam * np.diag(diag), -gf)
                except np.linalg.LinAlgError:
                    continue
                if j == 0:
                    base = step
            else:
                step = base * ((2.0, 3.0)[j - 1] if j < 3 else 2.0 ** (j - 2))
            c = self._trial(np.clip(u + step, lo, hi))
            k = config_key(space, c)
            if self._told(k) == self.centre or k in self.trials or k in o.pending:
                continue
            self.trials[k] = lam
            if self._told(k) not in o.seen:
                out.append(c)
        if self.trials and not out:  # every step already evaluated: judge them now
            self._judge()
            return self._steps(n) if self.centre is not None else []
        return out

    def observe(self, keys) -> None:
        if self.trials and all(self._told(k) in self.opt.seen for k in self.trials):
            self._judge()

    def _judge(self) -> None:
        """A round is in: move to its best point if it improves, else damp more."""
        o = self.opt
        trials = {self._told(k): lam for k, lam in self.trials.items()}
        self.trials = {}
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
            if not self.profile:  # (profile steps take the Gauss-Newton curvature each round)
                if v0 - v1 <= ENDGAME * abs(v0) and self.secant_wait <= 0:
                    self._secant(self.centre, best)
                else:
                    self.secant_wait -= 1
                    self.hess = None  # far from the optimum, or the secant failed
            small = PROFILE_GAIN if self.profile else TINY_GAIN
            self.tiny = self.tiny + 1 if (v0 - v1) <= small * abs(v0) else 0
            self.centre, self.lam = best, max(trials[best] / 3.0, LAMBDA_MIN)
            if self.tiny >= TINY_ROUNDS:
                self._converged()
            elif self._known_basin():
                self._end()  # where it was heading is known; where it stopped joins the optima
            elif self._behind():
                self._end()
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
                self._converged()
        if (self.centre is not None and self.max_rounds is not None
                and self.rounds >= self.max_rounds):
            # Slow progress (the IRLS curvature of a Huber objective converges linearly):
            # leave the rest of this run to a later polish and let the search look elsewhere.
            self.set_aside.append(self.centre)
            self.centre = None

    def _converged(self) -> None:
        """Profile steps stopped gaining: the run goes on over every coordinate (the solve
        minimises a first-order form of the objective, so the last digits need all of
        them); after those, it has converged."""
        if self.profile:
            self.profile, self.lam, self.tiny = False, LAMBDA0, 0
        else:
            self._end()

    def _begin(self, k: tuple) -> None:
        self.profile = bool(self.solved.any())
        self.centre, self.lam, self.tiny, self.rounds = k, LAMBDA0, 0, 0
        self.hess = None
        self.secant_failures = self.secant_wait = 0
        self.path = []
        self.stall_seen = None

    def _behind(self) -> bool:
        """A run of the last polishes that is behind the best value found by more than it
        gained in its last 10 rounds, twice over (at its pace it would need 20 more rounds
        only to draw level) is in another basin than the best: it ends, for the next start.
        On abnar x clark_routing such a run took 43 evaluations to end 0.8% above the best,
        while the start after the next reached the best basin in 25 (benchmarks/speed.py)."""
        p = self.path
        return (self.max_rounds is None and len(p) > STALL_ROUNDS
                and p[-1] - min(self.opt.y) > PACE * (p[-STALL_ROUNDS - 1] - p[-1]))

    def new_stall(self, gain: float = STALL_GAIN, every: int = 20) -> bool:
        """True when the run goes on but has gained less than ``gain`` (relative) in its last
        ``stall_rounds`` rounds, at most once every ``every`` rounds of a run."""
        rounds = self.stall_rounds
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
        o = self.opt
        u0, u1 = self._encoded(k0), self._encoded(k1)
        b = self.hess if self.hess is not None else o.curvatures[k0]
        s, y = u1 - u0, o.grads[k1] - o.grads[k0]
        bs = b @ s
        sy, sbs = float(s @ y), float(s @ bs)
        if sy > 1e-12 * np.linalg.norm(s) * np.linalg.norm(y) and sbs > 0:
            self.hess = b - np.outer(bs, bs) / sbs + np.outer(y, y) / sy
        else:
            self.hess = o.curvatures[k1]

    def _encoded(self, k: tuple) -> np.ndarray:
        """A told key in internal coordinates."""
        space = self.opt.space
        return space.encode(space.complete(dict(zip(space.names, k))))

    def _here(self) -> np.ndarray:
        return self._encoded(self.centre)

    def _end(self) -> None:
        """The run from this start ends (converged, in a known basin, or behind): remember
        where, for ``_known_basin`` and for the count of basins (``ytopt._more_basins``)."""
        self.optima.append((self._here(), self.opt.seen[self.centre]))
        self.centre = None

    def _known_basin(self) -> bool:
        """Near an optimum found before: close to it in value and either in coordinates or
        in what it predicts, or level with it (within 0.01%) while gaining less than 0.1% a
        round (a run still gaining fast only passes that level). What it predicts is compared
        by d^T H d for the step d between them (H the Gauss-Newton matrix here: the weighted
        squared change of the residuals), small against the objective, so that a coordinate
        that no longer moves the predictions (the exponent of a term whose coefficient went
        to 0) does not keep two fits apart. Where the law's parametrization folds (two
        coefficients adding up to one constant), the step between two equal fits can be
        long, hence the level: on abnar x clark_routing a run sat 10 rounds at its known
        optimum's value with b and e sharing the constant that e held alone there."""
        u, v = self._here(), self.opt.seen[self.centre]
        h = self.opt.curvatures[self.centre]
        p = self.path
        crawling = len(p) > 1 and p[-2] - p[-1] <= STALL_GAIN * abs(p[-1])
        return any((crawling and abs(v - vo) <= SAME_LEVEL * abs(vo))
                   or (v <= SAME_VALUE * vo
                       and (np.max(np.abs(u - o)) < SAME_BASIN
                            or float((u - o) @ h @ (u - o)) <= SAME_FIT * abs(v)))
                   for o, vo in self.optima)

    def close(self) -> None:
        """Nothing to release (``LocalSearch``, its alternative, has threads)."""
