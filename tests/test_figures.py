"""tuner figures: every figure is written, several coefficient sources side by side."""
import json

import pytest

from tuner.errors import TunerError
from tuner.figures import FIGURES, Source, draw
from tuner.spaces import published


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
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig1.png", "fig1.svg", "fig8.png",
                                                          "fig8.svg"]
    r = cli("figures", "--out", tmp_path, "--only", "fig7")
    assert r.returncode == 2 and "unknown figure" in r.stderr
