"""Compute-optimal allocation (tuner.allocate), planning checks and the allocate/predict CLI."""
import json
import math

import numpy as np
import pytest

from tuner.analysis.allocate import hoffmann_closed_form, loss_at, optimal, optimal_sparsity
from tuner.errors import TunerError
from tuner.laws import LAWS
from tuner.analysis.planning import allocation_rows, bootstrap_sets, predict_one
from tuner.laws.spaces import published

TABLE2_C = 5.76e23  # Chinchilla's budget (Hoffmann et al. Table II / Table 3)


def rel(a, b):
    return abs(a - b) / abs(b)


def test_hoffmann_closed_form_is_the_isoflop_minimum():
    p = published("hoffmann")
    n, d = hoffmann_closed_form(p, TABLE2_C)
    assert rel(6 * n * d, TABLE2_C) < 1e-12
    # Stationary point of L(N, C/6N): alpha a N^-alpha = beta b D^-beta.
    assert rel(p["alpha"] * p["a"] * n ** -p["alpha"], p["beta"] * p["b"] * d ** -p["beta"]) < 1e-9
    a = optimal("hoffmann", p, TABLE2_C)
    assert a.method == "closed form"
    assert rel(a.n_active, n) < 1e-6 and rel(a.tokens, d) < 1e-6
    # Published Eq 2 puts Chinchilla's budget at a ~30B-parameter, ~3T-token model.
    assert 2e10 < a.n_active < 5e10 and 2e12 < a.tokens < 4e12


@pytest.mark.parametrize("compute", [1e18, 1e20, TABLE2_C, 1e26])
def test_generic_search_matches_closed_form(compute):
    p = published("hoffmann")
    closed = optimal("hoffmann", p, compute)
    generic = optimal("hoffmann", p, compute, closed_form=False)
    assert generic.method == "grid + Brent"
    for field in ("n_active", "tokens", "loss"):
        assert rel(getattr(generic, field), getattr(closed, field)) < 1e-6, field


@pytest.mark.parametrize("law", list(LAWS))
@pytest.mark.parametrize("compute", [1e20, TABLE2_C])
def test_optimum_beats_brute_force_grid(law, compute):
    p = published(law)
    for s in ((0.0, 0.5, 0.9) if LAWS[law].sparse else (0.0,)):
        a = optimal(law, p, compute, s)
        grid = np.logspace(3, math.log10(compute / 6), 200_001)
        losses = loss_at(law, p, compute, s, grid)
        i = int(np.nanargmin(losses))
        assert 0 < i < len(grid) - 1, "grid optimum on the boundary"
        assert a.loss <= losses[i] * (1 + 1e-12), (s, a.loss, losses[i])
        assert rel(a.n_active, grid[i]) < 1e-3, (s, a.n_active, grid[i])
        assert rel(6 * a.n_active * a.tokens, compute) < 1e-12
        assert rel(a.n_total * (1 - s), a.n_active) < 1e-12


def test_optimal_sparsity_generalized_beats_fixed_sparsities():
    p = published("generalized")
    best = optimal_sparsity("generalized", p, 1e20, 0.99)
    assert 0.0 <= best.sparsity <= 0.99
    for s in (0, 0.25, 0.5, 0.75, 0.9, 0.95, 0.98):
        assert best.loss <= optimal("generalized", p, 1e20, s).loss + 1e-12, s


def test_bad_values_raise_one_clear_error():
    p = published("generalized")
    with pytest.raises(TunerError, match="--compute"):
        allocation_rows("generalized", p, [1e20, -1.0])
    with pytest.raises(TunerError, match=r"--sparsity must lie in \[0, 1\)"):
        allocation_rows("generalized", p, [1e20], sparsity=1.0)
    with pytest.raises(TunerError, match="--s-max"):
        allocation_rows("generalized", p, [1e20], sparsity=None, s_max=1.5)
    with pytest.raises(TunerError, match="--tokens"):
        predict_one("generalized", p, 1e9, -5)
    with pytest.raises(TunerError, match="disagrees"):
        predict_one("generalized", p, 1e9, 2e10, sparsity=0.5, n_total=4e9)


def test_predict_lemma_and_sparsity_from_n_total():
    g, h = published("generalized"), published("hoffmann")
    assert predict_one("generalized", g, 1e9, 2e10)["loss"] == pytest.approx(
        predict_one("hoffmann", h, 1e9, 2e10)["loss"], rel=1e-15)
    out = predict_one("generalized", g, 1e9, 2e10, n_total=4e9)
    assert out["sparsity"] == pytest.approx(0.75)
    assert out["loss"] == pytest.approx(predict_one("generalized", g, 1e9, 2e10, 0.75)["loss"])


def _fake_run(tmp_path, law, boot):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    (run / "results.csv").write_text("eval_id\n")
    summary = {"law": law, "best_params": published(law)}
    if boot is not None:
        summary["bootstrap_params"] = boot
    (run / "summary.json").write_text(json.dumps(summary))
    return run


def test_bootstrap_interval_when_present(tmp_path):
    p = published("hoffmann")
    boot = [{**p, "a": p["a"] * f, "e": p["e"] + 0.01 * (f - 1)} for f in (0.9, 0.95, 1.05, 1.1)]
    run = _fake_run(tmp_path, "hoffmann", boot)
    sets = bootstrap_sets("hoffmann", str(run))
    assert len(sets) == 4
    (row,) = allocation_rows("hoffmann", p, [1e21], boot=sets)
    assert row["loss_lo"] < row["loss"] < row["loss_hi"]
    assert row["n_active_lo"] < row["n_active"] < row["n_active_hi"]
    assert bootstrap_sets("generalized", str(run)) == []  # another law's sets never apply


