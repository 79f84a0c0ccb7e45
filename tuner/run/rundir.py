"""The run directory: config.json, an append-only results.csv, and summary.json.

Every evaluation is one CSV line, appended under an exclusive file lock, flushed and fsynced
by whichever process ran it, so a killed run loses nothing that finished and concurrent
workers never interleave lines. A torn last line (a writer killed mid-write) is skipped when
reading. Floats are written with ``repr`` so a resumed run sees bit-identical coefficients.
"""
from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import time
from pathlib import Path
from typing import Iterable, Mapping

import pandas as pd

from tuner.errors import TunerError

LOG_VERSION = 1
FIXED_COLUMNS = ("eval_id",)
TAIL_COLUMNS = ("objective", "status", "elapsed", "timestamp", "worker", "error")


def columns(param_names: Iterable[str]) -> list[str]:
    return [*FIXED_COLUMNS, *param_names, *TAIL_COLUMNS]


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path).resolve()

    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def results_path(self) -> Path:
        return self.path / "results.csv"

    @property
    def summary_path(self) -> Path:
        return self.path / "summary.json"

    @classmethod
    def create(cls, path: str | Path, config: Mapping, param_names: list[str]) -> "RunDir":
        """Make a new run directory; refuse one that exists (only ``resume`` reuses one)."""
        run = cls(path)
        run.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            run.path.mkdir()
        except FileExistsError:
            raise TunerError(f"{run.path}: run directory exists; use 'tuner resume {run.path}' "
                             "or choose another --run-dir") from None
        write_json(run.config_path, {"log_version": LOG_VERSION, **config})
        with open(run.results_path, "w", newline="") as fh:
            csv.writer(fh).writerow(columns(param_names))
            fh.flush()
            os.fsync(fh.fileno())
        return run

    @classmethod
    def open(cls, path: str | Path) -> "RunDir":
        run = cls(path)
        if not run.config_path.is_file() or not run.results_path.is_file():
            raise TunerError(f"{run.path}: not a tuner run directory (no config.json or "
                             "results.csv)")
        return run

    def config(self) -> dict:
        try:
            return json.loads(self.config_path.read_text())
        except json.JSONDecodeError as exc:
            raise TunerError(f"{self.config_path}: unreadable ({exc})") from None

    def summary(self) -> dict:
        if not self.summary_path.is_file():
            raise TunerError(f"{self.path}: no summary.json (run unfinished? "
                             f"'tuner resume {self.path}')")
        return json.loads(self.summary_path.read_text())

    def header(self) -> list[str]:
        with open(self.results_path, newline="") as fh:
            return next(csv.reader(fh))

    def results(self) -> pd.DataFrame:
        return read_results(self.results_path)


def format_value(v: object) -> str:
    if isinstance(v, float):
        return repr(v)
    return "" if v is None else str(v)


def append_row(path: Path, header: list[str], row: Mapping[str, object]) -> None:
    """Append one record atomically with respect to other writers, then flush and fsync."""
    buf = io.StringIO()
    csv.writer(buf).writerow([format_value(row.get(c)) for c in header])
    data = buf.getvalue().encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        # A writer killed mid-line leaves a torn tail; start on a fresh line after it.
        size = os.fstat(fd).st_size
        if size:
            with open(path, "rb") as fh:
                fh.seek(size - 1)
                if fh.read(1) != b"\n":
                    data = b"\n" + data
        os.write(fd, data)
        os.fsync(fd)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def read_results(path: Path) -> pd.DataFrame:
    """All complete records; a torn line (wrong field count or unparsable) is skipped."""
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        raise TunerError(f"{path}: empty results file (no header)")
    header, body = rows[0], rows[1:]
    good = [r for r in body if len(r) == len(header)]
    frame = pd.DataFrame(good, columns=header)
    for c in frame.columns:
        if c not in ("status", "timestamp", "error"):
            frame[c] = pd.to_numeric(frame[c], errors="coerce")
    frame = frame.dropna(subset=["eval_id", "objective"])
    frame["eval_id"] = frame["eval_id"].astype(int)
    return frame.drop_duplicates("eval_id", keep="first").sort_values("eval_id").reset_index(
        drop=True)


def write_json(path: Path, data: Mapping) -> None:
    """Write JSON atomically (temp file + rename), so a reader never sees half a file."""
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, default=_jsonable) + "\n")
    os.replace(tmp, path)


def _jsonable(o):
    try:
        return float(o)
    except (TypeError, ValueError):
        return str(o)


def timestamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime()) + f".{int(time.time() * 1000) % 1000:03d}"
