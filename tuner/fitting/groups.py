"""One law fitted jointly over groups of runs (``--group COLUMN``).

Runs from several training corpora share the law's exponents but not its scale: the
coefficients named per group (by default the ones the law is linear in, e.g. Eq 2's e, a, b)
get one copy per group, written ``name[group]``; the others are shared. ``GroupedLaw`` wraps a
law with the same interface, so the objective, the closed-form solve and the polish work on it
unchanged: a per-group coefficient's derivative is the law's, masked to its group's runs.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Mapping, Sequence

import numpy as np

from tuner.errors import TunerError
from tuner.laws.formula import Terms
from tuner.laws.registry import Law, Runs


def group_name(coefficient: str, label: str) -> str:
    return f"{coefficient}[{label}]"


def base_name(name: str) -> str:
    """The law's coefficient behind ``name`` (``e`` for ``e[c4]``, ``e`` for ``e``)."""
    return name.split("[", 1)[0]


class GroupedLaw:
    """``law`` with the coefficients ``per_group`` fitted once per group of runs."""

    def __init__(self, law: Law, groups: tuple[Sequence[str], np.ndarray],
                 per_group: Sequence[str] | None = None):
        labels, codes = groups
        self.base, self.labels, self.codes = law, [str(x) for x in labels], np.asarray(codes)
        per_group = tuple(per_group) if per_group else law.linear
        unknown = [c for c in per_group if c not in law.params]
        if unknown:
            raise TunerError(f"--per-group: {', '.join(unknown)} not coefficients of "
                             f"{law.name} ({', '.join(law.params)})")
        if not per_group:
            raise TunerError(f"--group: law {law.name} has no coefficient to fit per group; "
                             "name some with --per-group")
        self.per_group = tuple(c for c in law.params if c in per_group)
        self.masks = [self.codes == g for g in range(len(self.labels))]
        self.name = law.name
        self.equation, self.description = law.equation, law.description
        self.builtin, self.closed_form, self.bounds = False, None, {}
        self.published = None
        self.source = law.source
        self.formula = law.formula

    # names -------------------------------------------------------------------------------
    def expanded(self, c: str) -> list[str]:
        return [group_name(c, g) for g in self.labels] if c in self.per_group else [c]

    @property
    def params(self) -> tuple[str, ...]:
        return tuple(n for c in self.base.params for n in self.expanded(c))

    @property
    def linear(self) -> tuple[str, ...]:
        return tuple(n for c in self.base.linear for n in self.expanded(c))

    @property
    def power(self) -> dict[str, str]:
        return {n: k for c, k in self.base.power.items() for n in self.expanded(c)}

    @property
    def exponents(self) -> frozenset[str]:
        return frozenset(n for c in self.base.exponents for n in self.expanded(c))

    @property
    def variables(self) -> tuple[str, ...]:
        return self.base.variables

    @property
    def sparse(self) -> bool:
        return self.base.sparse

    def definition(self) -> dict:
        return self.base.definition()

    def unidentified(self, constants: Mapping[str, float]) -> list[str]:
        return [n for c in self.base.unidentified(constants) for n in self.expanded(c)]

    def group_params(self, params: Mapping[str, float]) -> dict[str, dict[str, float]]:
        """{group: the base law's coefficients for that group}."""
        return {g: {c: float(params[group_name(c, g) if c in self.per_group else c])
                    for c in self.base.params} for g in self.labels}

    # numbers ------------------------------------------------------------------------------
    def _per_run(self, p: Mapping) -> dict:
        out = {c: p[c] for c in self.base.params if c not in self.per_group}
        for c in self.per_group:
            stacked = np.stack([np.asarray(p[group_name(c, g)], dtype=float)
                                for g in self.labels], axis=-1)
            v = np.take(stacked, self.codes, axis=-1)
            if v.ndim >= 2 and v.shape[-2] == 1:  # a batch of sets given as (k, 1) columns
                v = v[..., 0, :]
            out[c] = v
        return out

    def predict(self, p: Mapping, r: Runs, terms: Terms | None = None) -> np.ndarray:
        return self.base.predict(self._per_run(p), r, terms)

    def value_and_grad(self, p: Mapping, r: Runs, terms: Terms | None = None):
        value, grad = self.base.value_and_grad(self._per_run(p), r, terms)
        return value, self._grouped(grad)

    def gradient(self, p: Mapping, r: Runs, terms: Terms | None = None
                 ) -> dict[str, np.ndarray]:
        return self._grouped(self.base.gradient(self._per_run(p), r, terms))

    def gradient_rows(self, p: Mapping, r: Runs, terms: Terms | None = None):
        base = self.base.gradient_rows(self._per_run(p), r, terms)
        return lambda rows: self._grouped(base(rows), [m[rows] for m in self.masks])

    def _grouped(self, grad: Mapping[str, np.ndarray], masks: Sequence[np.ndarray] | None = None
                 ) -> dict[str, np.ndarray]:
        """The base law's gradient, a per-group coefficient's masked to its group's runs."""
        out = {}
        for c in self.base.params:
            if c in self.per_group:
                for g, m in zip(self.labels, self.masks if masks is None else masks):
                    out[group_name(c, g)] = np.where(m, grad[c], 0.0)
            else:
                out[c] = grad[c]
        return out

    def _exponent(self, c: str, n: str, p: Mapping) -> float:
        k = self.base.power[c]
        if k in self.per_group:
            return p[group_name(k, n[len(c) + 1:-1])]
        return p[k]

    def _base_of(self, n: str) -> str:
        return base_name(n)

    def to_weight(self, name: str, value: float, p: Mapping) -> float:
        c = self._base_of(name)
        return value ** self._exponent(c, name, p) if c in self.base.power else value

    def from_weight(self, name: str, w: float, p: Mapping) -> float:
        c = self._base_of(name)
        return w ** (1.0 / self._exponent(c, name, p)) if c in self.base.power else w

    def linear_columns(self, p: Mapping, r: Runs, names: Sequence[str],
                       terms: Terms | None = None):
        offset, cols = self.linear_parts(p, r, names, terms)
        return offset, (np.column_stack(cols) if cols else np.zeros((len(offset), 0)))

    def linear_parts(self, p: Mapping, r: Runs, names: Sequence[str],
                     terms: Terms | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
        base_names = [c for c in self.base.linear if any(self._base_of(n) == c for n in names)]
        per_run = self._per_run(p)
        # weights of power-linear coefficients depend on (possibly per-run) exponents
        offset, cols = self.base.linear_parts(per_run, r, base_names, terms)
        col = dict(zip(base_names, cols))
        offset = offset.copy()
        for c in base_names:
            for n, m in zip(self.expanded(c), self.masks if c in self.per_group else [None]):
                if n not in names:
                    w = self.to_weight(n, p[n], p)
                    offset = offset + w * (col[c] if m is None else np.where(m, col[c], 0.0))
        out = []
        for n in names:
            c = self._base_of(n)
            if c in self.per_group:
                g = self.labels.index(n[len(c) + 1:-1])
                out.append(np.where(self.masks[g], col[c], 0.0))
            else:
                out.append(col[c])
        return offset, out

    def expand_space(self, space, loss: np.ndarray | None = None):
        """A base law's space with each per-group coefficient's dimension copied per group;
        with ``loss``, each group's irreducible loss is bounded by that group's smallest."""
        dims, fixed = [], dict(space.fixed)
        for d in space.dims:
            for n in self.expanded(d.name):
                copy = replace(d, name=n)
                if loss is not None and d.kind == "irreducible" and n != d.name:
                    g = self.labels.index(n[len(d.name) + 1:-1])
                    top = float(np.min(loss[self.masks[g]]))
                    copy = replace(copy, upper=top, default=min(copy.default, top / 2))
                dims.append(copy)
        for c in list(fixed):
            if c in self.per_group:
                v = fixed.pop(c)
                fixed.update({n: v for n in self.expanded(c)})
        return replace(space, law=self, dims=tuple(dims), fixed=fixed)
