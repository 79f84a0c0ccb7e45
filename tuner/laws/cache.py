"""What SymPy reads off a formula (linear coefficients, power weights, exponents, the
derivatives), kept on disk between commands: importing SymPy and analysing a law costs
~1 s, which a command whose law was seen before should not pay again.

The cache lives in ``$TUNER_CACHE_DIR`` or ``$XDG_CACHE_HOME/tuner`` (``~/.cache/tuner``),
one JSON file per formula text, tuner version and analysing code. It is only ever a copy: an unreadable,
foreign or unwritable cache is ignored and the analysis computed again; set
``TUNER_CACHE_DIR=`` (empty) to turn it off.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Callable, TypeVar

from tuner.errors import TunerError
from tuner.laws import formula as fm

T = TypeVar("T")


def cache_dir() -> Path | None:
    if "TUNER_CACHE_DIR" in os.environ:
        return Path(os.environ["TUNER_CACHE_DIR"]) if os.environ["TUNER_CACHE_DIR"] else None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tuner"


def _path(formula: str, kind: str) -> Path | None:
    from tuner import __version__
    d = cache_dir()
    if d is None:
        return None
    # The analysing code itself is part of the key: an edited formula.py never reads a
    # stale entry, whatever the version says.
    # So is SymPy's version: its output (the order of terms, the common subexpressions) fixes
    # the order of the floating-point operations, and one cache may serve several venvs.
    try:
        code = hashlib.sha256(Path(fm.__file__).read_bytes()).hexdigest()
        sympy = _sympy_release()
    except OSError:
        return None
    key = hashlib.sha256(f"{__version__}\n{code}\n{sympy}\n{formula}".encode()).hexdigest()[:32]
    return d / "laws" / f"{key}-{kind}.json"


def _sympy_release() -> str:
    """A digest of the installed SymPy's release file, found without importing SymPy."""
    import importlib.util
    spec = importlib.util.find_spec("sympy")
    if spec is None or spec.origin is None:
        return ""
    return hashlib.sha256(Path(spec.origin).with_name("release.py").read_bytes()).hexdigest()


def _entry(formula: str, kind: str, compute: Callable[[], dict], read: Callable[[dict], T]
           ) -> T:
    """``read`` of the cached entry ``kind`` of ``formula``; computed and stored if there is
    none that reads."""
    path = _path(formula, kind)
    if path is not None:
        try:
            data = json.loads(path.read_text())
            if isinstance(data, dict) and data.get("formula") == formula:
                return read(data)
        except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError,
                RecursionError, TunerError):
            pass  # a missing, torn or foreign entry: computed again
    data = {"formula": formula, **compute()}
    result = read(data)
    if path is not None:
        _store(path, data)
    return result


def analysis(formula: str, compute: Callable[[], fm.Analysis]) -> fm.Analysis:
    """The formula's analysis, from the cache when it holds this formula's."""
    def as_json() -> dict:
        a = compute()
        return {"linear": list(a.linear), "power": dict(a.power),
                "exponents": sorted(a.exponents), "irreducible": list(a.irreducible)}
    return _entry(formula, "analysis", as_json, lambda d: fm.Analysis.checked(formula, d))


def compiled(formula: str, compute: Callable[[], dict]) -> fm.Compiled:
    """The formula's numpy functions, from derivatives SymPy found once
    (``formula.derivative_code``) and kept in the cache."""
    return _entry(formula, "derivatives", compute, lambda d: fm.Compiled(formula, d))


def _store(path: Path, data: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh)
        os.replace(tmp, path)  # whole or not at all, should two commands write at once
    except OSError:
        pass
