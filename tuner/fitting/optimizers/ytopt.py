"""The ytopt method on scikit-optimize: Bayesian optimization with ytopt's defaults, made fast.

ytopt as published (``faithful=True``): surrogate RF of 100 trees (ET, GBRT, GP selectable),
acquisition gp_hedge with kappa 1.96, 10,000 candidates by sampling, 10 initial points of
which the first is the space's default (the published coefficients), duplicates skipped,
seeded, raw objective values. Points asked while others are still being evaluated, or several
at once, get constant-liar values on a throwaway copy of the skopt optimizer, so lies never
enter the real history. Unlike ytopt's own code, each result is told once (buffered until the
next Bayesian ask refits the surrogate), never by re-telling the whole history.

The default keeps that loop and changes what makes it slow or inexact, each measured in
``benchmarks/optimizers.py``:

* profile: the coefficients a law is linear in (e, a, b, c...) are left to the evaluator,
  which solves them for each point (``Objective.solve_linear``: least squares on relative
  residuals, then the Huber loss itself by reweighting), so the Bayesian search runs over
  the exponents only (2-5 dimensions instead of 5-10) and sees the objective's own profile;
* a lean surrogate (24 trees, 1,000 candidates) told log objective values (they span decades),
  its trees grown and read without scikit-learn's per-tree overhead (``_forest``);
* polish: Levenberg-Marquardt steps on the objective's Gauss-Newton curvature
  (``newton.py``; L-BFGS-B for objectives without one), every step counted in the budget,
  first over the exponents with the linear coefficients solved at each step (variable
  projection), then over all coefficients: a short one from the best of the first batch (the
  published coefficients' basin, on most data: the optimum within 1% in 4-8 evaluations,
  ``benchmarks/speed.py``), then, after the Bayesian phase, runs to convergence from its best
  distinct points, more of them while more basins are expected (``_more_basins``), as many
  at once as there are workers. The surrogate learns the Bayesian points only, so a polish
  does not pull the search into its basin;
* the run stops when the schedule is done (``converged``): the budget is a ceiling.
"""
from __future__ import annotations

import numpy as np

from .base import Config, Optimizer, config_key
from .lbfgs import LocalSearch
from .newton import NewtonSearch

SURROGATES = ("RF", "ET", "GBRT", "GP")
LIARS = ("cl_max", "cl_min", "cl_mean")
FINAL_STARTS = 5  # polishes from the best points of the whole Bayesian phase, at its end
DISTINCT = 0.02    # ... at least this share of the box apart in some coordinate
EARLY_ROUNDS = 15  # Levenberg-Marquardt rounds of the early polish before the search goes on
PROBE_GAIN = 1e-3  # a limit probe is polished when it beats its optimum by this share
DISTINCT_VALUE = 1e-2  # optima this share apart in value are distinct basins


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


