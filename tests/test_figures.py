"""tuner figures: every figure is written, several coefficient sources side by side."""
import json

import pytest

from tuner.errors import TunerError
from tuner.views.figures import FIGURES, Source, draw
from tuner.laws.spaces import published


def _run_dir(tmp_path, law, scale=1.1):
    run = tmp_path / "fit"
    run.mkdir()
    (run / "config.json").write_text("{}")
    (run / "results.csv").write_text("eval_id\n")
    best = {k: v * scale if k == "a" else v for k, v in published(law).items()}
    (run / "summary.json").write_text(json.dumps({"law": law, "best_params": best}))
    return run


def test_sources_apply_to_their_own_law_only(tmp_path):
    src = Source(str(_run_dir(tmp_path, "generalized")))
    assert src.params("generalized")["a"] == pytest.approx(published("generalized")["a"] * 1.1)
    assert src.params("hoffmann") == published("hoffmann")
    with pytest.raises(TunerError):
        Source(str(tmp_path / "missing"))


def test_draw_writes_every_file(tmp_path):
    run = _run_dir(tmp_path, "generalized")
    written = draw(tmp_path / "out", ["published", str(run)])
    expected = {f"{n}.{e}" for n in FIGURES for e in ("png", "svg")}
    assert set(FIGURES) == {"fig1", "fig2", "fig3", "fig4", "fig5", "fig6", "fig8"}
    assert {p.name for p in written} == expected
    assert all((tmp_path / "out" / name).stat().st_size > 1000 for name in expected)


def test_cli_figures(cli, tmp_path):
    r = cli("figures", "--out", tmp_path, "--only", "fig1", "fig8")
    assert r.returncode == 0, r.stderr
    # .tuner-outputs: the record that lets a later 'figures' replace these files
    assert sorted(p.name for p in tmp_path.iterdir()
                  if p.name != ".tuner-outputs") == ["fig1.png", "fig1.svg", "fig8.png",
                                                          "fig8.svg"]
    r = cli("figures", "--out", tmp_path, "--only", "fig7")
    assert r.returncode == 2 and "unknown figure" in r.stderr


# ---- what the figures draw -------------------------------------------------------------------

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from tuner.analysis.allocate import optimal  # noqa: E402
from tuner.data.datasets import load  # noqa: E402
from tuner.views.figures import (ISO_N, ISO_SPARSITIES, _abnar_path, abnar_path_curves,  # noqa: E402
                           isoflop_curves, slope_sign_changes, token_curves)
from tuner.laws import Runs, predict  # noqa: E402

C = 1e20


def test_slope_sign_changes_sees_a_spike():
    x = np.log(ISO_N)
    u = (x - x.mean()) ** 2
    assert slope_sign_changes(u) == 1
    spiked = u + 30 * np.exp(-((x - x[40]) / 0.3) ** 2)  # a bump at small N
    assert slope_sign_changes(spiked) == 3


@pytest.mark.parametrize("law", ["frantar", "generalized"])
def test_isoflop_curves_fig1_fig8_are_smooth_u_shapes(law):
    """Published Table III / VI coefficients: one minimum per sparsity, no spike (README)."""
    curves = isoflop_curves(law, published(law))
    assert list(curves) == list(ISO_SPARSITIES)
    for s, y in curves.items():
        assert np.all(np.isfinite(y)), s
        assert slope_sign_changes(y) == 1, s
        assert 1e6 < ISO_N[np.argmin(y)] < 1e10, s
    # Sparser is better at small N under both laws with these coefficients.
    assert curves[0.98][0] < curves[0.0][0]


def _eq3(p, n_nonzero, d, s):
    runs = Runs(n_nonzero / (1 - s), n_nonzero, d, np.full_like(n_nonzero, s))
    return predict("frantar", p, runs)


@pytest.mark.parametrize("convention", ["x total, C on non-zero", "x total, C on total",
                                        "x non-zero, C on total", "N from 1 parameter",
                                        "Eq 4", "N and D in billions"])
