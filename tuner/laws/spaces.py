"""Search spaces: where each coefficient is searched, on which scale, from which start.

Two kinds. ``default_space(law, dataset)`` follows the data and physics, for any law: the
irreducible loss in [0, smallest observed loss], exponents over [0, 3], the coefficients the
law is linear in over many decades on a log scale (the optimizer solves them in closed form),
other coefficients on a log scale around the data's magnitudes. Bounds that are not physical
are *soft*: a fit that ends on one widens it (``Space.widened``). ``load_space(law, path)``
reads a ConfigSpace JSON file: the paper's spaces (``search_spaces/<law>.json``, used by the
Fig. 7 reproduction) or a user's ``--space``; its bounds are hard. Defaults (the first point
scored) are the law's published coefficients, the single source of truth for them. A
``constant`` hyperparameter (or ``--fix``) pins a coefficient. Optimizers work in *internal*
coordinates: log(x) for log-scale coefficients, x otherwise, over the free coefficients only.
"""
from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping

import numpy as np

from tuner.errors import TunerError
from tuner.laws.registry import Law, get_law
from tuner.paths import SPACES_DIR

EXPONENT_MAX = 3.0     # exponents of N, D, 1-S beyond this are not seen in practice (soft)
LINEAR_RANGE = (1e-12, 1e40)  # linear coefficients: solved in closed form, any magnitude
SCALE_DECADES = 6      # other coefficients: data magnitudes widened by this many decades


@dataclass(frozen=True)
class Dim:
    name: str
    lower: float
    upper: float
    log: bool
    default: float
    soft: tuple[bool, bool] = (False, False)  # (lower, upper) may be widened: not physical
    kind: str = ""  # irreducible, exponent, linear, scale (for messages)
    # (lower, upper) is a physical limit (a loss or coefficient of 0, the smallest loss), not a
    # search limit: a fit resting there is an answer, not an artefact of the box
    physical: tuple[bool, bool] = (False, False)

    def encode(self, x: float) -> float:
        return math.log(x) if self.log else float(x)

    def decode(self, u: float) -> float:
        # Clipped in natural units too: exp(log(upper)) can overshoot upper by an ulp.
        x = math.exp(u) if self.log else float(u)
        return min(max(x, self.lower), self.upper)

    @property
    def bounds(self) -> tuple[float, float]:
        return (self.encode(self.lower), self.encode(self.upper))


@dataclass(frozen=True)
class Space:
    """The free dimensions of a law's coefficients plus the fixed ones."""

    law: Law
    dims: tuple[Dim, ...]
    fixed: Mapping[str, float] = field(default_factory=dict)
    source: str = ""

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.dims]

    @property
    def all_names(self) -> list[str]:
        return list(self.law.params)

    @property
    def bounds(self) -> np.ndarray:
        """Internal (log where log-scale) bounds, shape (d, 2)."""
        return np.array([d.bounds for d in self.dims], dtype=float)

    def default(self) -> dict[str, float]:
        """The published coefficients, natural units, all coefficients."""
        return self.complete({d.name: d.default for d in self.dims})

    def complete(self, free: Mapping[str, float]) -> dict[str, float]:
        """Add the fixed coefficients and order by the law's parameter list."""
        merged = {**self.fixed, **free}
        return {n: float(merged[n]) for n in self.all_names}

    def encode(self, params: Mapping[str, float]) -> np.ndarray:
        return np.array([d.encode(params[d.name]) for d in self.dims], dtype=float)

    def decode(self, u: np.ndarray) -> dict[str, float]:
        lo, hi = self.bounds.T
        # Clipping here only absorbs float round-off at the box edge (exp(log(x)) != x).
        u = np.clip(np.asarray(u, dtype=float), lo, hi)
        return self.complete({d.name: d.decode(v) for d, v in zip(self.dims, u)})

    def internal_grad(self, grad: Mapping[str, float], params: Mapping[str, float]) -> np.ndarray:
        """A natural-unit gradient in internal coordinates (d/du of x = exp(u) is x)."""
        return np.array([grad[d.name] * (params[d.name] if d.log else 1.0) for d in self.dims])

    def with_fixed(self, values: Mapping[str, float]) -> "Space":
        """Pin some coefficients; unknown names or values outside the law are an error."""
        for n in values:
            if n not in self.all_names:
                raise TunerError(f"--fix: {n!r} is not a coefficient of {self.law.name} "
                                 f"({', '.join(self.all_names)})")
            v = float(values[n])
            if not math.isfinite(v):
                raise TunerError(f"--fix: {n}={values[n]} is not a finite number")
            dim = next((d for d in self.dims if d.name == n), None)
            if dim is not None and not dim.lower <= v <= dim.upper:
                raise TunerError(f"--fix: {n}={v:g} lies outside the space [{dim.lower:g}, "
                                 f"{dim.upper:g}] (--space FILE sets another)")
        dims = tuple(d for d in self.dims if d.name not in values)
        if not dims:
            raise TunerError("--fix: every coefficient is fixed; nothing left to search")
        return Space(self.law, dims, {**self.fixed, **{k: float(v) for k, v in values.items()}},
                     self.source)

    def widened(self, name: str, side: int) -> "Space":
        """This space with the soft ``side`` (0 lower, 1 upper) bound of ``name`` widened."""
        dims = []
        for d in self.dims:
            if d.name == name:
                lo, hi = d.lower, d.upper
                if d.log:
                    lo, hi = (lo / 1e6, hi) if side == 0 else (lo, hi * 1e6)
                else:
                    span = hi - lo
                    lo, hi = (lo - span, hi) if side == 0 else (lo, hi + span)
                d = replace(d, lower=lo, upper=hi)
            dims.append(d)
        return replace(self, dims=tuple(dims))

    @property
    def solve_bounds(self) -> dict[str, tuple[float, float]]:
        return {d.name: (d.lower, d.upper) for d in self.dims}