def _forest(surrogate: str, n_trees: int, seed: int):
    """skopt's RF or ET surrogate (its defaults, ``n_trees`` trees), built and read without
    scikit-learn's per-tree overhead.

    A Bayesian step fits a forest on tens of points and predicts a thousand candidates; the
    work is microseconds per tree, but scikit-learn's forest clones, validates and
    re-inspects every tree (about 3 ms each), which made the surrogate 90% of a default fit.
    ``fit`` grows the same trees from the same random streams as the forest's own ``fit``
    (one seed per tree drawn from ``random_state``; for RF the bootstrap counts as sample
    weights) through the tree's unchecked fit, and ``predict`` reads the fitted trees'
    arrays directly, with skopt's formula for the standard deviation: the predictions are
    bit for bit those of skopt's forest (``tests/test_optimizers.py``). A candidate set is
    predicted once: gp_hedge scores the same candidates with LCB, EI and PI.
    """
    from sklearn.tree import DecisionTreeRegressor, ExtraTreeRegressor
    from skopt.learning import ExtraTreesRegressor, RandomForestRegressor

    base = RandomForestRegressor if surrogate == "RF" else ExtraTreesRegressor
    grow = DecisionTreeRegressor if surrogate == "RF" else ExtraTreeRegressor
    max_int = np.iinfo(np.int32).max
    _checked_weights()

    class Lean(base):
        def fit(self, X, y):
            X = np.ascontiguousarray(X, dtype=np.float32)
            y = np.ascontiguousarray(np.reshape(y, (-1, 1)), dtype=np.float64)
            params = {p: getattr(self, p) for p in self.estimator_params}
            rs = np.random.RandomState(self.random_state)
            # Each tree's stream is this one generator reseeded: constructing a RandomState
            # first gathers OS entropy (about 0.3 ms, twice per tree in the forest's own fit),
            # reseeding does not, and the numbers drawn are the same.
            stream = np.random.RandomState(0)
            n = len(X)
            self.estimators_ = []
            for _ in range(self.n_estimators):
                seed = rs.randint(max_int)
                weight = None
                if self.bootstrap:
                    stream.seed(seed)
                    picks = stream.randint(0, n, n)
                    weight = np.ones(n) * np.bincount(picks.astype(np.int32), minlength=n)
                    weight = weight.view(_Checked)
                stream.seed(seed)
                tree = grow(**{**params, "random_state": stream})
                tree._fit(X, y, sample_weight=weight, check_input=False)
                tree.random_state = seed  # as the forest's own fit leaves it
                self.estimators_.append(tree)
            self.n_outputs_ = 1
            self._last = None
            return self

        def predict(self, X, return_std=False):
            X = np.ascontiguousarray(X, dtype=np.float32)
            key = (return_std, X.shape, hash(X.tobytes()))
            last = getattr(self, "_last", None)
            if last is None or last[0] != key:
                last = self._last = (key, self._predict(X, return_std))
            return last[1]

        def _predict(self, X, return_std):
            leaves = [t.tree_.apply(X) for t in self.estimators_]
            means = [t.tree_.value[leaf, 0, 0] for t, leaf in zip(self.estimators_, leaves)]
            mean = np.zeros(len(X))
            for m in means:
                mean += m
            mean /= len(means)
            if not return_std:
                return mean
            std = np.zeros(len(X))
            for t, leaf, m in zip(self.estimators_, leaves, means):
                var = t.tree_.impurity[leaf]
                var[var < self.min_variance] = self.min_variance
                std += var + m ** 2
            std /= len(means)
            std -= mean ** 2.0
            std[std < 0.0] = 0.0
            return mean, std ** 0.5

    Lean.__name__ = Lean.__qualname__ = base.__name__
    return Lean(n_estimators=n_trees, min_samples_leaf=3, random_state=seed)


class _Checked(np.ndarray):
    """Sample weights the lean forest made itself (C-contiguous float64, one per point)."""


def _checked_weights() -> None:
    """scikit-learn's tree validates its sample weights on every fit through array-API and
    dataframe checks: 0.24 ms a tree, 40% of the lean forest's fit (``benchmarks/speed.py
    --profile``). The lean forest's own weights (``_Checked``) are valid by construction and
    pass through as they are; every other caller gets scikit-learn's check."""
    import sklearn.tree._classes as trees

    check = trees._check_sample_weight
    if getattr(check, "lean", False):
        return

    def lean_check(sample_weight, X, *args, **kwargs):
        if type(sample_weight) is _Checked and not args and set(kwargs) <= {"dtype"} \
                and kwargs.get("dtype", np.float64) == np.float64 \
                and len(sample_weight) == X.shape[0]:
            return sample_weight
        return lean_check.original(sample_weight, X, *args, **kwargs)

    lean_check.lean, lean_check.original = True, check
    trees._check_sample_weight = lean_check