def test_no_convention_gives_eq3_a_spike(convention):
    """The conventions the README lists as tried: none makes Eq 3 spike at C = 1e20."""
    p = published("frantar")
    x = np.logspace(0, 19, 3000) if convention == "N from 1 parameter" else ISO_N
    for s in ISO_SPARSITIES:
        if convention == "x total, C on non-zero":
            y = _eq3(p, (1 - s) * x, C / (6 * (1 - s) * x), s)
        elif convention == "x total, C on total":
            y = _eq3(p, (1 - s) * x, C / (6 * x), s)
        elif convention == "x non-zero, C on total":
            y = _eq3(p, x, C * (1 - s) / (6 * x), s)
        elif convention == "N and D in billions":
            y = _eq3(p, x / 1e9, C / (6 * x) / 1e9, s)
        elif convention == "Eq 4":
            y = isoflop_curves("frantar_reparam", published("frantar_reparam"), sparsities=[s])[s]
        else:
            y = _eq3(p, x, C / (6 * x), s)
        assert np.all(np.isfinite(y)) and slope_sign_changes(y) == 1, (convention, s)


def test_fig5_curves_follow_each_token_count_through_the_runs():
    src = Source("published")
    laws = ("frantar", "generalized")
    groups = token_curves(src, laws)
    f = load("frantar_t5").frame
    assert sorted(groups) == sorted(f.tokens.unique())
    seen = 0
    for d, curves in groups.items():
        assert len(curves) == f.sparsity.nunique()
        for cur in curves:
            assert np.all(np.diff(cur.compute) > 0)  # one smooth curve, sorted by compute
            assert (cur.runs.tokens == d).all() and (cur.runs.sparsity == cur.sparsity).all()
            for law in laws:
                y = cur.loss[law]
                assert np.all(np.isfinite(y)) and np.all(np.diff(y) < 0), law  # more N: lower
                # The curve passes through the law's prediction at every run it belongs to.
                at = np.interp(np.log(6 * cur.runs.n_active * d), np.log(cur.compute), y)
                runs = Runs(*(cur.runs[k].to_numpy(float) for k in
                              ("n_total", "n_active", "tokens", "sparsity")))
                np.testing.assert_allclose(at, predict(law, published(law), runs), rtol=1e-12)
            seen += len(cur.runs)
    assert seen == len(f) == 48


def test_fig6_curves_lie_on_the_path_of_the_reconstructed_runs():
    f = load("abnar_reconstructed").frame
    p5 = published("abnar")
    for _, r in f.iloc[::6].iterrows():  # where build.py placed each run: Eq 5's optimum
        a = optimal("abnar", p5, r.compute, r.sparsity)
        assert a.n_total == pytest.approx(r.n_total, rel=1e-9)
        path = _abnar_path(float(r.sparsity), float(r.compute), float(r.compute), 1)
        # (10**log10(C) is not exactly C, and the optimum is flat: 1e-6)
        assert path.n_total.iloc[0] == pytest.approx(r.n_total, rel=1e-6)
    curves = abnar_path_curves(Source("published"), ("abnar", "generalized"))
    assert [c.sparsity for c in curves] == sorted(f.sparsity.unique())
    for cur in curves:
        assert np.all(np.diff(cur.compute) > 0)
        # Published Eq 5 along the path reproduces the runs' (reconstructed) losses at the ends.
        np.testing.assert_allclose(cur.loss["abnar"][[0, -1]], cur.runs.loss.iloc[[0, -1]],
                                   rtol=1e-9)
        for law in ("abnar", "generalized"):
            assert np.all(np.diff(cur.loss[law]) < 0), law


@pytest.mark.parametrize("name", list(FIGURES))
def test_every_panel_has_labels_and_a_legend(name):
    spec = FIGURES[name]
    fig, axes = plt.subplots(1, spec.panels, squeeze=False)
    try:
        spec.draw(list(axes[0]), Source("published"))
        for ax in axes[0]:
            assert ax.get_xlabel() and ax.get_lines(), name
            assert ax.get_xscale() == "log"
        assert axes[0][0].get_ylabel().startswith("loss (nats/token)")
        assert axes[0][0].get_legend() is not None
        assert "FLOPs" in axes[0][0].get_xlabel() or "parameters" in axes[0][0].get_xlabel()
    finally:
        plt.close(fig)
