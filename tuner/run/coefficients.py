"""The coefficients a command uses: a law's published values, a fit run's best, or values
typed as ``k=v,...`` (the others published)."""
from __future__ import annotations

from pathlib import Path

from tuner.errors import TunerError
from tuner.laws import get_law
from tuner.laws.spaces import parse_assignments
from tuner.run.rundir import RunDir


def coefficients(law: "str | dict", spec: str | None) -> dict[str, float]:
    """Coefficients from 'published', a run directory, or 'k=v,...' (others published)."""
    law = get_law(law)
    base = dict(law.published or {})
    if spec in (None, "", "published"):
        if len(base) < len(law.params):
            raise TunerError(f"law {law.name} has no published coefficients: give "
                             "--coefficients k=v,... or a fit run directory")
        return {n: float(base[n]) for n in law.params}
    path = Path(spec)
    if path.is_dir():
        summary = RunDir.open(path).summary()
        if summary.get("formula", summary.get("law")) not in (law.formula, law.name) \
                and summary.get("law") != law.name:
            raise TunerError(f"{path}: run fitted law {summary.get('law')!r}, not {law.name!r}")
        missing = [n for n in law.params if n not in summary.get("best_params", {})]
        if missing:
            raise TunerError(f"{path}: run has no coefficients {', '.join(missing)} (a "
                             "grouped fit? use its group_params)")
        return {n: float(summary["best_params"][n]) for n in law.params}
    given = parse_assignments(spec)
    unknown = [k for k in given if k not in law.params]
    if unknown:
        raise TunerError(f"--coefficients: {', '.join(unknown)} not coefficients of {law.name} "
                         f"({', '.join(law.params)})")
    merged = {**base, **given}
    missing = [n for n in law.params if n not in merged]
    if missing:
        raise TunerError(f"--coefficients: give {', '.join(missing)} too (law {law.name} has "
                         "no published value for them)")
    return {n: float(merged[n]) for n in law.params}