def _lean_space(space):
    """skopt's space of real dimensions with its candidates drawn and transformed as arrays.

    A Bayesian step draws 1,000 candidates (10,000 as published); skopt's ``Space`` turns the
    columns it draws into rows and back value by value in Python lists, a sixth of a step
    with the lean forest. Here the same columns, drawn in the same order from the same
    stream, are stacked and transformed by numpy: the same numbers
    (``tests/test_optimizers.py``).
    """
    from skopt.space import Real, Space
    from sklearn.utils import check_random_state

    if space.constraint is not None or not all(isinstance(d, Real) for d in space.dimensions):
        return space

    class Lean(Space):
        def rvs(self, n_samples=1, random_state=None):
            rng = check_random_state(random_state)
            columns = [dim.rvs(n_samples=n_samples, random_state=rng)
                       for dim in self.dimensions]
            return np.column_stack(columns).tolist()

        def transform(self, X):
            X = np.asarray(X, dtype=float).reshape(len(X), self.n_dims)
            return np.column_stack([np.asarray(dim.transform(X[:, j]), dtype=float)
                                    for j, dim in enumerate(self.dimensions)])

    Lean.__name__ = Lean.__qualname__ = "Space"
    return Lean(space.dimensions)


class YtoptOptimizer(Optimizer):
    name = "ytopt"
    OPTIONS = ("surrogate", "liar", "n_initial_points", "polish", "profile", "faithful")

    def __init__(self, space, *, seed: int = 0, budget: int = 100, surrogate: str = "RF",
                 liar: str = "cl_max", n_initial_points: int = 10, kappa: float = 1.96,
                 acq_func: str = "gp_hedge", n_candidates: int | None = None,
                 n_trees: int | None = None, polish: float | None = None,
                 profile: bool = True, faithful: bool = False, gradients: bool = True,
                 profile_allowed: bool = True):
        super().__init__(space, seed=seed, budget=budget)
        from skopt import Optimizer as SkOptimizer
        from skopt.space import Real

        if n_initial_points < 1:
            raise ValueError(f"--initial-points must be >= 1, got {n_initial_points}")
        profile = profile and profile_allowed and gradients
        surrogate = surrogate.upper()
        if surrogate not in SURROGATES:
            raise ValueError(f"unknown surrogate {surrogate!r}; choose one of "
                             f"{', '.join(SURROGATES)}")
        if liar not in LIARS:
            raise ValueError(f"unknown liar strategy {liar!r}; choose one of {', '.join(LIARS)}")
        if polish is not None and not 0.0 <= polish < 1.0:
            raise ValueError(f"polish must be in [0, 1), got {polish}")
        if faithful:
            if polish:
                raise ValueError("--faithful runs ytopt as published, without a polish; "
                                 "drop --polish")
            profile, polish = False, 0.0
        self.surrogate, self.liar, self.faithful = surrogate, liar, faithful
        linear = set(space.law.linear) if profile else set()
        self.solved = [d.name for d in space.dims if d.name in linear]
        self.searched = [d for d in space.dims if d.name not in linear]
        if not self.searched:  # nothing left for the Bayesian search: search everything
            self.solved, self.searched = [], list(space.dims)
        self._solved_mask = [n in self.solved for n in space.names]
        self.log_y = not faithful
        if polish is None:
            # Enough Bayesian steps to find the basin of the searched dimensions, the rest to
            # converge in it (benchmarks/optimizers.py measured the split).
            polish = 1.0 - min(0.5, (20 + 10 * len(self.searched)) / budget)
        self.n_bo = budget - int(round(polish * budget)) if polish > 0 else None
        self._gradients = gradients
        # The polishes running now: one, but with several workers the final polish runs as
        # many starts at once, each with its own rounds (``_polish_round``).
        self._runs: list[LocalSearch | NewtonSearch] = []
        self._polishing = False  # a polish has started
        # The schedule: the first point (or batch), a short polish from the best of it (on
        # most data it reaches the optimum's basin at once), the other initial points and
        # the Bayesian steps, then polishes to convergence from their best distinct points
        # while more basins are expected; then the run has converged.
        self._bo_asked = 0
        self._next_polish = n_initial_points
        self._polish_keys: set[tuple] = set()  # points a polish proposed (as told)
        self._polish_searched: set[tuple] = set()  # ... their searched coordinates
        self._started: set[tuple] = set()      # points a polish started from
        self._set_aside: set[tuple] = set()    # where a polish cut short may go on from
        self._final_polish = False
        self._optima: list = []  # where polishes converged, shared by all of them
        self._probed = 0  # optima already looked at for limit probes
        self._probes: dict[tuple, None] = {}  # searched keys of limit probes not yet told
        self._probe_queue: list[Config] = []  # limit probes not yet asked
        self._probe_base = float("inf")  # the optimum they probe
        self._probe_results: list[tuple[float, tuple]] = []  # (value, told key)
        dims = [Real(d.lower, d.upper, prior="log-uniform" if d.log else "uniform", name=d.name)
                for d in self.searched]
        self._opt = SkOptimizer(
            dims, base_estimator=self._estimator(surrogate, seed, n_trees), acq_func=acq_func,
            n_initial_points=n_initial_points, acq_optimizer="sampling",
            acq_func_kwargs={"kappa": kappa},
            acq_optimizer_kwargs={"n_points": n_candidates or (10000 if faithful else 1000)},
            # skopt keeps every model it fitted unless told otherwise; only the last is used.
            model_queue_size=1, random_state=seed)
        self._opt.space = _lean_space(self._opt.space)
        self._told: set[tuple[float, ...]] = set()
        self._buffer: list[tuple[list[float], float]] = []  # told, not yet in the surrogate
        # The space's default first: with a profile, the published exponents with their
        # linear coefficients solved.
        default = space.default()
        self._first = [{**default, **{n: float("nan") for n in self.solved}}]

    def _estimator(self, surrogate: str, seed: int, n_trees: int | None):
        if surrogate == "GBRT":
            return _gbrt_estimator(seed)
        if surrogate in ("RF", "ET") and (n_trees or not self.faithful):
            return _forest(surrogate, n_trees or 24, seed)
        return surrogate

    def _y(self, v: float) -> float:
        return float(np.log(max(v, 1e-300))) if self.log_y else float(v)

    def _lie(self) -> float:
        if not self.y:
            return 0.0
        real = np.asarray([self._y(v) for v in self.y])
        return float({"cl_max": real.max, "cl_min": real.min, "cl_mean": real.mean}[self.liar]())

    def _propose(self, n: int) -> list[Config]:
        if self.n_bo is None:
            return self._bayes(n)
        if self._bo_asked == 0 and not self._polishing:
            # The early polish starts from the best of the first batch (the published start,
            # alone with one worker) instead of waiting for every initial point: the
            # optimum's basin after 4-8 evaluations instead of 13-17 on the shipped problems,
            # with the same points and results after it (benchmarks/speed.py); with several
            # workers its rounds of n trials would otherwise come after them all
            # (benchmarks/ensemble.py).
            self._next_polish = min(self._next_polish, n)
        while True:
            if self._probe_queue:
                out, self._probe_queue = self._probe_queue[:n], self._probe_queue[n:]
                return out
            if self._probes:
                return []  # the polish waits for its limit probes
            if self._probe_results:  # every probe is in: the best goes on if it gains
                value, k = min(self._probe_results)
                self._probe_results = []
                if value < (1.0 - PROBE_GAIN) * self._probe_base:
                    self._polish_probe(k)
            self._probe_queue = self._limit_probes()
            if self._probe_queue:
                continue
            if self._runs:
                out = self._polish_round(n)
                if self._runs and self._final_polish and len(out) < n:
                    # A worker is idle in the final polish: another start may take it.
                    while (len(out) < n and len(self._runs) < n and not self._bayes_pending()
                           and self._add_run()):
                        out += self._polish_round(n - len(out))
                if out or self._runs:
                    return out
            if self._bo_asked < min(self.n_bo, self._next_polish):
                out = self._bayes(min(n, self.n_bo - self._bo_asked))
                self._bo_asked += len(out)
                return out
            if self.pending:
                return []  # the best points are not known until these are told
            starts = self._polish_starts()
            if not starts:
                self.converged = True  # every Bayesian step taken, every polish converged
                return []
            self._start_polish(starts, n)

    @property
    def _local(self) -> LocalSearch | NewtonSearch | None:
        """The first polish running now (the only one but in a parallel final polish)."""
        return self._runs[0] if self._runs else None

    def _polish_round(self, n: int) -> list[Config]:
        """Up to ``n`` points from the polishes running now, shared between them (with one
        polish, its round of ``n`` trials); a polish that has converged, or was set aside
        (a later one may go on from it), is dropped."""
        out: list[Config] = []
        asked: set[tuple] = set()
        live = []
        for i, run in enumerate(self._runs):
            share = -(-(n - len(out)) // (len(self._runs) - i))  # the rest, shared evenly
            got = run.propose(share) if share > 0 else []
            for c in got:
                k = config_key(self.space, c)
                if k in asked:  # two runs' one point (a shared corner): asked once, both learn it
                    continue
                asked.add(k)
                out.append(c)
                if None in k:  # a profile step: known by its searched part until told
                    self._polish_searched.add(self._searched_key(c))
                else:
                    self._polish_keys.add(k)
            if got or not run.finished:
                live.append(run)
                continue
            for k in getattr(run, "set_aside", ()):
                self._set_aside.add(k)
                self._started.discard(k)
        self._runs = live
        return out

    def _bayes_pending(self) -> bool:
        """A point of the Bayesian phase is still being evaluated (the best points, where
        polishes start, are not known until it is told)."""
        return any(not self._is_polish(c) for c in self.pending.values())

    def _is_polish(self, c: Config) -> bool:
        return (config_key(self.space, c) in self._polish_keys
                or self._searched_key(c) in self._polish_searched)

    def _add_run(self) -> bool:
        """One more polish in the final phase, from the next start, if there is one."""
        starts = self._polish_starts()
        if starts:
            self._start_polish(starts, 1)
        return bool(starts)

    def _polish_starts(self) -> list[Config]:
        """Where the next polish starts: after the first batch, the best of it; after the
        Bayesian phase, its best points in distinct places (and any polish set aside
        unfinished), five, then one at a time while more basins are expected; none when the
        schedule is done."""
        final = self._bo_asked >= self.n_bo
        if final and self._final_polish and not self._more_basins():
            return []
        order = [self.X[i] for i in np.argsort(self.y, kind="stable")
                 if (self.X[i] not in self._polish_keys or self.X[i] in self._set_aside)
                 and self.X[i] not in self._started]
        chosen: list[tuple] = []
        width = np.array([hi - lo for lo, hi in self.space.bounds])
        for k in order:
            u = self.space.encode(self.space.complete(dict(zip(self.space.names, k))))
            if all(np.max(np.abs(u - v) / width) >= DISTINCT for _, v in chosen):
                chosen.append((k, u))
            # The final polish's first batch, then one start at a time while more basins
            # are expected.
            if len(chosen) == (FINAL_STARTS if final and not self._final_polish else 1):
                break
        self._final_polish = final
        self._next_polish = self.n_bo  # one early polish, then the Bayesian phase to its end
        self._started.update(k for k, _ in chosen)
        return [self.space.complete(dict(zip(self.space.names, k))) for k, _ in chosen]

    def _more_basins(self) -> bool:
        """More polish starts may find basins not seen yet: Boender and Rinnooy Kan's
        Bayesian estimate of the number of basins, k (w - 1) / (w - k - 2) after w > k + 2
        polishes that ended in k distinct optima (more than 1% apart in value), is above
        k + 0.5 (1987, Math. Programming 37: the optimal stopping rule of multistart). One
        basin is settled after 7 polishes; two need 16. On most laws and data every polish
        ends in one basin and the run converges; abnar x clark_routing has several
        (0.001972, 0.002065, 0.002125...), the best reached from Bayesian points scoring
        worse than those reaching the others, so its polishes go on while the budget lasts
        (seeds 0-19: 14 reach 1% of the best, against 10 with the first five polishes only)."""
        values = sorted(v for _, v in self._optima)
        if not values:
            return False  # an L-BFGS-B polish (no curvature) records no optima
        w, k, level = len(values), 0, -np.inf
        for v in values:  # optima within 1% of the lowest of a group are one basin
            if v > (1.0 + DISTINCT_VALUE) * level:
                k, level = k + 1, v
        return w <= k + 2 or k * (w - 1) / (w - k - 2) > k + 0.5

    def _limit_probes(self) -> list[Config]:
        """Between two rounds of a Levenberg-Marquardt polish: after a start has converged to
        the best optimum yet, or while a run is stalled (every 20 rounds), that point with
        each searched exponent that sits at 0 (its term a constant; 0 is the lower bound of
        the data-following box) moved to the upper bound of the Bayesian box (where the term
        vanishes, or turns into an indicator as (1-S)^gamma does), its linear coefficients
        left to the evaluator. A probe that gains is polished at once, else the run goes on.
        On generalized x frantar_t5 the early polish ends at gamma = 0 (0.000846); the probe
        with gamma = 3 scores 0.000661, and the polish from there widens gamma to the best
        optimum known (0.000620): 1% at evaluation 19 on seeds 11-16; without probes on 5 of
        6 seeds, median 70 (benchmarks/speed.py). Exponents inside the box are not probed: on
        abnar x clark_routing those probes never won, and their evaluations were missed
        later."""
        local = self._local
        if (not self._runs or not all(isinstance(r, NewtonSearch) for r in self._runs)
                or (len(self._runs) == 1 and local.trials) or not self.solved):
            return []  # without a profile a probe would keep stale linear coefficients
        if len(self._optima) > self._probed:
            older = [v for _, v in self._optima[:self._probed]]
            self._probed = len(self._optima)
            u, value = min(self._optima[len(older):], key=lambda o: o[1])
            if older and value >= min(older):
                return []
            here = self.to_config(u)
        else:
            # The first run stalled between two of its rounds (with several workers, the
            # final polish's runs may all crawl along one ridge and none end: at 8 workers
            # generalized x frantar_t5 stayed at gamma = 0 for 200 evaluations on 2 of 6
            # seeds when only a lone run was looked at).
            stalled = next((r for r in self._runs if not r.trials and r.new_stall()), None)
            if stalled is None:
                return []
            k = stalled.centre
            here, value = dict(zip(self.space.names, k)), self.seen[k]
        out = []
        for d in self.searched:
            if d.kind != "exponent" or abs(here[d.name]) > 1e-12 * (d.upper - d.lower):
                continue  # only an exponent at 0, its term a constant
            x = [here[e.name] for e in self.searched]
            x[self.searched.index(d)] = d.upper
            probe = self._point(x)
            k = self._searched_key(probe)
            if k not in self._told and k not in self._probes:
                self._probes[k] = None
                out.append(probe)
        self._probe_base = value
        return out

    def _polish_probe(self, k: tuple) -> None:
        """The best limit probe (told key ``k``) beat its optimum: the polish goes on from it
        first."""
        start = self.space.complete(dict(zip(self.space.names, k)))
        self._started.add(k)
        if len(self._runs) == 1 and isinstance(self._local, NewtonSearch):
            # (with several runs, the probe's is one more: _start_polish below)
            local = self._local
            if local.centre is not None:
                # The stalled run is set aside: an early polish's may be a final start later;
                # after the final polish nothing goes back to it.
                local.set_aside.append(local.centre)
                local.centre = None
            local.starts.insert(0, start)
        else:
            self._start_polish([start])

    def _start_polish(self, starts: list[Config], workers: int = 1) -> None:
        """Polishes from ``starts``: Levenberg-Marquardt when the evaluator gives curvature
        (the built-in objectives do), L-BFGS-B otherwise. The final polish's starts are dealt
        out to as many runs as there are workers, each taking one trial a round as a lone
        worker's polish does: at 4 workers, rounds of 4 trials from one start spent the
        budget four times as fast (abnar x clark_routing never reached 1% on seeds 11-13)."""
        if config_key(self.space, starts[0]) not in self.curvatures:
            run = LocalSearch(self, self._gradients)
            run.starts = [self.space.encode(c) for c in starts]
            self._runs.append(run)
        else:
            ways = max(1, min(workers, len(starts))) if self._final_polish else 1
            for i in range(ways):
                run = NewtonSearch(self, self._optima, self.solved)
                run.starts = starts[i::ways]
                if not self._final_polish:  # the last polishes run to convergence
                    # in rounds of n trials, fewer of them: twice a lone worker's evaluations
                    # (1/n of its rounds cut the early polish of generalized x frantar_t5
                    # short at 2 workers, before its limit probe: 1% after 74 evaluations
                    # instead of 34)
                    run.max_rounds = -(-2 * EARLY_ROUNDS // max(workers, 2))
                    if run.max_rounds < EARLY_ROUNDS:  # judged for a stall before its end
                        run.stall_rounds = run.max_rounds // 2
                self._runs.append(run)
        self._polishing = True

    def _point(self, x) -> Config:
        """A searched point as a configuration; solved coefficients are NaN."""
        free = {d.name: float(v) for d, v in zip(self.searched, x)}
        free.update({name: float("nan") for name in self.solved})
        return self.space.complete(free)

    def _searched_key(self, config: Config) -> tuple[float, ...]:
        return tuple(float(config[d.name]) for d in self.searched)

    def _bayes(self, n: int) -> list[Config]:
        out: list[Config] = []
        while self._first and len(out) < n:
            c = self._first.pop(0)
            k = self._searched_key(c)
            if k not in self._told and k not in {self._searched_key(p)
                                                 for p in self.pending.values()}:
                out.append(c)
        if len(out) == n:
            return out
        # A polish's points are not the search's (and may lie beyond the Bayesian box).
        inflight = [list(self._searched_key(c)) for c in [*self.pending.values(), *out]
                    if not self._is_polish(c)]
        need = n - len(out)
        self._fit()  # the real optimizer learns every result (and gp_hedge its gains)
        opt = self._opt
        if inflight or need > 1:
            # A throwaway copy carries the lies; the real optimizer never sees them.
            opt = self._copy()
            if inflight:
                opt.tell(inflight, [self._lie()] * len(inflight))
        asked = {self._searched_key(c) for c in out}
        for i in range(need):
            x = [float(v) for v in opt.ask()]
            if tuple(x) in self._told or tuple(x) in asked:
                # ytopt skips duplicates; a fresh random point keeps the batch full.
                b = np.array([d.bounds for d in self.searched])
                x = [d.decode(v) for d, v in zip(self.searched, self.rng.uniform(*b.T))]
            asked.add(tuple(x))
            out.append(self._point(x))
            if i < need - 1:
                opt.tell(x, self._lie())
        return out

    def _copy(self):
        """The skopt optimizer, copied without refitting it (skopt's own ``copy`` refits)."""
        import copy
        twin = copy.deepcopy(self._opt)
        # Its own random stream, or it would draw the real optimizer's next points.
        twin.rng = np.random.RandomState(int(self.rng.integers(2**31 - 1)))
        return twin

    def _fit(self) -> None:
        """Tell the real optimizer what it has not seen yet, fitting its surrogate once."""
        if self._buffer:
            # Points beyond the Bayesian box (a bound widened by the polish) stay out of it.
            box = [(d.lower, d.upper) for d in self.searched]
            inside = [(x, y) for x, y in self._buffer
                      if all(lo <= v <= hi for v, (lo, hi) in zip(x, box))]
            if inside:
                self._opt.tell([x for x, _ in inside], [y for _, y in inside])
            self._buffer = []

    def _observe(self, keys, values) -> None:
        for k, v in zip(keys, values):
            x = self._searched_key(self.space.complete(dict(zip(self.space.names, k))))
            self._told.add(x)
            if self.solved:
                # A proposal that leaves the linear coefficients to the evaluator is answered
                # by the first point told at its searched coordinates, also one told without
                # it (a resumed run's history): it is not evaluated twice.
                self.answers.setdefault(tuple(None if s else c
                                              for s, c in zip(self._solved_mask, k)), k)
            if x in self._probes:
                del self._probes[x]
                self._polish_keys.add(k)  # told with its linear coefficients solved
                self._probe_results.append((v, k))
            elif x in self._polish_searched:
                self._polish_keys.add(k)  # a profile step, told with them solved
            if k not in self._polish_keys:
                # The surrogate learns the Bayesian points only: a polish's many points in
                # one basin would pull the search back into it.
                self._buffer.append((list(x), self._y(v)))
        # The surrogate is fitted when the next Bayesian ask reads it, never while polishing.
        for run in self._runs:
            run.observe(keys)

    def close(self) -> None:
        for run in self._runs:
            run.close()
