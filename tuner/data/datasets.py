"""Datasets: load a shipped dataset by name or a user's CSV by path, check it, derive columns.

A dataset is one row per trained model. tuner reads ``n_active`` (parameters used per token),
``tokens`` and ``loss``, and ``n_total`` and ``sparsity`` where the runs are sparse: without
``n_total`` the runs are dense (n_total = n_active), without ``sparsity`` it is
1 - n_active/n_total. ``columns`` maps these names to a CSV's own (``{"n_active": "params"}``).
Loss may be absent: only the ``paper`` objective works then. Every check names the file, the
row and the field it failed on.
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

REQUIRED = ("n_total", "n_active", "tokens", "sparsity")  # the columns a Dataset always has
NAMES = (*REQUIRED, "loss")
GROUP_HINT = (2, 20)  # a text column with this many distinct values may be a grouping
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

    def which(self, mask: np.ndarray) -> str:
        """The first run where ``mask`` holds, for a message ("run 7", in the file's order
        among the runs kept)."""
        return f"run {int(np.flatnonzero(mask)[0]) + 1}"

    def subset(self, mask: np.ndarray, suffix: str) -> "Dataset":
        return Dataset(f"{self.name}[{suffix}]", self.path,
                       self.frame[np.asarray(mask)].reset_index(drop=True), self.loss_kind)

    def ranges(self) -> dict[str, tuple[float, float]]:
        """The data's range of N_active, N_total, D, S and C = 6 N_active D."""
        f = self.frame
        c = 6.0 * f["n_active"].to_numpy(float) * f["tokens"].to_numpy(float)
        out = {k: (float(f[k].min()), float(f[k].max()))
               for k in ("n_active", "n_total", "tokens", "sparsity")}
        out["compute"] = (float(np.min(c)), float(np.max(c)))
        return out

    def groups(self, column: str) -> tuple[list[str], np.ndarray]:
        """(labels, code per run) of ``column``; TunerError if it cannot group the runs."""
        if column not in self.frame:
            raise TunerError(f"--group: {self.path} has no column {column!r} (columns: "
                             f"{', '.join(map(str, self.frame.columns))})")
        missing = self.frame[column].isna().to_numpy()
        if missing.any():
            raise TunerError(f"--group {column}: {self.path}: {self.which(missing)} has no "
                             "value (every run needs its group)")
        values = self.frame[column].astype(str)
        labels = sorted(values.unique())
        if len(labels) < 2:
            raise TunerError(f"--group {column}: one value ({labels[0]!r}) in every run; "
                             "nothing to group")
        if 2 * len(labels) > len(values):
            raise TunerError(f"--group {column}: {len(labels)} groups for {len(values)} runs "
                             "(each group needs at least 2 runs)")
        codes = values.map({v: i for i, v in enumerate(labels)}).to_numpy()
        return labels, codes

    def group_hints(self, group: str | None) -> list[str]:
        """Warnings for text columns that look like groupings pooled into one law."""
        if group is not None:
            return []
        out = []
        for c in self.frame.columns:
            col = self.frame[c]
            if c in NAMES or c in ("run_id", "outlier") or pd.api.types.is_numeric_dtype(col) \
                    or pd.api.types.is_bool_dtype(col):
                continue
            k = col.astype(str).nunique()
            if GROUP_HINT[0] <= k <= GROUP_HINT[1] and k < len(col):
                out.append(f"column {c!r} takes {k} values: runs from different groups are "
                           f"pooled into one law; fit them jointly with --group {c}")
        return out


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


def resolve_data_path(name_or_path: str) -> str:
    """A shipped dataset's name as it is; a CSV path made absolute (workers run elsewhere)."""
    name, path, kind = resolve(name_or_path)
    return name_or_path if name_or_path in catalog() else str(path)


def file_hash(name_or_path: str) -> str:
    """sha256 of the dataset's file."""
    import hashlib
    return hashlib.sha256(resolve(name_or_path)[1].read_bytes()).hexdigest()


def parse_columns(text: str | None) -> dict[str, str] | None:
    """``"n_active=params,tokens=toks"`` -> mapping; TunerError naming the bad item."""
    if not text:
        return None
    out: dict[str, str] = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        key, sep, val = item.partition("=")
        key, val = key.strip(), val.strip()
        if not sep or not key or not val:
            raise TunerError(f"--columns: {item!r} is not of the form NAME=COLUMN")
        if key not in NAMES:
            raise TunerError(f"--columns: {key!r} is not one of tuner's names "
                             f"({', '.join(NAMES)})")
        if key in out:
            raise TunerError(f"--columns: {key!r} is mapped twice")
        out[key] = val
    return out


def _read_csv(path: Path) -> pd.DataFrame:
    import csv
    try:
        with open(path, newline="") as fh:
            header = next(csv.reader(fh), [])
    except (OSError, UnicodeDecodeError) as exc:
        raise TunerError(f"{path}: not a readable CSV ({exc})") from None
    seen = set()
    for c in header:
        if c in seen:
            raise TunerError(f"{path}: column {c!r} appears more than once in the header")
        seen.add(c)
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TunerError(f"{path}: not a readable CSV ({msg})") from None


