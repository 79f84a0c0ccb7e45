"""What SymPy reads off a formula (linear coefficients, power weights, exponents), kept on
disk between commands: importing SymPy and analysing a law costs ~1 s, and a short command
(`tuner laws`, `tuner predict`) should not pay it each time.

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
from typing import Callable

from tuner.laws import formula as fm


def cache_dir() -> Path | None:
    if "TUNER_CACHE_DIR" in os.environ:
        return Path(os.environ["TUNER_CACHE_DIR"]) if os.environ["TUNER_CACHE_DIR"] else None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tuner"


def _path(formula: str) -> Path | None:
    from tuner import __version__
    d = cache_dir()
    if d is None:
        return None
    # The analysing code itself is part of the key: an edited formula.py never reads a
    # stale entry, whatever the version says.
    try:
        code = hashlib.sha256(Path(fm.__file__).read_bytes()).hexdigest()
    except OSError:
        return None
    key = hashlib.sha256(f"{__version__}\n{code}\n{formula}".encode()).hexdigest()[:32]
    return d / "laws" / f"{key}.json"


def analysis(formula: str, compute: Callable[[], fm.Analysis]) -> fm.Analysis:
    """The formula's analysis, from the cache when it holds this formula's."""
    path = _path(formula)
    if path is not None:
        try:
            data = json.loads(path.read_text())
            if data.get("formula") == formula:
                return fm.Analysis(tuple(data["linear"]), dict(data["power"]),
                                   frozenset(data["exponents"]))
        except (OSError, ValueError, KeyError, TypeError):
            pass
    result = compute()
    if path is not None:
        _store(path, {"formula": formula, "linear": list(result.linear),
                      "power": dict(result.power), "exponents": sorted(result.exponents)})
    return result


def _store(path: Path, data: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh)
        os.replace(tmp, path)  # whole or not at all, should two commands write at once
    except OSError:
        pass
