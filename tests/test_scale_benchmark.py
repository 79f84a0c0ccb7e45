"""Smoke of benchmarks/scale.py --target-only on a small table: it runs end to end and prints
issue 17's target 4 verdicts (the timings themselves are the benchmark's business)."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_scale_benchmark_target_section_runs(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "scale.py"), "--target-only",
                        "--rows", "3000"], capture_output=True, text=True, timeout=600,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    verdicts = [line for line in r.stdout.splitlines()
                if line.startswith("| ") and line.rstrip().endswith(("| yes |", "| NO |"))]
    assert [v.split("|")[1].strip() for v in verdicts] == [
        "evaluation with linear solve", "default 200-evaluation fit", "fit memory"]
    rows = [[c.strip() for c in line.strip().strip("|").split("|")]
            for line in r.stdout.splitlines() if line.startswith("|")]
    head = next(i for i, row in enumerate(rows) if row[0] == "evaluations used")
    fit = dict(zip(rows[head], rows[head + 2]))  # the row after the alignment line
    assert fit["budget"] == "200" and 1 <= int(fit["evaluations used"]) <= 200