def apply_columns(frame: pd.DataFrame, columns: dict[str, str] | None, where: str
                  ) -> pd.DataFrame:
    """Rename the mapped CSV columns to tuner's names and derive the dense defaults."""
    if columns:
        missing = [c for c in columns.values() if c not in frame.columns]
        if missing:
            raise TunerError(f"--columns: {where} has no column {missing[0]!r} (columns: "
                             f"{', '.join(map(str, frame.columns))})")
        # a CSV column already called like a tuner name that is mapped elsewhere steps aside
        clash = {n: f"{n} (unmapped)" for n in columns if n in frame.columns
                 and columns[n] != n}
        frame = frame.rename(columns=clash)
        frame = frame.rename(columns={v: k for k, v in columns.items()})
        frame = frame.loc[:, ~frame.columns.duplicated()]
    frame = frame.copy()
    if "n_active" in frame and "n_total" not in frame:
        frame["n_total"] = frame["n_active"]
    if "n_active" in frame and "n_total" in frame and "sparsity" not in frame:
        na = pd.to_numeric(frame["n_active"], errors="coerce")
        nt = pd.to_numeric(frame["n_total"], errors="coerce")
        frame["sparsity"] = 1.0 - na / nt
    return frame


def load(name_or_path: str, *, drop_outliers: bool = True, need_loss: bool = True,
         columns: dict[str, str] | None = None) -> Dataset:
    """Load and check a dataset. Rows flagged ``outlier`` are dropped unless told otherwise."""
    name, path, kind = resolve(name_or_path)
    frame = apply_columns(_read_csv(path), columns, str(path))
    frame = check_frame(frame, str(path), need_loss=need_loss, mapped=bool(columns))
    dropped = 0
    if "outlier" in frame:
        flags = frame["outlier"].astype(str).str.strip().str.lower()
        odd = ~flags.isin(["true", "false", "1", "0", "1.0", "0.0", "nan", "none", ""])
        if odd.any():
            i = int(np.flatnonzero(odd.to_numpy())[0])
            raise TunerError(f"{path}: row {i + 1} (line {i + 2}), field outlier: "
                             f"{frame['outlier'].iloc[i]!r} is not true/false (or 1/0)")
    if drop_outliers and "outlier" in frame:
        keep = ~frame["outlier"].astype(str).str.lower().isin(["true", "1", "1.0"])
        dropped = int((~keep).sum())
        frame = frame[keep].reset_index(drop=True)
    if "loss" not in frame:
        kind = "none"
    return Dataset(name, str(path), frame, kind, dropped)


def check_frame(frame: pd.DataFrame, where: str, *, need_loss: bool = True,
                mapped: bool = False) -> pd.DataFrame:
    """Check columns and values; return the frame with numeric required columns."""
    cols = list(REQUIRED) + (["loss"] if need_loss or "loss" in frame else [])
    missing = [c for c in ("n_active", "tokens", *(["loss"] if need_loss else []))
               if c not in frame.columns]
    if missing:
        raise TunerError(f"{where}: missing column(s) {', '.join(missing)} (tuner needs "
                         "n_active, tokens, loss; map your own with --columns "
                         "n_active=COLUMN,tokens=COLUMN,loss=COLUMN)")
    if frame.empty:
        raise TunerError(f"{where}: no rows")
    frame = frame.copy()
    # Columns the file gave come first: a bad n_active must not be reported as the n_total
    # or sparsity derived from it.
    order = ["n_active", "tokens", *(["loss"] if "loss" in cols else []), "n_total", "sparsity"]
    for c in order:
        values = pd.to_numeric(frame[c], errors="coerce")
        bad = np.flatnonzero(values.isna() | ~np.isfinite(values.to_numpy(dtype=float)))
        if len(bad):
            i = bad[0]
            raw = frame[c].iloc[i]
            shown = repr(raw) if isinstance(raw, str) else f"{float(raw):g}"
            raise TunerError(f"{where}: row {i + 1} (line {i + 2}), field {c}: "
                             f"{shown} is not a finite number")
        frame[c] = values.astype(float)

    def first(mask: np.ndarray, field: str, rule: str) -> None:
        idx = np.flatnonzero(mask)
        if len(idx):
            i = idx[0]
            raise TunerError(f"{where}: row {i + 1} (line {i + 2}), field {field}: "
                             f"{frame[field].iloc[i]:g} {rule}")

    for c in ("n_active", "tokens", *(["loss"] if "loss" in cols else []), "n_total"):
        first(frame[c].to_numpy() <= 0, c, "must be > 0")
    first(frame["n_active"].to_numpy() > frame["n_total"].to_numpy() * (1 + 1e-9), "n_active",
          "exceeds n_total")
    s = frame["sparsity"].to_numpy()
    first((s < 0) | (s >= 1), "sparsity", "must lie in [0, 1)")
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
