"""The run directory: config.json, an append-only results.csv, and summary.json.

Every evaluation is one CSV line, appended under an exclusive file lock (``filelock``),
written straight to the OS by whichever process ran it (synced to disk at the run's end), so
a killed run loses nothing that finished and concurrent workers never interleave lines. Each line ends with a CRC-32 of the rest of
it (log version 2), so a torn or edited line is recognised wherever it sits and is never
taken for a result: it is ignored, reported once, and its evaluation re-run under a new
eval_id. Floats are written with ``repr`` so a resumed run sees bit-identical coefficients.
config.json, summary.json and the header of results.csv are written atomically (temporary
file + rename): a reader sees the old file or the new one, never half of one.
"""
from __future__ import annotations

import csv
import errno
import io
import json
import math
import os
import re
import shutil
import time
import zlib
from pathlib import Path
from typing import Iterable, Mapping

import pandas as pd
from filelock import FileLock, Timeout

from tuner.errors import TunerError

LOG_VERSION = 2
# The fields of summary.json that readers rely on, and the types they must have.
SUMMARY_FIELDS = {"segments": list, "wall_seconds": (int, float), "evals": int,
                  "budget": int, "best_params": dict, "best_objective": (int, float),
                  "law": str, "stopped": (str, type(None)), "warnings": list}
FIXED_COLUMNS = ("eval_id",)
TAIL_COLUMNS = ("objective", "status", "elapsed", "timestamp", "worker", "error")
CHECK_COLUMN = "crc"  # log version 2: CRC-32 of the line before its last comma
STATUSES = ("ok", "failed")
_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}")


def columns(param_names: Iterable[str]) -> list[str]:
    """The results.csv header of a run over ``param_names``."""
    return [*FIXED_COLUMNS, *param_names, *TAIL_COLUMNS, CHECK_COLUMN]


def os_error(path: Path | str, exc: OSError, doing: str) -> TunerError:
    """One line for an OS failure on a run file (read-only, full disk, missing parent...)."""
    hint = ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        hint = "; free some space, then 'tuner resume' continues the run"
    return TunerError(f"{path}: cannot {doing} ({exc.strerror or exc}){hint}")


