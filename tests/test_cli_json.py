"""One CLI style: every command that prints a result prints valid JSON with --json, --out is a
directory everywhere, closed sets are choices, usage errors are one line. In process, through
tuner.cli.main, so the suite stays fast."""
import json
from pathlib import Path

import pytest

import tuner.views.reproduce as reproduce_module
from tuner import api
from tuner.cli import COMMS, LIARS, OBJECTIVES, OPTIMIZERS, SURROGATES, build_parser, main


def run_json(capsys, *args) -> object:
    """``tuner ARGS --json`` in process: exit 0 and stdout parsed by json.loads (strict)."""
    capsys.readouterr()
    code = main([*map(str, args), "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two small finished fits of the same law."""
    base = tmp_path_factory.mktemp("runs")
    for name, opt in (("r1", "random"), ("r2", "grid")):
        api.fit("frantar", "frantar_t5", optimizer=opt, evals=6, run_dir=base / name,
                quiet=True)
    return [base / "r1", base / "r2"]


def commands() -> set[str]:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return set(sub.choices)


def test_every_command_has_json():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    missing = [name for name, p in sub.choices.items()
               if not any("--json" in a.option_strings for a in p._actions)]
    assert missing == []


def test_choices_match_the_registries():
    from tuner.fitting.objective import OBJECTIVES as objectives
    from tuner.fitting.optimizers import OPTIMIZERS as optimizers
    from tuner.fitting.optimizers.ytopt import LIARS as liars, SURROGATES as surrogates
    from tuner.run.ensemble import COMMS as comms
    assert OPTIMIZERS == tuple(optimizers) and OBJECTIVES == tuple(objectives)
    assert SURROGATES == tuple(surrogates) and LIARS == tuple(liars) and COMMS == tuple(comms)


def test_fit_and_resume_json(capsys, tmp_path):
    run = tmp_path / "f"
    s = run_json(capsys, "fit", "--law", "hoffmann", "--data", "hoffmann_table3", "--optimizer",
                 "random", "--evals", 5, "--run-dir", run, "--quiet")
    assert s["evals"] == 5 and s["run_dir"] == str(run.resolve())
    s = run_json(capsys, "resume", run, "--evals", 8, "--quiet")
    assert s["evals"] == 8
    # Wall time adds up over both sessions; each session is listed with its own evaluations.
    assert [g["evals"] for g in s["segments"]] == [5, 3]
    assert s["wall_seconds"] == pytest.approx(sum(g["wall_seconds"] for g in s["segments"]))
    assert s["wall_seconds"] > s["segments"][1]["wall_seconds"]
    config = json.loads((run / "config.json").read_text())
    assert config["versions"]["tuner"] == api.load(run).summary["versions"]["tuner"]
    assert {"python", "numpy", "libensemble"} <= set(config["versions"])


def test_score_predict_allocate_json(capsys, runs):
    s = run_json(capsys, "score", "--law", "frantar", "--data", "frantar_t5", "--coefficients",
                 runs[0])
    assert s["objective"] == pytest.approx(api.load(runs[0]).objective)
    p = run_json(capsys, "predict", "--law", "hoffmann", "--n-active", 7e10, "--tokens",
                 1.4e12)
    assert p["loss"] == pytest.approx(api.predict("hoffmann", 7e10, 1.4e12)["loss"])
    a = run_json(capsys, "allocate", "--law", "hoffmann", "--compute", 1e20, 5.76e23)["rows"]
    assert [r["compute"] for r in a] == [1e20, 5.76e23] and a[1]["n_active"] > a[0]["n_active"]


def test_listing_json(capsys):
    d = run_json(capsys, "datasets")
    assert "chinchilla_epoch" in {r["dataset"] for r in d}
    laws = run_json(capsys, "laws")
    hoffmann = next(r for r in laws if r["law"] == "hoffmann")
    assert hoffmann["published"]["alpha"] == 0.34 and "alpha" in hoffmann["coefficients"]


def test_validate_summary_text_rows_in_file_and_json(capsys, tmp_path):
    args = ["validate", "--law", "hoffmann", "--data", "chinchilla_epoch", "--train",
            "n_active < 1e9", "--evals", 300, "--out", tmp_path]
    assert main(list(map(str, args))) == 0
    text = capsys.readouterr().out
    assert "held-out runs" in text and len(text.splitlines()) <= 4  # not one line per run
    rows_csv = tmp_path / "hoffmann-chinchilla_epoch.csv"
    n_rows = len(rows_csv.read_text().splitlines()) - 1
    v = run_json(capsys, *args)
    assert len(v["rows"]) == v["test_runs"] == n_rows > 20
    assert v["tables"][1] == str(rows_csv)


def test_rank_json_and_progress(capsys, tmp_path):
    capsys.readouterr()
    r = run_json(capsys, "rank", "--data", "frantar_t5", "--laws", "hoffmann", "frantar",
                 "--evals", 200, "--out", tmp_path)
    assert sorted(row["law"] for row in r["rows"]) == ["frantar", "hoffmann"]
    assert (tmp_path / "rank.md").is_file() and (tmp_path / "rank.csv").is_file()
    assert main(["rank", "--data", "frantar_t5", "--laws", "frantar", "--evals", "100",
                 "--out", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "rank frantar_t5: [0/1]" in err and "[1/1]" in err  # plain lines: not a terminal


def test_compare_report_figures_json_out_is_a_directory(capsys, runs, tmp_path):
    c = run_json(capsys, "compare", *runs, "--out", tmp_path / "cmp")
    assert {r["optimizer"] for r in c["rows"]} == {"random", "grid"}
    assert all(Path(p).parent == tmp_path / "cmp" and Path(p).stat().st_size > 0
               for p in c["figures"] + c["tables"])
    r = run_json(capsys, "report", runs[0], "--out", tmp_path / "rep")
    assert [Path(p).name for p in r["figures"]][:1] == ["report.png"]
    assert Path(r["html"]) == tmp_path / "rep" / Path(runs[0]).name / "report.html"
    assert all(Path(p).parent == tmp_path / "rep" / Path(runs[0]).name for p in r["figures"])
    iso = run_json(capsys, "isoflop", "--data", "chinchilla_epoch", "--bootstrap", "20",
                   "--out", tmp_path / "iso")
    assert 0.3 < iso["a"] < 0.7 and Path(iso["figure"]).parent == tmp_path / "iso"
    f = run_json(capsys, "figures", "--only", "fig2", "--out", tmp_path / "figs")
    assert sorted(Path(p).name for p in f["figures"]) == ["fig2.png", "fig2.svg"]


def test_out_defaults_to_runs_command(capsys, runs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_json(capsys, "compare", *runs)
    assert (tmp_path / "runs" / "compare" / "compare.csv").is_file()
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():
        for action in p._actions:
            if "--out" in action.option_strings:
                assert action.default == f"runs/{name}", name


def test_reproduce_json(capsys, tmp_path, monkeypatch):
    # One panel and the recovery check with tiny budgets: the full job takes minutes.
    monkeypatch.setattr(reproduce_module, "PANELS", [("frantar", "frantar_t5")])
    monkeypatch.setattr(reproduce_module, "REFERENCE_EVALS", 4)
    r = run_json(capsys, "reproduce", "fig7", "--evals", 4, "--quiet", "--out", tmp_path)
    assert [row["data"] for row in r["rows"]] == ["frantar_t5", "abnar_reconstructed"]
    assert r["figure"][0] == str(tmp_path / "fig7.png")


def test_sweep_json(capsys, tmp_path):
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps({"laws": ["hoffmann", "kaplan"], "datasets": ["hoffmann_table3"],
                                "evals": 4, "options": {"optimizer": "random"}}))
    r = run_json(capsys, "sweep", grid, "--quiet", "--out", tmp_path / "out")
    assert [(row["fit"], row["law"], row["optimizer"]) for row in r["rows"]] == \
        [(1, "hoffmann", "random"), (2, "kaplan", "random")]
    assert r["tables"] == [str(tmp_path / "out" / "sweep.md"), str(tmp_path / "out" / "sweep.csv")]


def test_json_covers_every_command():
    tested = {"fit", "resume", "score", "predict", "allocate", "datasets", "laws", "validate",
              "rank", "compare", "report", "figures", "reproduce", "isoflop", "sweep"}
    assert commands() <= tested, commands() - tested


@pytest.mark.parametrize("args,needle", [
    (["fit", "--law", "hoffmann", "--data", "x", "--optimizer", "sgd"], "invalid choice: 'sgd'"),
    (["fit", "--law", "hoffmann", "--data", "x", "--comms", "tcp"], "invalid choice: 'tcp'"),
    (["score", "--law", "hoffmann", "--data", "x", "--objective", "l1"], "invalid choice"),
    (["validate", "--law", "hoffmann", "--data", "x", "--optimizer", "adam"], "invalid choice"),
])
def test_choices_one_line_exit_2(capsys, args, needle):
    with pytest.raises(SystemExit) as exc:
        main(args)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and needle in err and len(err.strip().splitlines()) == 1


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    from importlib.metadata import version
    assert capsys.readouterr().out.strip() == f"tuner {version('tuner')}"


def test_surrogate_case_insensitive(capsys, tmp_path):
    s = run_json(capsys, "fit", "--law", "hoffmann", "--data", "hoffmann_table3", "--evals", 4,
                 "--surrogate", "et", "--initial-points", 2, "--run-dir", tmp_path / "et",
                 "--quiet")
    assert s["evals"] == 4
