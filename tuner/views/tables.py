"""Tables as Markdown and CSV from lists of row dicts."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def columns(rows: Sequence[dict]) -> list[str]:
    """Every key of every row, in first-seen order (rows may differ in their keys)."""
    return list(dict.fromkeys(k for r in rows for k in r))


def markdown(rows: Sequence[dict]) -> str:
    if not rows:
        return "(no rows)"
    cols = columns(rows)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_cell(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def write_tables(rows: Sequence[dict], stem: Path) -> None:
    """Write ``stem.md`` and ``stem.csv``."""
    stem.with_suffix(".md").write_text(markdown(rows) + "\n")
    with open(stem.with_suffix(".csv"), "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns(rows))
        w.writeheader()
        w.writerows(rows)