class RunDir:
    """The one reader/writer of a run directory."""

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

    @property
    def lock_path(self) -> Path:
        return self.path / ".lock"

    @classmethod
    def create(cls, path: str | Path, config: Mapping, param_names: list[str]) -> "RunDir":
        """Make a new run directory; refuse one that exists (only ``resume`` reuses one).

        The directory is built under a temporary name and renamed into place, so it appears
        complete (config.json and the header of results.csv) or not at all; parents this
        call created are removed again if it fails.
        """
        run = cls(path)
        if run.path.exists() or run.path.is_symlink():
            raise TunerError(f"{run.path}: run directory exists; use 'tuner resume {run.path}' "
                             "or choose another --run-dir")
        made = _make_parents(run.path.parent)
        tmp = run.path.parent / f".{run.path.name}.tmp{os.getpid()}"
        try:
            tmp.mkdir()
            write_json(tmp / "config.json", {"log_version": LOG_VERSION, **config})
            buf = io.StringIO()
            csv.writer(buf, lineterminator="\n").writerow(columns(param_names))
            _write_atomic(tmp / "results.csv", buf.getvalue())
            os.rename(tmp, run.path)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            for d in reversed(made):
                try:
                    d.rmdir()
                except OSError:
                    pass
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                raise TunerError(f"{run.path}: run directory exists; use 'tuner resume "
                                 f"{run.path}' or choose another --run-dir") from None
            raise os_error(run.path, exc, "create the run directory") from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return run

    @classmethod
    def open(cls, path: str | Path) -> "RunDir":
        run = cls(path)
        if not run.config_path.is_file() or not run.results_path.is_file():
            raise TunerError(f"{run.path}: not a tuner run directory (no config.json or "
                             "results.csv)")
        return run

    def lock(self) -> FileLock:
        """Hold the run exclusively (fit, resume); TunerError if another process holds it.

        Taken before anything in the directory is changed; released by ``release()`` or when
        the process ends, however it ends.
        """
        lock = FileLock(str(self.lock_path), timeout=0, is_singleton=False,
                        thread_local=False)
        try:
            lock.acquire()
        except Timeout:
            raise TunerError(f"{self.path}: another tuner process is using this run "
                             "directory") from None
        except OSError as exc:
            raise os_error(self.lock_path, exc, "lock the run directory") from None
        return lock

    def config(self) -> dict:
        try:
            data = json.loads(self.config_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise TunerError(f"{self.config_path}: unreadable ({exc})") from None
        except OSError as exc:
            raise os_error(self.config_path, exc, "read") from None
        if not isinstance(data, dict) or not isinstance(data.get("fit"), dict):
            raise TunerError(f"{self.config_path}: not a tuner run configuration (no 'fit' "
                             "object)")
        version = data.get("log_version", 1)
        if isinstance(version, bool) or not isinstance(version, int) or version > LOG_VERSION:
            raise TunerError(f"{self.config_path}: log_version {version!r} is not one this "
                             f"tuner reads (1 to {LOG_VERSION})")
        return data

    def summary(self) -> dict:
        if not self.summary_path.is_file():
            raise TunerError(f"{self.path}: no summary.json (run unfinished? "
                             f"'tuner resume {self.path}')")
        try:
            data = json.loads(self.summary_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise self._corrupt(f"unreadable ({exc})") from None
        except OSError as exc:
            raise os_error(self.summary_path, exc, "read") from None
        if not isinstance(data, dict):
            raise self._corrupt("not a JSON object")
        for key, kinds in SUMMARY_FIELDS.items():
            if key in data and not isinstance(data[key], kinds):
                raise self._corrupt(f"field {key!r} is a {type(data[key]).__name__}")
        if "segments" in data and not all(isinstance(g, dict) for g in data["segments"]):
            raise self._corrupt("field 'segments' holds something other than objects")
        best = data.get("best_params") or {}
        bad = [k for k, v in best.items()
               if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)]
        if bad:
            raise self._corrupt(f"best_params {bad[0]!r} is not a finite number")
        return data

    def _corrupt(self, why: str) -> TunerError:
        return TunerError(f"{self.summary_path}: {why}; it is made from results.csv: remove "
                          f"it and 'tuner resume {self.path}' writes it again")

    def header(self) -> list[str]:
        try:
            with open(self.results_path, newline="") as fh:
                first = fh.readline()
        except (OSError, UnicodeDecodeError) as exc:
            raise TunerError(f"{self.results_path}: unreadable ({exc})") from None
        if not first.endswith("\n"):
            raise TunerError(f"{self.results_path}: no complete header line")
        return next(csv.reader([first]))

    def check_header(self, param_names: Iterable[str]) -> list[str]:
        """The header, if it is this run's (current or version-1 layout); else TunerError."""
        header = self.header()
        expected = columns(param_names)
        if header not in (expected, expected[:-1]):
            raise TunerError(f"{self.results_path}: header does not match this run "
                             f"(expected {','.join(expected)}; found {','.join(header)})")
        return header

    def check_writable(self) -> None:
        """Fail now, with one line, if a file the run writes, or the directory, cannot be."""
        targets = [(self.results_path, os.W_OK), (self.path, os.W_OK | os.X_OK),
                   (self.config_path, os.W_OK)]
        if self.summary_path.exists():
            targets.append((self.summary_path, os.W_OK))
        for target, mode in targets:
            if not os.access(target, mode):
                raise TunerError(f"{target}: not writable (read-only file or file system); "
                                 "the run needs to write there")
        workers = self.path / ".workers"
        if workers.exists() and not workers.is_dir():
            raise TunerError(f"{workers}: is a file; the run keeps its workers' marks in that "
                             "directory: remove the file")

    def results(self) -> pd.DataFrame:
        return read_results(self.results_path)


def _make_parents(path: Path) -> list[Path]:
    """mkdir -p that returns the directories it created (to undo on failure)."""
    missing = []
    p = path
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    if p.exists() and not p.is_dir():
        raise TunerError(f"{p}: is a file, so no run directory can be created beneath it")
    made = []
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            for m in reversed(made):
                try:
                    m.rmdir()
                except OSError:
                    pass
            raise os_error(d, exc, "create the run directory") from None
        made.append(d)
    return made


def format_value(v: object) -> str:
    if isinstance(v, float):
        return repr(v)
    return "" if v is None else str(v)


def encode_row(header: list[str], row: Mapping[str, object]) -> bytes:
    """One results.csv line; with a version-2 header it ends with the CRC of the rest."""
    buf = io.StringIO()
    check = header[-1] == CHECK_COLUMN
    fields = [format_value(row.get(c)) for c in (header[:-1] if check else header)]
    csv.writer(buf, lineterminator="").writerow(fields)
    body = buf.getvalue()
    if check:
        body += f",{zlib.crc32(body.encode()):08x}"
    return (body + "\n").encode()


def append_row(path: Path, header: list[str], row: Mapping[str, object]) -> None:
    """Append one record atomically with respect to other writers, written straight to the
    OS (no buffer in this process), so a killed run loses nothing finished. No fsync per row:
    it guards only against the machine itself crashing and cost ~5 ms an evaluation here
    (benchmarks/ensemble.py); the run's end syncs the file (``sync``)."""
    data = encode_row(header, row)
    with FileLock(str(path) + ".lock", is_singleton=False, thread_local=False):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        try:
            # A writer killed mid-line leaves a torn tail; start on a fresh line after it.
            size = os.fstat(fd).st_size
            if size:
                with open(path, "rb") as fh:
                    fh.seek(size - 1)
                    if fh.read(1) != b"\n":
                        data = b"\n" + data
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)


