"""Tables as Markdown and CSV, written by pandas (Markdown through ``tabulate``)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence, Union

import pandas as pd

Rows = Union[Sequence[dict], pd.DataFrame]


def frame(rows: Rows) -> pd.DataFrame:
    """A DataFrame of ``rows``: every key of every row, in first-seen order."""
    if isinstance(rows, pd.DataFrame):
        return rows
    cols = list(dict.fromkeys(k for r in rows for k in r))
    return pd.DataFrame(list(rows), columns=cols)


def columns(rows: Rows) -> list[str]:
    """Every key of every row, in first-seen order (rows may differ in their keys)."""
    return [str(c) for c in frame(rows).columns]


def markdown(rows: Rows) -> str:
    """A GitHub Markdown table; floats with 4 significant digits, missing cells empty."""
    df = frame(rows)
    if df.empty:
        return "(no rows)"
    # Missing cells (None, or NaN where pandas made a column numeric) are left empty.
    df = df.astype(object).where(df.notna(), None)
    return df.to_markdown(index=False, tablefmt="pipe", floatfmt=".4g", missingval="")


def write_tables(rows: Rows, stem: Path) -> list[Path]:
    """Write ``stem.md`` and ``stem.csv`` (full precision); return both paths."""
    stem = Path(stem)
    md, csv = stem.with_suffix(".md"), stem.with_suffix(".csv")
    md.write_text(markdown(rows) + "\n")
    frame(rows).to_csv(csv, index=False)
    return [md, csv]
