"""Datasets: load a shipped dataset by name or a user's CSV by path, check it, derive columns.

A dataset is one row per trained model with columns ``n_total, n_active, tokens, sparsity,
loss`` (loss may be absent: only the ``paper`` objective works then). Every check names the
file, the row and the field it failed on.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tuner.errors import TunerError
from tuner.laws import Runs
from tuner.paths import DATASETS_DIR

REQUIRED = ("n_total", "n_active", "tokens", "sparsity")
CATALOG = DATASETS_DIR / "catalog.json"


@dataclass(frozen=True)
class Dataset:
    name: str
    path: str
    frame: pd.DataFrame
    loss_kind: str  # measured | computed | reconstructed | unknown | none
    dropped: int = 0

    @property
    def runs(self) -> Runs:
        f = self.frame
        return Runs(*(f[c].to_numpy(dtype=float) for c in REQUIRED))

    @property
    def loss(self) -> np.ndarray | None:
        if "loss" not in self.frame:
            return None
        return self.frame["loss"].to_numpy(dtype=float)

    def __len__(self) -> int:
        return len(self.frame)

    def subset(self, mask: np.ndarray, suffix: str) -> "Dataset":
        return Dataset(f"{self.name}[{suffix}]", self.path,
                       self.frame[np.asarray(mask)].reset_index(drop=True), self.loss_kind)


def catalog() -> dict[str, dict]:
    """The shipped datasets: name -> {file, loss, source, license, ...}."""
    return json.loads(CATALOG.read_text())


def resolve(name_or_path: str) -> tuple[str, Path, str]:
    """(name, path, loss kind) of a shipped dataset name or a CSV path."""
    shipped = catalog()
    if name_or_path in shipped:
        entry = shipped[name_or_path]
        return name_or_path, DATASETS_DIR / entry["file"], entry["loss"]
    path = Path(name_or_path)
    if path.suffix.lower() == ".csv" or path.exists() or "/" in name_or_path:
        if not path.is_file():
            raise TunerError(f"{path}: dataset file not found")
        return path.stem, path.resolve(), "unknown"
    raise TunerError(f"unknown dataset {name_or_path!r}; shipped datasets: "
                     f"{', '.join(shipped)} (or give a path to a CSV file)")


def load(name_or_path: str, *, drop_outliers: bool = True, need_loss: bool = True) -> Dataset:
    """Load and check a dataset. Rows flagged ``outlier`` are dropped unless told otherwise."""
    name, path, kind = resolve(name_or_path)
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TunerError(f"{path}: not a readable CSV ({msg})") from None
    _check_header(path)
    frame = check_frame(frame, str(path), need_loss=need_loss)
    dropped = 0
    if drop_outliers and "outlier" in frame:
        keep = ~frame["outlier"].astype(str).str.lower().isin(["true", "1"])
        dropped = int((~keep).sum())
        frame = frame[keep].reset_index(drop=True)
    if "loss" not in frame:
        kind = "none"
    return Dataset(name, str(path), frame, kind, dropped)


def _check_header(path: Path) -> None:
    """Refuse repeated column names (pandas would silently rename the second 'loss.1')."""
    import csv
    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        header = next(csv.reader(fh), [])
    names = [h.strip() for h in header]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise TunerError(f"{path}: column(s) {', '.join(dupes)} appear more than once")


def check_frame(frame: pd.DataFrame, where: str, *, need_loss: bool = True) -> pd.DataFrame:
    """Check columns and values; return the frame with numeric required columns."""
    cols = list(REQUIRED) + (["loss"] if need_loss or "loss" in frame else [])
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        raise TunerError(f"{where}: missing column(s) {', '.join(missing)} "
                         f"(need {', '.join(REQUIRED)}, loss)")
    if frame.empty:
        raise TunerError(f"{where}: no rows")
    frame = frame.copy()
    for c in cols:
        values = pd.to_numeric(frame[c], errors="coerce")
        bad = np.flatnonzero(values.isna() | ~np.isfinite(values.to_numpy(dtype=float)))
        if len(bad):
            i = bad[0]
            raise TunerError(f"{where}: row {i + 1} (line {i + 2}), field {c}: "
                             f"{frame[c].iloc[i]!r} is not a finite number")
        frame[c] = values.astype(float)

    def first(mask: np.ndarray, field: str, rule: str) -> None:
        idx = np.flatnonzero(mask)
        if len(idx):
            i = idx[0]
            raise TunerError(f"{where}: row {i + 1} (line {i + 2}), field {field}: "
                             f"{frame[field].iloc[i]:g} {rule}")

    for c in ("n_total", "n_active", "tokens") + (("loss",) if "loss" in cols else ()):
        first(frame[c].to_numpy() <= 0, c, "must be > 0")
    s = frame["sparsity"].to_numpy()
    first((s < 0) | (s >= 1), "sparsity", "must lie in [0, 1)")
    first(frame["n_active"].to_numpy() > frame["n_total"].to_numpy() * (1 + 1e-9), "n_active",
          "exceeds n_total")
    return frame


def summary_rows() -> list[dict]:
    """One row per shipped dataset: counts, ranges and whether losses are measured."""
    rows = []
    for name, entry in catalog().items():
        ds = load(name, drop_outliers=False)
        f = ds.frame
        used = load(name).frame
        rows.append({
            "dataset": name, "rows": len(f), "used": len(used),
            "n_active": f"{f.n_active.min():.3g}–{f.n_active.max():.3g}",
            "tokens": f"{f.tokens.min():.3g}–{f.tokens.max():.3g}",
            "sparsity": f"{f.sparsity.min():.3g}–{f.sparsity.max():.3g}",
            "loss": f"{f.loss.min():.3f}–{f.loss.max():.3f}",
            "losses": entry["loss"], "source": entry["source"],
        })
    return rows