def space_path(law: Law) -> Path:
    return SPACES_DIR / f"{law.name}.json"


def paper_space(law: "str | Law") -> Space:
    """The paper's search space of a built-in law (Fig. 7 searched these)."""
    law = get_law(law)
    path = space_path(law)
    if not law.builtin or not path.is_file():
        raise TunerError(f"law {law.name} has no paper search space")
    return load_space(law, path)


def load_space(law: "str | Law", path: str | Path) -> Space:
    """Read a ConfigSpace JSON space for ``law`` and check it. A hyperparameter's
    ``default_value``, when the file gives one, is the start; otherwise the law's published
    value (clipped into the box) or the box's middle."""
    law = get_law(law)
    path = Path(path)
    if not path.is_file():
        raise TunerError(f"{path}: search-space file not found")
    try:
        raw = json.loads(path.read_text())
        for h in raw.get("hyperparameters", []) if isinstance(raw, dict) else []:
            for key in ("lower", "upper", "default_value"):
                v = h.get(key) if isinstance(h, dict) else None
                if isinstance(v, float) and not math.isfinite(v):
                    raise TunerError(f"{path}: {h.get('name')!r} has {key} {v}; bounds and "
                                     "defaults must be finite numbers")
        from ConfigSpace import ConfigurationSpace
        with warnings.catch_warnings():  # its warnings would be lines beside ours
            warnings.simplefilter("ignore")
            cs = ConfigurationSpace.from_json(path)
    except TunerError:
        raise
    except Exception as exc:  # ConfigSpace raises a variety of types on malformed input
        why = " ".join(f"{type(exc).__name__}: {exc}".split())
        raise TunerError(f"{path}: not a valid ConfigSpace JSON space ({why})") from None
    given = {h.get("name"): h for h in raw.get("hyperparameters", []) if isinstance(h, dict)}
    names = list(law.params)
    missing = [n for n in names if n not in cs]
    extra = [n for n in cs if n not in names]
    if missing or extra:
        raise TunerError(f"{path}: space does not match law {law.name}: "
                         + (f"missing {missing} " if missing else "")
                         + (f"unknown {extra}" if extra else "").strip())
    published = law.published or {}
    irreducible = set(irreducible_terms(law))
    dims, fixed = [], {}
    for n in names:
        hp = cs[n]
        kind = type(hp).__name__
        if kind == "Constant":
            try:
                fixed[n] = float(hp.value)
            except (TypeError, ValueError):
                raise TunerError(f"{path}: constant {n!r} is not a number") from None
            continue
        if kind not in ("UniformFloatHyperparameter", "NormalFloatHyperparameter",
                        "BetaFloatHyperparameter", "UniformIntegerHyperparameter"):
            raise TunerError(f"{path}: {n!r} is a {kind}; coefficients must be floats")
        lo, hi = float(hp.lower), float(hp.upper)
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo >= hi:
            raise TunerError(f"{path}: {n!r} has impossible bounds [{lo}, {hi}]")
        log = bool(getattr(hp, "log", False))
        if "default_value" in given.get(n, {}):
            d = float(hp.default_value)
            if not lo <= d <= hi:
                raise TunerError(f"{path}: {n!r} default {d} lies outside [{lo}, {hi}]")
        elif n in published:
            d = min(max(float(published[n]), lo), hi)
        else:
            d = math.sqrt(lo * hi) if log else (lo + hi) / 2
        kind = ("irreducible" if n in irreducible else "exponent" if n in law.exponents
                else "linear" if n in law.linear else "")
        dims.append(Dim(n, lo, hi, log, d, kind=kind, physical=(lo == 0.0, False)))
    if not dims:
        raise TunerError(f"{path}: every coefficient is constant; nothing to search")
    return Space(law, tuple(dims), fixed, str(path))


