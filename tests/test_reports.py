"""compare and report draw their figures and tables from any run directories."""
import numpy as np
import pandas as pd
import pytest

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
    assert "warnings" in table.columns
    r = run_cli("report", runs[0], "--out", tmp_path / "rep")
    assert r.returncode == 0, r.stderr
    rep = tmp_path / "rep" / runs[0].name
    assert (rep / "report.png").stat().st_size > 0 and (rep / "report.svg").exists()
    md = (rep / "report.md").read_text()
    for section in ("## Law", "## What the variables mean", "## Data", "## Objective",
                    "## Optimizer", "## Coefficients", "## Warnings", "## Held-out error",
                    "## Figures", "## Reproduce", "## Checklist (Li et al. 2025"):
        assert section in md, section
    from tuner.views.reports import _sha256
    from tuner.data.datasets import resolve
    assert _sha256(resolve("frantar_t5")[1]) in md
    assert "Huber delta: 0.001" in md and "reduction: sum" in md
    assert "std. error" in md and "L = (aS*(1 - S)**bS + cS)*(1/N)**bN" in md
    html = (rep / "report.html").read_text()
    assert html.count("src='data:image/png;base64,") == 2 and "<img" in html
    assert "report.png" not in html.split("<body>")[1].replace("alt='report", "")


def test_compare_bad_dir(tmp_path):
    r = run_cli("compare", tmp_path / "nothing")
    assert r.returncode == 2 and "not a tuner run directory" in r.stderr


def test_fig7_helpers_never_divide_round_off():
    from tuner.views.reproduce import _ratio, _spread, roundoff_floor
    floor = roundoff_floor("abnar_reconstructed")
    assert floor == pytest.approx(35 * 0.5e-18)
    assert _ratio(1.2e-19, 2.2e-19, floor).startswith("not computed: below round-off")
    assert _ratio(0.001, 0.004, floor) == pytest.approx(0.25)
    assert _spread([1.2e-19], floor).startswith("<1.8e-17 (round-off)")
    assert _spread([1.0, 2.0, 3.0]) == "2 [1–3]"


def test_fig7_small_end_to_end(tmp_path, monkeypatch):
    """Seeds, ytopt as published beside tuner's method, evaluations made, round-off on a
    recovery row, warnings column and caption, on one small panel."""
    from tuner.views import reproduce
    monkeypatch.setattr(reproduce, "PANELS", [("frantar", "frantar_t5")])
    monkeypatch.setattr(reproduce, "RECOVERY", ("hoffmann", "hoffmann_table3"))
    monkeypatch.setattr(reproduce, "REFERENCE_EVALS", 40)
    out = reproduce.fig7(tmp_path, evals=12, seeds=2, faithful_evals=6, quiet=True)
    fit_row, rec = out["rows"]
    assert fit_row["ytopt_faithful_evals"] == "6" and fit_row["ytopt_evals"] == "12 [12–12]"
    assert "[" in fit_row["random"] and fit_row["warnings"]
    assert "ytopt_faithful" not in rec and rec["published"].endswith("(round-off)")
    assert isinstance(rec["ytopt_vs_published"], str)
    assert "ran 1 seed(s) at 6 evaluations, not 2 x 12" in out["caption"]
    assert (tmp_path / "fig7.png").stat().st_size > 0 and (tmp_path / "fig7_warnings.md").exists()
    # The fits are the tasks of one ensemble: two at a time, the same runs as one at a time.
    two = reproduce.fig7(tmp_path / "two", evals=12, seeds=2, faithful_evals=6, quiet=True,
                         workers=2, comms="local")
    runs = sorted(p.relative_to(tmp_path) for p in (tmp_path / "runs").rglob("results.csv"))
    assert len(runs) == 15  # 2 seeds x 3 searchers and a reference per panel, 1 faithful
    for r in runs:
        one_run = pd.read_csv(tmp_path / r)
        two_run = pd.read_csv(tmp_path / "two" / r)
        cols = [c for c in one_run if c not in ("elapsed", "timestamp", "worker", "crc")]
        pd.testing.assert_frame_equal(one_run[cols], two_run[cols])
    assert two["rows"] == out["rows"] or all(
        a[k] == b[k] for a, b in zip(two["rows"], out["rows"]) for k in a
        if not k.endswith("_seconds"))


def test_fig7_draws_a_converged_run_flat_to_its_budget_with_a_mark(tmp_path, monkeypatch):
    import tuner.views.reproduce as reproduce
    from tuner.run.fit import FitConfig, fit
    from tuner.views.reports import RunTrace
    s = fit(FitConfig("hoffmann", "chinchilla_epoch", evals=300, seed=11), tmp_path / "r",
            quiet=True)
    assert s["stopped"] == f"converged after {s['evals']} of 300 evaluations (--evals is a ceiling)"
    assert s["evals"] < 300
    trace = RunTrace.read(tmp_path / "r")
    panel = {"runs": {"ytopt": [trace]}, "published": 0.0041, "reference": trace.best,
             "floor": 1e-12, "title": "hoffmann"}
    drawn = []
    monkeypatch.setattr(reproduce, "save_figure", lambda fig, out, dpi: drawn.append(fig))
    reproduce.figure7([panel], tmp_path / "fig")
    lines = {ln.get_label(): ln for ln in drawn[0].axes[0].get_lines()}
    curve = next(ln for k, ln in lines.items() if k.startswith("tuner ytopt (default): median"))
    x, y = curve.get_data()
    assert x[-1] == 300 and y[-1] == trace.best and np.all(y[s["evals"] - 1:] == trace.best)
    mark = next(ln for k, ln in lines.items() if "stopped on convergence" in k)
    assert list(mark.get_xdata()) == [s["evals"]] and list(mark.get_ydata()) == [trace.best]


def test_report_and_compare_of_a_run_fitted_with_a_law_file(tmp_path):
    import json

    from tuner.cli import main
    law = tmp_path / "my_law.json"
    law.write_text(json.dumps({"name": "chinchilla+interaction",
                               "formula": "e + a/N**alpha + b/D**beta + c/(N**alpha*D**beta)"}))
    assert main(["fit", "--law", str(law), "--data", "chinchilla_epoch", "--evals", "12",
                 "--optimizer", "random", "--run-dir", str(tmp_path / "r"), "--quiet"]) == 0
    assert main(["report", str(tmp_path / "r"), "--out", str(tmp_path / "o")]) == 0
    assert "chinchilla+interaction" in (tmp_path / "o" / "r" / "report.md").read_text()
    assert main(["compare", str(tmp_path / "r"), "--out", str(tmp_path / "c")]) == 0
    assert "chinchilla+interaction" in (tmp_path / "c" / "compare.md").read_text()