def test_no_bootstrap_is_skipped(tmp_path):
    run = _fake_run(tmp_path, "hoffmann", None)
    assert bootstrap_sets("hoffmann", str(run)) == []
    (row,) = allocation_rows("hoffmann", published("hoffmann"), [1e21])
    assert "loss_lo" not in row


def test_cli_allocate_and_predict(cli, tmp_path):
    r = cli("allocate", "--law", "generalized", "--compute", "1e20", "--optimal-sparsity",
            "--json")
    assert r.returncode == 0, r.stderr
    (row,) = json.loads(r.stdout)["rows"]
    best = optimal_sparsity("generalized", published("generalized"), 1e20, 0.99)
    assert row["loss"] == pytest.approx(best.loss, rel=1e-12)
    r = cli("allocate", "--law", "hoffmann", "--compute", "5.76e23", "1e20")
    assert r.returncode == 0 and r.stdout.count("(closed form)") == 2
    assert r.stdout.splitlines()[0].startswith("coefficients: published coefficients of "
                                               "hoffmann")
    header = next(line for line in r.stdout.splitlines() if line.startswith("|"))
    assert [c.strip() for c in header.strip("|").split("|")][:3] == ["compute", "sparsity",
                                                                     "n_active"]
    assert "no uncertainty" in r.stdout
    r = cli("allocate", "--law", "frantar", "--compute", "1e20", "-1e20")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    r = cli("allocate", "--law", "frantar", "--compute", "1e20", "--sparsity", "1")
    assert r.returncode == 2 and "[0, 1)" in r.stderr
    r = cli("predict", "--law", "hoffmann", "--n-active", "7e10", "--tokens", "1.4e12", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["loss"] == pytest.approx(
        predict_one("hoffmann", published("hoffmann"), 7e10, 1.4e12)["loss"])


def test_optimum_on_a_search_limit_is_not_called_an_optimum(cli):
    """Eq 7 with Table VI falls monotonically in S: S = s_max is a limit, not an optimum; a
    law without a data term (b = 0) runs N to C/6 (D = 1 token)."""
    r = cli("allocate", "--law", "generalized", "--compute", "1e20", "--optimal-sparsity",
            "--data", "frantar_t5")
    assert r.returncode == 0, r.stderr
    assert "AT THE LIMIT, not an optimum: sparsity at the search limit --s-max = 0.99" in r.stdout
    assert "S 0.99 outside the data's 0–0.875" in r.stdout
    assert "dense model of the same compute: N" in r.stdout and "N_total 1.69e+10" in r.stdout
    a = optimal("hoffmann", {**published("hoffmann"), "b": 0.0}, 1e20)
    assert "upper search limit" in a.at_limit and a.tokens == pytest.approx(1.0)
    assert optimal("hoffmann", published("hoffmann"), 1e20).at_limit == ""
    a = optimal_sparsity("generalized", published("generalized"), 1e20, s_max=0.5)
    assert a.sparsity == pytest.approx(0.5) and "--s-max = 0.5" in a.at_limit


def test_run_coefficients_give_source_intervals_and_extrapolation(tmp_path):
    from tuner.analysis.planning import allocation_report
    p = published("hoffmann")
    boot = [{**p, "a": p["a"] * f} for f in (0.9, 0.95, 1.05, 1.1)]
    run = _fake_run(tmp_path, "hoffmann", boot)
    cfg = {"fit": {"data": "chinchilla_epoch", "drop_outliers": True}}
    (run / "config.json").write_text(json.dumps(cfg))
    rep = allocation_report("hoffmann", str(run), [1e19, 5.76e23])
    assert rep["source"]["kind"] == "run" and "fit in" in rep["source"]["text"]
    low, high = rep["rows"]
    assert "n_active_lo" in high and low["extrapolation"] == ""
    assert "C 5.76e+23 outside the data's" in high["extrapolation"]
    assert any("only 4 bootstrap sets" in n for n in rep["notes"])
    with pytest.raises(TunerError, match="needs a fitted run"):
        allocation_report("hoffmann", "published", [1e20], bootstrap=10)


def test_fresh_bootstrap_for_a_run_without_one(tmp_path):
    from tuner.analysis.planning import allocation_report, describe_allocation
    from tuner.run.fit import FitConfig, fit
    run = tmp_path / "run"
    fit(FitConfig("hoffmann", "hoffmann_table3", optimizer="lbfgs", evals=60), run, quiet=True)
    rep = allocation_report("hoffmann", str(run), [1e21])
    assert "n_active_lo" not in rep["rows"][0]
    assert any("no bootstrap: no intervals" in n for n in rep["notes"])
    rep = allocation_report("hoffmann", str(run), [1e21], bootstrap=3)
    (row,) = rep["rows"]
    assert row["n_active_lo"] <= row["n_active_hi"]
    text = "\n".join(describe_allocation(rep))
    assert "computed now" in text and "only 3 bootstrap sets" in text
    assert text.startswith(f"coefficients: fit in {run}: hoffmann on hoffmann_table3")
