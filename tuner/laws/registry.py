"""A scaling law is one definition: its formula and everything known about it.

``Law`` holds the name, the formula (``tuner.laws.formula`` parses it), the published
coefficients and their source, optional bounds, and a closed-form compute-optimal allocation
where one exists. Everything else is read off the formula: coefficient names, the variables
used, the derivatives, the coefficients the law is linear in, which coefficients a constant
data column leaves unidentified. Built-in laws live in ``builtin.py``; a user's law is a
formula string or a JSON law file, turned into the same ``Law`` by ``get_law``.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from tuner.errors import TunerError
from tuner.laws import formula as fm

Params = Mapping[str, "np.ndarray | float"]


@dataclass(frozen=True)
class Runs:
    """The columns a law reads; ``sparsity`` is S in [0, 1)."""

    n_total: np.ndarray
    n_active: np.ndarray
    tokens: np.ndarray
    sparsity: np.ndarray


@dataclass(frozen=True, eq=False)
class Law:
    """One scaling law. Only ``name`` and ``formula`` are required."""

    name: str
    formula: str
    equation: str = ""
    description: str = ""
    # Published coefficients (all of them for a built-in law), or a user's defaults (any).
    published: Mapping[str, float] | None = None
    source: str = ""  # where ``published`` comes from
    # Optional search bounds (natural units) that replace the default space's for a coefficient.
    bounds: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    # (params, compute, sparsity) -> (N_active, D) in closed form, or None where it does not apply.
    closed_form: Callable[[Mapping[str, float], float, float], tuple[float, float] | None] | None \
        = None
    builtin: bool = False

    def __post_init__(self) -> None:
        # The formula is checked now (a bad one fails before anything runs); SymPy reads it
        # only when a derivative or the linear form is first needed.
        coefficients, variables = fm.names(self.formula)
        object.__setattr__(self, "_names", (coefficients, variables))
        if not variables:
            raise TunerError(f"law formula {self.formula!r}: uses no data variable "
                             f"({', '.join(fm.VARIABLES)})")
        if self.published is not None:
            missing = [c for c in coefficients if c not in self.published]
            extra = [c for c in self.published if c not in coefficients]
            if extra or (missing and self.builtin):
                raise TunerError(f"law {self.name}: published coefficients do not match the "
                                 f"formula (missing {missing}, unknown {extra})")
        unknown = [c for c in self.bounds if c not in coefficients]
        if unknown:
            raise TunerError(f"law {self.name}: bounds for unknown coefficients {unknown}")
        for c, (lo, hi) in self.bounds.items():
            if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                raise TunerError(f"law {self.name}: {c!r} has impossible bounds [{lo}, {hi}]")

    def __reduce__(self):
        # Compiled numpy programs are closures: rebuild them from the definition instead.
        return (_rebuild, (self.__class__, {f.name: getattr(self, f.name) for f in fields(self)}))

    # -- read off the formula (once) ---------------------------------------------------------
    @cached_property
    def parsed(self) -> fm.Parsed:
        return fm.parse(self.formula)

    @cached_property
    def analysis(self) -> fm.Analysis:
        from tuner.laws import cache
        return cache.analysis(self.formula, lambda: fm.analyse(self.parsed))

    @cached_property
    def _value(self) -> Callable[[dict], np.ndarray]:
        # The prediction straight from the checked formula: no SymPy, which only the
        # derivatives and the analysis need.
        return fm.value_function(self.formula)

    @cached_property
    def compiled(self) -> fm.Compiled:
        from tuner.laws import cache
        return cache.compiled(self.formula, lambda: fm.derivative_code(
            self.parsed, self.analysis.linear, self.analysis.power))

    @property
    def params(self) -> tuple[str, ...]:
        """Coefficient names: the published order for built-in laws, else formula order."""
        if self.builtin:
            return tuple(self.published)
        return self._names[0]

    @property
    def variables(self) -> tuple[str, ...]:
        """Dataset columns the law reads (n_active, n_total, tokens, sparsity)."""
        return tuple(fm.VARIABLES[v] for v in self._names[1])

    @property
    def n_meaning(self) -> str:
        """What N stands for in this law."""
        if "N_total" in self._names[1] and "N" not in self._names[1]:
            return "total parameters (column n_total)"
        return "active parameters: non-zero for weight sparsity, used per token for MoE " \
               "(column n_active)"

    @property
    def sparse(self) -> bool:
        return any(v in self._names[1] for v in ("S", "N_total"))

    @property
    def linear(self) -> tuple[str, ...]:
        """Coefficients the law is linear in once the others are fixed (solved in closed form)."""
        return tuple(n for n in self.params if n in self.analysis.linear)

    @property
    def power(self) -> Mapping[str, str]:
        """{coefficient: exponent} for those the law is linear in as coefficient**exponent."""
        return self.analysis.power

    @property
    def exponents(self) -> frozenset[str]:
        return self.analysis.exponents

    def unidentified(self, constants: Mapping[str, float]) -> list[str]:
        """Coefficients lost when dataset columns (``{"tokens": 1e10}``) are constant."""
        names = {col: var for var, col in fm.VARIABLES.items()}
        lost = set(fm.unidentified(self.parsed, {names[c]: v for c, v in constants.items()}))
        return [n for n in self.params if n in lost]

    # -- numbers ----------------------------------------------------------------------------
    def _env(self, p: Params, r: Runs, terms: fm.Terms | None = None) -> dict:
        env = {v: getattr(r, col) for v, col in fm.VARIABLES.items()}
        # numpy values: 1/0 is inf (a bad point), not Python's ZeroDivisionError
        env.update({n: np.asarray(p[n], dtype=float) for n in self._names[0]})
        if terms is not None:
            terms.bind(env)
            env[fm.TERMS] = terms
        return env

    def _shape(self, p: Params, r: Runs) -> tuple[int, ...]:
        return np.broadcast_shapes(np.shape(r.tokens), *(np.shape(p[n]) for n in self.params))

    def predict(self, p: Params, r: Runs, terms: fm.Terms | None = None) -> np.ndarray:
        """Predicted loss (broadcast over runs and coefficient arrays). ``terms`` shares
        costly subexpressions with the other passes of one evaluation (``formula.Terms``)."""
        return np.broadcast_to(self._value(self._env(p, r, terms)), self._shape(p, r))

    def gradient(self, p: Params, r: Runs, terms: fm.Terms | None = None
                 ) -> dict[str, np.ndarray]:
        """d prediction / d coefficient per run, without the prediction itself."""
        grad = self.compiled.gradient(self._env(p, r, terms))
        shape = self._shape(p, r)
        return {n: np.broadcast_to(grad[n], shape) for n in self.params}

    def gradient_rows(self, p: Params, r: Runs, terms: fm.Terms | None = None
                      ) -> Callable[[slice], dict[str, "np.ndarray | float"]]:
        """``gradient`` as a function of a block of runs (a slice), for a pass made block by
        block; a derivative that is the same for every run comes back as a scalar."""
        return self.compiled.gradient_rows(self._env(p, r, terms), len(np.atleast_1d(r.tokens)))

    def value_and_grad(self, p: Params, r: Runs, terms: fm.Terms | None = None
                       ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        value, grad = self.compiled.value_and_grad(self._env(p, r, terms))
        shape = self._shape(p, r)
        return (np.broadcast_to(value, shape),
                {n: np.broadcast_to(grad[n], shape) for n in self.params})

    def linear_columns(self, p: Params, r: Runs, names: Sequence[str],
                       terms: fm.Terms | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(offset (n,), columns (n, k)) with L = offset + columns @ w for the weights of
        ``names`` (linear coefficients; the others keep their values in ``p``)."""
        offset, cols = self.linear_parts(p, r, names, terms)
        return offset, (np.column_stack(cols) if cols else np.zeros((len(offset), 0)))

    def linear_parts(self, p: Params, r: Runs, names: Sequence[str],
                     terms: fm.Terms | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
        """``linear_columns`` with the columns as a list of (n,) arrays, some of them
        read-only broadcasts (a constant column costs no memory)."""
        offset, cols = self.compiled.linear_parts(self._env(p, r, terms))
        shape = np.shape(r.tokens)
        offset = np.broadcast_to(offset, shape).astype(float)
        by_name = dict(zip(self.compiled.linear, (np.broadcast_to(c, shape) for c in cols)))
        for n in self.linear:
            if n not in names:
                offset = offset + self.to_weight(n, p[n], p) * by_name[n]
        return offset, [by_name[n] for n in names]

    def to_weight(self, name: str, value: float, p: Params) -> float:
        return value ** p[self.power[name]] if name in self.power else value

    def from_weight(self, name: str, w: float, p: Params) -> float:
        return w ** (1.0 / p[self.power[name]]) if name in self.power else w

    def definition(self) -> dict:
        """A JSON-able definition (what a law file holds), stored in a run's config."""
        out = {"name": self.name, "formula": self.formula}
        if self.published is not None:
            out["published"] = dict(self.published)
        if self.source:
            out["source"] = self.source
        if self.bounds:
            out["bounds"] = {k: list(v) for k, v in self.bounds.items()}
        return out

    def describe(self) -> str:
        head = f"{self.name} ({self.equation}): " if self.equation else f"{self.name}: "
        return head + f"L = {self.formula}"


def _rebuild(cls, kwargs):
    return cls(**kwargs)


LAW_FILE_KEYS = {"name", "formula", "published", "defaults", "source", "bounds", "description"}


def law_from_file(path: str | Path) -> Law:
    """A law file: JSON with ``formula`` (required), ``name``, optional ``defaults`` (or
    ``published``) and ``bounds`` ({coefficient: [low, high]})."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except OSError as exc:
        raise TunerError(f"{path}: cannot read law file ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise TunerError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    except UnicodeDecodeError as exc:
        raise TunerError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except RecursionError:
        raise TunerError(f"{path}: JSON nested too deeply for a law file") from None
    return law_from_dict(raw, str(path))


def law_from_dict(raw: object, where: str = "law definition") -> Law:
    if not isinstance(raw, dict) or not isinstance(raw.get("formula"), str):
        raise TunerError(f"{where}: a law file is a JSON object with a 'formula' string")
    unknown = sorted(set(raw) - LAW_FILE_KEYS)
    if unknown:
        raise TunerError(f"{where}: unknown key(s) {', '.join(unknown)} (allowed: "
                         f"{', '.join(sorted(LAW_FILE_KEYS))})")
    for key in ("name", "description", "source"):
        if key in raw and not isinstance(raw[key], str):
            raise TunerError(f"{where}: '{key}' must be a string, got {json.dumps(raw[key])}")
    defaults = raw.get("published", raw.get("defaults"))

    def number(v: object) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(v)
        return float(v)

    def pair(v: object) -> tuple[float, float]:
        if len(v) != 2:
            raise ValueError(v)
        return number(v[0]), number(v[1])
    try:
        bounds = {str(k): pair(v) for k, v in (raw.get("bounds") or {}).items()}
        values = None if defaults is None else {str(k): number(v) for k, v in defaults.items()}
    except (TypeError, ValueError, IndexError, AttributeError, KeyError):
        raise TunerError(f"{where}: 'defaults' must map names to finite numbers and 'bounds' "
                         "names to [low, high]") from None
    for k, (lo, hi) in bounds.items():
        if not lo < hi:
            raise TunerError(f"{where}: bounds of {k}: low {lo:g} is not below high {hi:g}")
        if values and k in values and not lo <= values[k] <= hi:
            raise TunerError(f"{where}: default {k}={values[k]:g} lies outside its bounds "
                             f"[{lo:g}, {hi:g}]")
    name = str(raw.get("name") or raw["formula"])
    try:
        return Law(name, raw["formula"], description=str(raw.get("description", "")),
                   published=values, source=str(raw.get("source", "")), bounds=bounds)
    except TunerError as exc:
        raise TunerError(f"{where}: {exc}") from None




def get_law(spec: "str | Law | Mapping") -> Law:
    """A built-in law by name, a law file (``*.json``), a definition dict, or a formula."""
    if isinstance(spec, Law):
        return spec
    if isinstance(spec, Mapping):
        return law_from_dict(dict(spec))
    if not isinstance(spec, str) or not spec.strip():
        raise TunerError("--law is empty")
    if spec in LAWS:
        return LAWS[spec]
    if spec.endswith(".json"):
        if not Path(spec).is_file():
            raise TunerError(f"{spec}: law file not found")
        return law_from_file(spec)
    if spec.isidentifier():
        raise TunerError(f"unknown law {spec!r}; known laws: {', '.join(LAWS)} (or give a "
                         "formula such as 'e + a/N**alpha + b/D**beta', or a law file .json)")
    if spec not in _FORMULAS:  # parsing and compiling cost milliseconds: once per formula
        _FORMULAS[spec] = Law(spec.strip(), spec)
    return _FORMULAS[spec]


_FORMULAS: dict[str, Law] = {}


def predict(law: "str | Law", params: Params, runs: Runs) -> np.ndarray:
    """Predicted loss; overflow, NaN and negative powers give inf/NaN, never an exception."""
    law = get_law(law)
    with np.errstate(all="ignore"):
        return np.asarray(law.predict(params, runs), dtype=float)


# The built-in laws by name (checking their formulas costs no SymPy import).
from tuner.laws.builtin import BUILTIN  # noqa: E402  (builtin.py builds on Law above)

LAWS: dict[str, Law] = {law.name: law for law in BUILTIN}
