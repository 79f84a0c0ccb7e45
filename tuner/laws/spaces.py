"""Search spaces: ConfigSpace JSON files read into bounds, scales, defaults and fixed values.

``search_spaces/<law>.json`` holds one float per coefficient; its default is the published
value (the single source of truth for it). A coefficient marked ``log`` is searched on a log
scale but always reported in natural units. A ``constant`` hyperparameter (or ``--fix``) pins
a coefficient. Optimizers work in *internal* coordinates: log(x) for log-scale coefficients,
x otherwise, over the free coefficients only.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

from tuner.errors import TunerError
from tuner.laws import get_law
from tuner.paths import SPACES_DIR


@dataclass(frozen=True)
class Dim:
    name: str
    lower: float
    upper: float
    log: bool
    default: float

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

    law: str
    dims: tuple[Dim, ...]
    fixed: Mapping[str, float] = field(default_factory=dict)
    source: str = ""

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.dims]

    @property
    def all_names(self) -> list[str]:
        return list(get_law(self.law).params)

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
                raise TunerError(f"--fix: {n!r} is not a coefficient of {self.law} "
                                 f"({', '.join(self.all_names)})")
        for n, v in values.items():
            if not math.isfinite(v):
                raise TunerError(f"--fix: {n}={v!r} is not a finite number")
        for d in self.dims:
            if d.name in values and not d.lower <= values[d.name] <= d.upper:
                raise TunerError(f"--fix: {d.name}={values[d.name]!r} lies outside the space "
                                 f"[{d.lower:g}, {d.upper:g}]")
        dims = tuple(d for d in self.dims if d.name not in values)
        if not dims:
            raise TunerError("--fix: every coefficient is fixed; nothing left to search")
        return Space(self.law, dims, {**self.fixed, **{k: float(v) for k, v in values.items()}},
                     self.source)


def space_path(law: str) -> Path:
    return SPACES_DIR / f"{law}.json"


def load_space(law: str, path: str | Path | None = None) -> Space:
    """Read a law's space from ``path`` (default ``search_spaces/<law>.json``) and check it."""
    get_law(law)
    path = Path(path) if path is not None else space_path(law)
    if not path.is_file():
        raise TunerError(f"{path}: search-space file not found")
    try:
        from ConfigSpace import ConfigurationSpace
        cs = ConfigurationSpace.from_json(path)
    except (ValueError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise TunerError(f"{path}: not a valid ConfigSpace JSON space ({exc})") from None
    except Exception as exc:  # ConfigSpace raises a variety of types on malformed input
        raise TunerError(f"{path}: not a valid ConfigSpace JSON space ({type(exc).__name__}: "
                         f"{exc})") from None
    names = list(get_law(law).params)
    missing = [n for n in names if n not in cs]
    extra = [n for n in cs if n not in names]
    if missing or extra:
        raise TunerError(f"{path}: space does not match law {law}: "
                         + (f"missing {missing} " if missing else "")
                         + (f"unknown {extra}" if extra else "").strip())
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
        lo, hi, d = float(hp.lower), float(hp.upper), float(hp.default_value)
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo >= hi:
            raise TunerError(f"{path}: {n!r} has impossible bounds [{lo}, {hi}]")
        if not lo <= d <= hi:
            raise TunerError(f"{path}: {n!r} default {d} lies outside [{lo}, {hi}]")
        dims.append(Dim(n, lo, hi, bool(getattr(hp, "log", False)), d))
    if not dims:
        raise TunerError(f"{path}: every coefficient is constant; nothing to search")
    return Space(law, tuple(dims), fixed, str(path))


def published(law: str) -> dict[str, float]:
    """The published coefficients of ``law``: the defaults of its shipped space file."""
    return load_space(law).default()


def parse_assignments(text: str, what: str = "--coefficients") -> dict[str, float]:
    """``"a=1,b=2e3"`` -> {"a": 1.0, "b": 2000.0}; TunerError naming the bad item."""
    out: dict[str, float] = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        key, sep, val = item.partition("=")
        if not sep:
            raise TunerError(f"{what}: {item!r} is not of the form name=value")
        try:
            out[key.strip()] = float(val)
        except ValueError:
            raise TunerError(f"{what}: {key.strip()!r} has a non-numeric value {val!r}") from None
    return out
