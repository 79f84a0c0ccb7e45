"""compare and report draw their figures and tables from any run directories."""
import pandas as pd

from conftest import run_cli


def test_compare_and_report(tmp_path):
    runs = []
    for opt in ("random", "grid", "ytopt"):
        out = tmp_path / opt
        r = run_cli("fit", "--law", "frantar", "--data", "frantar_t5", "--optimizer", opt,
                    "--evals", 12, "--run-dir", out, "--quiet",
                    *(["--initial-points", 4] if opt == "ytopt" else []))
        assert r.returncode == 0, r.stderr
        runs.append(out)
    r = run_cli("compare", *runs, "--out", tmp_path / "cmp", "--x", "time")
    assert r.returncode == 0, r.stderr
    for ext in ("png", "svg", "md", "csv"):
        assert (tmp_path / "cmp" / f"compare.{ext}").stat().st_size > 0
    table = pd.read_csv(tmp_path / "cmp" / "compare.csv")
    assert sorted(table.optimizer) == ["grid", "random", "ytopt"]
    r = run_cli("report", runs[0], "--out", tmp_path / "rep")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "rep" / "random.png").stat().st_size > 0
    assert (tmp_path / "rep" / "random.svg").exists()


def test_compare_bad_dir(tmp_path):
    r = run_cli("compare", tmp_path / "nothing")
    assert r.returncode == 2 and "not a tuner run directory" in r.stderr