def default_space(law: "str | Law", loss: np.ndarray | None, magnitudes: np.ndarray
                  ) -> Space:
    """A space that follows the data (``loss``, observed; ``magnitudes``, the values of the
    data variables the law reads) and physics rather than any paper; see the module doc."""
    law = get_law(law)
    published = law.published or {}
    lmin = float(np.min(loss)) if loss is not None and len(loss) else None
    mags = np.abs(np.asarray(magnitudes, dtype=float).ravel())
    mags = mags[np.isfinite(mags) & (mags > 0)]
    vlo, vhi = (float(mags.min()), float(mags.max())) if len(mags) else (1.0, 1.0)
    irreducible = set(irreducible_terms(law))
    dims = []
    for n in law.params:
        pub = published.get(n)
        if n in law.bounds:
            lo, hi = law.bounds[n]
            log = lo > 0 and hi / lo >= 100
            dim = Dim(n, lo, hi, log, _start(pub, lo, hi, log), kind="given")
        elif n in irreducible and lmin is not None:
            dim = Dim(n, 0.0, lmin, False, _start(pub, 0.0, lmin, False, lmin / 2),
                      kind="irreducible", physical=(True, True))
        elif n in law.linear:
            lo, hi = LINEAR_RANGE
            dim = Dim(n, lo, hi, True, _start(pub, lo, hi, True, 1.0), kind="linear",
                      physical=(True, False))
        elif n in law.exponents:
            if pub is not None and pub < 0:
                dim = Dim(n, -EXPONENT_MAX, EXPONENT_MAX, False, pub, (True, True), "exponent")
            else:
                dim = Dim(n, 0.0, EXPONENT_MAX, False,
                          _start(pub, 0.0, EXPONENT_MAX, False, 0.3), (False, True), "exponent",
                          (True, False))
        else:
            lo = min(vlo, 1.0) * 10.0 ** -SCALE_DECADES
            hi = max(vhi, 1.0) * 10.0 ** SCALE_DECADES
            dim = Dim(n, lo, hi, True, _start(pub, lo, hi, True), (True, True), "scale")
        dims.append(dim)
    return Space(law, tuple(dims), {}, "default")


def _start(pub: float | None, lo: float, hi: float, log: bool, fallback: float | None = None
           ) -> float:
    if pub is not None and lo <= pub <= hi:
        return float(pub)
    if fallback is not None and lo <= fallback <= hi:
        return float(fallback)
    return math.sqrt(lo * hi) if log else (lo + hi) / 2


def irreducible_terms(law: Law) -> list[str]:
    """Linear coefficients whose term does not shrink with N or D: the irreducible loss."""
    return [n for n in law.linear if n in law.analysis.irreducible]


def published(law: "str | Law") -> dict[str, float]:
    """The published coefficients of a built-in ``law``."""
    law = get_law(law)
    if law.published is None or len(law.published) < len(law.params):
        raise TunerError(f"law {law.name} has no published coefficients; give them "
                         "(--coefficients k=v,...) or a fit run directory")
    return {n: float(law.published[n]) for n in law.params}


def parse_assignments(text: str, what: str = "--coefficients") -> dict[str, float]:
    """``"a=1,b=2e3"`` -> {"a": 1.0, "b": 2000.0}; TunerError naming the bad item."""
    out: dict[str, float] = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        key, sep, val = item.partition("=")
        if not sep:
            raise TunerError(f"{what}: {item!r} is not of the form name=value")
        key = key.strip()
        try:
            value = float(val)
        except ValueError:
            raise TunerError(f"{what}: {key!r} has a non-numeric value {val!r}") from None
        if not math.isfinite(value):
            raise TunerError(f"{what}: {key}={val.strip()} is not a finite number")
        if key in out:
            raise TunerError(f"{what}: {key} is given twice")
        out[key] = value
    return out
