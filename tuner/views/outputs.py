"""Output files of the commands that write them (reproduce, figures, compare, report, rank).

A command never overwrites a file it did not write in the same directory earlier: each
directory it writes to keeps ``.tuner-outputs``, the names tuner wrote there, and a file
that exists but is not listed is refused with one line before anything runs (``--force``
overwrites it).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from tuner.errors import TunerError

MANIFEST = ".tuner-outputs"


def _written(directory: Path) -> set[str]:
    try:
        return set((directory / MANIFEST).read_text().split("\n")) - {""}
    except OSError:
        return set()


def guard(paths: Iterable[Path | str], force: bool = False) -> list[Path]:
    """Check that every path may be written; TunerError naming the first that may not."""
    out = [Path(p).resolve() for p in paths]
    for p in out:
        parent = next((a for a in p.parents if a.exists()), None)
        if parent is not None and not parent.is_dir():
            raise TunerError(f"{parent}: is a file, so {p.name} cannot be written beneath it")
        if p.is_dir():
            raise TunerError(f"{p}: is a directory; choose another --out")
        if p.exists() and not force and p.name not in _written(p.parent):
            raise TunerError(f"{p}: exists and was not written by tuner here; use --force to "
                             "overwrite it, or choose another --out")
        if parent is not None and not os.access(parent, os.W_OK | os.X_OK):
            raise TunerError(f"{parent}: not writable")
    return out


def record(paths: Iterable[Path | str]) -> None:
    """Note the files a command wrote, so its next run may replace them."""
    by_dir: dict[Path, set[str]] = {}
    for p in map(Path, paths):
        p = p.resolve()
        if p.exists():
            by_dir.setdefault(p.parent, set()).add(p.name)
    for directory, names in by_dir.items():
        names |= _written(directory)
        tmp = directory / f".{MANIFEST}.tmp{os.getpid()}"
        try:
            tmp.write_text("\n".join(sorted(names)) + "\n")
            os.replace(tmp, directory / MANIFEST)
        except OSError:
            pass  # the outputs are written; only a later overwrite will ask for --force


def stems(stem: Path | str, exts: Iterable[str]) -> list[Path]:
    """``stem`` with each extension: the files a figure or table writer produces."""
    return [Path(stem).with_suffix(f".{e}") for e in exts]


def save_figure(fig, stem: Path | str, dpi: int = 120) -> list[Path]:
    """Write a matplotlib figure as ``stem.png`` and ``stem.svg``, close it, return the paths."""
    import matplotlib.pyplot as plt
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_name(f"{stem.name}.{ext}") for ext in ("png", "svg")]
    for p in paths:
        fig.savefig(p, dpi=dpi)
    plt.close(fig)
    return paths
