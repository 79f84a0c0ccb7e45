"""CI smoke of benchmarks/optimizers.py --quick: it runs end to end and tuner's default meets
the quality target on what it measures (Optuna rows are skipped when the bench extra is not
installed)."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_optimizers_benchmark_quick(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "optimizers.py"), "--quick",
                        "--seeds", "1", "--overhead-at", "50", "--raw",
                        str(tmp_path / "raw.json")],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [[c.strip() for c in line.strip().strip("|").split("|")]
            for line in r.stdout.splitlines() if line.startswith("| ") and line.count("|") == 11]
    default = {(row[0], row[2]): float(row[4]) for row in rows
               if row[1] == "tuner ytopt RF (default)"}
    assert set(default) == {("hoffmann x chinchilla_epoch", "50"),
                            ("hoffmann x chinchilla_epoch", "100"),
                            ("frantar x frantar_t5", "50"), ("frantar x frantar_t5", "100")}
    assert all(v <= 1.01 for (_, budget), v in default.items() if budget == "100"), default
    curve = [line for line in r.stdout.splitlines()
             if line.startswith("|") and line.strip("|").split("|")[0].strip() == "50"]
    ratio = float(curve[0].strip().strip("|").split("|")[-1])
    assert 0 < ratio < 0.5  # tuner's Bayesian step against skopt's default (measured: ~0.07)
    assert (tmp_path / "raw.json").stat().st_size > 0