def sync(path: Path) -> None:
    """Flush a file to the disk (at the end of a run: the rows are then safe even from a
    crash of the machine)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _parse_line(line: bytes, header: list[str]) -> dict | None:
    """The typed record of one line, or None if it is torn, edited or unparseable."""
    try:
        text = line.decode()
    except UnicodeDecodeError:
        return None
    if header[-1] == CHECK_COLUMN:
        body, _, crc = text.rpartition(",")
        if not body or crc != f"{zlib.crc32(body.encode()):08x}":
            return None
        names = header[:-1]
    else:
        body, names = text, header
    try:
        fields = next(csv.reader([body]))
    except (csv.Error, StopIteration):
        return None
    if len(fields) != len(names):
        return None
    rec: dict = dict(zip(names, fields))
    try:
        rec["eval_id"] = int(rec["eval_id"])
        for c in names[1:-len(TAIL_COLUMNS)]:
            rec[c] = float(rec[c])
        rec["objective"] = float(rec["objective"])
        rec["elapsed"] = float(rec["elapsed"])
        rec["worker"] = int(rec["worker"]) if rec["worker"] else math.nan
    except ValueError:
        return None
    if (rec["eval_id"] < 0 or rec["status"] not in STATUSES
            or not _TIMESTAMP.fullmatch(rec["timestamp"]) or math.isnan(rec["objective"])):
        return None
    return rec


def read_results(path: Path, header: list[str] | None = None) -> pd.DataFrame:
    """All sound records, sorted by eval_id.

    A torn, edited or unparseable line, or a second record with an eval_id already seen, is
    skipped; ``frame.attrs["warnings"]`` says so in one line, and ``frame.attrs["last_id"]``
    is the largest eval_id the file mentions (skipped lines included), so new evaluations
    never reuse one.
    """
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise os_error(path, exc, "read") from None
    lines = raw.split(b"\n")
    if len(lines) < 2:
        raise TunerError(f"{path}: empty results file (no complete header)")
    try:
        found = next(csv.reader([lines[0].rstrip(b"\r").decode()]))
    except (UnicodeDecodeError, csv.Error, StopIteration):
        raise TunerError(f"{path}: unreadable header") from None
    if header is not None and found != header:
        raise TunerError(f"{path}: header does not match this run")
    header = found
    missing = [c for c in (*FIXED_COLUMNS, *TAIL_COLUMNS) if c not in header]
    if missing or len(set(header)) != len(header):
        raise TunerError(f"{path}: not a tuner results header ({','.join(header)})")
    body, tail = lines[1:-1], lines[-1]  # tail: text after the last newline
    records, bad, dupes, seen, last_id = [], [], [], set(), -1
    for n, line in enumerate(body + ([tail] if tail else []), start=2):
        # Version-1 logs were written with \r\n line ends. A line is judged by its content
        # alone, wherever it sits: an appender puts a newline after a final line that lacks
        # one, so a verdict that depended on position would change after the next append.
        line = line.rstrip(b"\r")
        rec = _parse_line(line, header)
        if rec is None:
            if line.strip():
                bad.append(n)
                first = line.split(b",", 1)[0]
                if first.isdigit():
                    last_id = max(last_id, int(first))
            continue
        last_id = max(last_id, rec["eval_id"])
        if rec["eval_id"] in seen:
            dupes.append(n)
            continue
        seen.add(rec["eval_id"])
        records.append(rec)
    cols = [c for c in header if c != CHECK_COLUMN]
    frame = pd.DataFrame.from_records(records, columns=cols)
    if len(frame):
        frame = frame.sort_values("eval_id").reset_index(drop=True)
    warnings = []
    if bad:
        warnings.append(f"{path}: {len(bad)} torn or unparseable line(s) ignored (line "
                        f"{', '.join(map(str, bad[:5]))}{'...' if len(bad) > 5 else ''}); "
                        "their evaluations are re-run under new eval_ids")
    if dupes:
        warnings.append(f"{path}: {len(dupes)} line(s) repeat an eval_id and were ignored "
                        f"(line {', '.join(map(str, dupes[:5]))})")
    frame.attrs["warnings"] = warnings
    frame.attrs["last_id"] = last_id
    return frame


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise


def write_json(path: Path, data: Mapping) -> None:
    """Write JSON atomically (temp file + fsync + rename), so a reader never sees half a file
    and a failed write (full disk) leaves the old file as it was."""
    text = json.dumps(data, indent=2, default=_jsonable) + "\n"
    try:
        _write_atomic(Path(path), text)
    except OSError as exc:
        raise os_error(path, exc, "write") from None


def _jsonable(o):
    try:
        return float(o)
    except (TypeError, ValueError):
        return str(o)


def timestamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime()) + f".{int(time.time() * 1000) % 1000:03d}"
