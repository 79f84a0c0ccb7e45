"""The bad-input matrix: every case through ``tuner.cli.main`` in process.

Each case must end with exit code 2, exactly one line on stderr (``tuner: error: ...``), no
traceback, and nothing written: the files under the test's directory (and the default
``runs/`` of the working directory) are the same before and after. A new option of fit,
resume or validate must appear in some case (or in EXEMPT with a reason), so none skips it.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from tuner.cli import build_parser, main

FIT = ["fit", "--law", "hoffmann", "--data", "chinchilla_epoch", "--quiet"]
VALIDATE = ["validate", "--law", "hoffmann", "--data", "chinchilla_epoch"]


def _setup_dup_csv(d: Path) -> None:
    (d / "dup.csv").write_text("run_id,n_total,n_active,tokens,sparsity,loss,loss\n"
                               "a,1e8,1e8,2e9,0,3.1,3.0\nb,2e8,2e8,4e9,0,2.9,2.8\n")


def _setup_law_file(d: Path) -> None:
    (d / "law.json").write_text(json.dumps({"formula": "e + a/N**alpha", "run": "id"}))


def _setup_file(d: Path) -> None:
    (d / "afile").write_text("not a directory\n")


def _sweep_file(name: str, text: str):
    def setup(d: Path) -> None:
        (d / name).write_text(text)
        (d / "afile").write_text("not a directory\n")
    return setup


GOOD_SWEEP = _sweep_file("s.json", json.dumps({"laws": ["hoffmann"],
                                               "datasets": ["chinchilla_epoch"], "evals": 2}))


def _sweep_case(name: str, content, expect: str, suffix: str = ".json"):
    text = content if isinstance(content, str) else json.dumps(content)
    return (f"sweep-{name}", ["sweep", f"{{d}}/s{suffix}", "--quiet"],
            _sweep_file(f"s{suffix}", text), expect)


SWEEP_OK = {"laws": ["hoffmann"], "datasets": ["chinchilla_epoch"]}


def _edit_run(d: Path, run: Path, edit) -> None:
    import shutil
    shutil.copytree(run, d / "run")
    edit(d / "run")


def _config_unknown_key(r: Path) -> None:
    cfg = json.loads((r / "config.json").read_text())
    cfg["fit"]["turbo"] = True
    (r / "config.json").write_text(json.dumps(cfg))


def _config_not_json(r: Path) -> None:
    (r / "config.json").write_text('{"fit": {"law": "hoffmann",')


def _header_edited(r: Path) -> None:
    text = (r / "results.csv").read_text().replace("objective", "objectiv", 1)
    (r / "results.csv").write_text(text)


def _config_bad_type(r: Path) -> None:
    cfg = json.loads((r / "config.json").read_text())
    cfg["fit"]["evals"] = "many"
    (r / "config.json").write_text(json.dumps(cfg))


def _raw_file(name: str, content: bytes):
    def setup(d: Path) -> None:
        (d / name).write_bytes(content)
    return setup


def _space_with_infinite_bound(d: Path) -> None:
    from importlib.resources import files
    space = json.loads(files("tuner.laws").joinpath("search_spaces/hoffmann.json").read_text())
    for h in space["hyperparameters"]:
        if h["name"] == "alpha":
            h["upper"] = float("inf")
    (d / "sp.json").write_text(json.dumps(space))


def _edit_json(path: Path, **fields) -> None:
    data = json.loads(path.read_text())
    data.update(fields)
    path.write_text(json.dumps(data))


def _workers_file(r: Path) -> None:
    shutil.rmtree(r / ".workers", ignore_errors=True)
    (r / ".workers").write_text("not a directory\n")


def _best_alpha(value):
    def edit(r: Path) -> None:
        data = json.loads((r / "summary.json").read_text())
        data["best_params"]["alpha"] = value
        (r / "summary.json").write_text(json.dumps(data))
    return edit


def _foreign(name: str):
    def setup(d: Path) -> None:
        (d / "out").mkdir()
        (d / "out" / name).write_text("a file the user wrote\n")
    return setup


def _foreign_report(d: Path, run: Path) -> None:
    (d / "out" / run.name).mkdir(parents=True)
    (d / "out" / run.name / "report.svg").write_text("mine\n")


# (case id, argv with {d} for the test directory and {run} for a finished run, setup, expect)
CASES = [
    ("train-injection", VALIDATE + ["--train", "@np.lib._npyio_impl.os.system('id > {d}/f')"],
     None, "not a condition"),
    ("train-call", VALIDATE + ["--train", "__import__('os').system('id > {d}/f') < 1"], None,
     "is not allowed (Call)"),
    ("train-attribute", VALIDATE + ["--train", "n_active.sum() > 0"], None, "not allowed"),
    ("train-syntax", VALIDATE + ["--train", "n_active <"], None, "not a condition"),
    ("train-unknown-column", VALIDATE + ["--train", "bogus < 1", "--json"], None, "unknown column"),
    ("train-not-condition", VALIDATE + ["--train", "n_active * 2"], None, "true/false"),
    ("validate-evals-zero", VALIDATE + ["--train", "n_active < 1e9", "--evals", "0"], None,
     "--evals"),
    ("validate-seed-text", VALIDATE + ["--loo", "--seed", "x"], None, "--seed"),
    ("validate-optimizer", VALIDATE + ["--loo", "--optimizer", "nope", "--keep-outliers"],
     None, "--optimizer"),
    ("evals-huge", FIT + ["--evals", "1000000000000", "--run-dir", "{d}/r"], None,
     "exceeds what this machine can hold"),
    ("evals-zero", FIT + ["--evals", "0", "--run-dir", "{d}/r"], None, "--evals"),
    ("evals-text", FIT + ["--evals", "1e12", "--run-dir", "{d}/r"], None, "invalid int"),
    ("workers-huge", FIT + ["--workers", "10000", "--run-dir", "{d}/r"], None,
     "exceeds what this machine can hold"),
    ("workers-threads-huge", FIT + ["--workers", "10000", "--comms", "threads", "--run-dir",
                                    "{d}/r"], None, "worker threads"),
    ("workers-zero", FIT + ["--workers", "0", "--run-dir", "{d}/r"], None, "--workers"),
    ("comms-unknown", FIT + ["--comms", "carrier-pigeon", "--run-dir", "{d}/r"], None,
     "--comms"),
    ("run-dir-proc", FIT + ["--run-dir", "/proc/tuner-test/run"], None,
     "cannot create the run directory"),
    ("run-dir-beneath-file", FIT + ["--run-dir", "{d}/afile/run"], _setup_file, "is a file"),
    ("run-dir-exists", FIT + ["--run-dir", "{d}"], None, "run directory exists"),
    ("fix-outside", FIT + ["--fix", "alpha=5", "--run-dir", "{d}/r"], None,
     "outside the space"),
    ("fix-nan", FIT + ["--fix", "alpha=nan", "--run-dir", "{d}/r"], None, "not a finite"),
    ("fix-unknown", FIT + ["--fix", "zeta=1", "--run-dir", "{d}/r"], None,
     "not a coefficient"),
    ("fix-syntax", FIT + ["--fix", "alpha", "--run-dir", "{d}/r"], None, "name=value"),
    ("eval-delay-nan", FIT + ["--eval-delay", "nan", "--run-dir", "{d}/r"], None,
     "finite number"),
    ("eval-delay-negative", FIT + ["--eval-delay", "-1", "--run-dir", "{d}/r"], None,
     "--eval-delay"),
    ("delta-inf", FIT + ["--delta", "inf", "--run-dir", "{d}/r"], None, "finite number"),
    ("polish-nan", FIT + ["--polish", "nan", "--run-dir", "{d}/r"], None, "finite number"),
    ("polish-range", FIT + ["--polish", "2", "--run-dir", "{d}/r"], None, "polish"),
    ("initial-points-negative", FIT + ["--initial-points", "-3", "--run-dir", "{d}/r"], None,
     "--initial-points"),
    ("seed-text", FIT + ["--seed", "one", "--run-dir", "{d}/r"], None, "--seed"),
    ("bootstrap-one", FIT + ["--bootstrap", "1", "--run-dir", "{d}/r"], None, "--bootstrap"),
    ("optimizer-unknown", FIT + ["--optimizer", "annealing", "--run-dir", "{d}/r"], None,
     "--optimizer"),
    ("option-not-used", FIT + ["--optimizer", "grid", "--surrogate", "GP", "--run-dir",
                               "{d}/r"], None, "--surrogate: not used by --optimizer grid"),
    ("formula-import", ["fit", "--law", "e + a/N**alpha + __import__('os').system('id')",
                        "--data", "chinchilla_epoch", "--run-dir", "{d}/r"], None,
     "__import__"),
    ("formula-attribute", ["score", "--law", "e + a.real/N**alpha", "--data",
                           "chinchilla_epoch", "--coefficients", "e=1,a=1,alpha=1"], None,
     "attributes are not allowed"),
    ("formula-no-coefficient", ["predict", "--law", "N + D", "--n-active", "1e9",
                                "--tokens", "1e10"], None, "no coefficient"),
    ("formula-private-name", ["allocate", "--law", "_e + a/N**alpha", "--compute", "1e20"],
     None, "'_'"),
    ("law-file-unknown-key", ["fit", "--law", "{d}/law.json", "--data", "chinchilla_epoch",
                              "--run-dir", "{d}/r"], _setup_law_file, "unknown key"),
    ("columns-missing", FIT + ["--columns", "n_active=params", "--run-dir", "{d}/r"], None,
     "no column 'params'"),
    ("columns-unknown-name", FIT + ["--columns", "size=n_active", "--run-dir", "{d}/r"], None,
     "not one of tuner's names"),
    ("group-one-value", FIT + ["--group", "sparsity", "--run-dir", "{d}/r"], None,
     "one value"),
    ("per-group-unknown", FIT + ["--group", "outlier", "--per-group", "zeta", "--run-dir",
                                 "{d}/r", "--keep-outliers"], None,
     "--per-group: zeta not coefficients"),
    ("residual-unknown", FIT + ["--residual", "cubic", "--run-dir", "{d}/r"], None,
     "--residual"),
    ("validate-columns", VALIDATE + ["--train", "n_active < 1e9", "--columns", "loss=nope"],
     None, "no column 'nope'"),
    ("validate-residual", VALIDATE + ["--loo", "--residual", "cubic"], None, "--residual"),
    ("validate-out-beneath-file", VALIDATE + ["--train", "n_active < 1e9", "--out",
                                              "{d}/afile/out"], _setup_file, "afile"),
    ("rank-columns", ["rank", "--data", "chinchilla_epoch", "--columns", "tokens=nope",
                      "--quiet", "--json"], None, "no column 'nope'"),
    ("rank-residual", ["rank", "--data", "chinchilla_epoch", "--residual", "cubic"], None,
     "--residual"),
    ("rank-bad-formula", ["rank", "--data", "chinchilla_epoch", "--laws", "hoffmann",
                          "e + a.b/N"], None, "attributes are not allowed"),
    ("report-json-unfinished", ["report", "{d}", "--json"], None, "not a tuner run"),
    ("compare-json-missing", ["compare", "{d}/none", "--json"], None, "not a tuner run"),
    ("figures-json-bad-source", ["figures", "--json", "--coefficients", "{d}/none"], None,
     "figures take"),
    ("objective-unknown", FIT + ["--objective", "mae", "--run-dir", "{d}/r"], None,
     "objective"),
    ("surrogate-unknown", FIT + ["--surrogate", "XGB", "--run-dir", "{d}/r"], None,
     "--surrogate"),
    ("liar-unknown", FIT + ["--liar", "cl_median", "--run-dir", "{d}/r"], None, "--liar"),
    ("space-missing", FIT + ["--space", "{d}/none.json", "--run-dir", "{d}/r"], None,
     "not found"),
    ("law-unknown", ["fit", "--law", "moore", "--data", "chinchilla_epoch", "--run-dir",
                     "{d}/r"], None, "moore"),
    ("data-duplicate-column", ["fit", "--law", "hoffmann", "--data", "{d}/dup.csv",
                               "--run-dir", "{d}/r"], _setup_dup_csv, "more than once"),
    ("score-duplicate-column", ["score", "--law", "hoffmann", "--data", "{d}/dup.csv"],
     _setup_dup_csv, "more than once"),
    ("faithful-with-polish", FIT + ["--faithful", "--polish", "0.3", "--no-profile",
                                    "--keep-outliers", "--json", "--run-dir", "{d}/r"], None,
     "faithful"),
    ("resume-not-a-run", ["resume", "{d}"], None, "not a tuner run directory"),
    ("resume-config-unknown-key", ["resume", "{d}/run"],
     lambda d, run: _edit_run(d, run, _config_unknown_key), "unknown key"),
    ("resume-config-bad-type", ["resume", "{d}/run"],
     lambda d, run: _edit_run(d, run, _config_bad_type), "integer"),
    ("resume-config-not-json", ["resume", "{d}/run"],
     lambda d, run: _edit_run(d, run, _config_not_json), "unreadable"),
    ("resume-header-edited", ["resume", "{d}/run", "--evals", "6"],
     lambda d, run: _edit_run(d, run, _header_edited), "header does not match"),
    ("resume-evals-zero", ["resume", "{d}/run", "--evals", "0", "--quiet", "--json"],
     lambda d, run: _edit_run(d, run, lambda r: None), "--evals"),
    ("resume-workers-huge", ["resume", "{d}/run", "--workers", "100000"],
     lambda d, run: _edit_run(d, run, lambda r: None), "exceeds"),
    ("resume-summary-bad-field", ["resume", "{d}/run", "--evals", "6"],
     lambda d, run: _edit_run(d, run, lambda r: _edit_json(r / "summary.json", segments="x")),
     "summary.json: field 'segments'"),
    ("resume-summary-not-object", ["resume", "{d}/run", "--evals", "6"],
     lambda d, run: _edit_run(d, run, lambda r: (r / "summary.json").write_text("[1, 2]")),
     "summary.json: not a JSON object"),
    ("resume-summary-truncated", ["resume", "{d}/run", "--evals", "6"],
     lambda d, run: _edit_run(d, run, lambda r: (r / "summary.json").write_text(
         (r / "summary.json").read_text()[:100])), "summary.json: unreadable"),
    ("resume-workers-is-a-file", ["resume", "{d}/run", "--evals", "6"],
     lambda d, run: _edit_run(d, run, _workers_file), ".workers: is a file"),
    ("resume-evals-below-done", ["resume", "{d}/run", "--evals", "2"],
     lambda d, run: _edit_run(d, run, lambda r: None), "fewer than the 4 evaluations"),
    ("resume-log-version-newer", ["resume", "{d}/run", "--evals", "6"],
     lambda d, run: _edit_run(d, run, lambda r: _edit_json(r / "config.json", log_version=99)),
     "log_version 99"),
    ("allocate-summary-bad-param", ["allocate", "--law", "hoffmann", "--compute", "1e20",
                                    "--coefficients", "{d}/run"],
     lambda d, run: _edit_run(d, run, _best_alpha("x")), "best_params 'alpha'"),
    ("predict-summary-null-param", ["predict", "--law", "hoffmann", "--n-active", "1e9",
                                    "--tokens", "1e10", "--coefficients", "{d}/run"],
     lambda d, run: _edit_run(d, run, _best_alpha(None)), "best_params 'alpha'"),
    ("bootstrap-huge", FIT + ["--bootstrap", "1000000000000", "--run-dir", "{d}/r"], None,
     "at most 1000000"),
    ("eval-delay-huge", FIT + ["--eval-delay", "1e308", "--run-dir", "{d}/r"], None,
     "--eval-delay must be at most"),
    ("seed-negative", FIT + ["--seed", "-1", "--run-dir", "{d}/r"], None, "--seed must be"),
    ("validate-evals-huge", VALIDATE + ["--loo", "--evals", "1000000000000"], None, "exceeds"),
    ("isoflop-bootstrap-huge", ["isoflop", "--data", "chinchilla_epoch", "--bootstrap",
                                "1000000000000", "--out", "{d}/o"], None, "at most 1000000"),
    ("isoflop-seed-negative", ["isoflop", "--data", "chinchilla_epoch", "--seed", "-5",
                               "--out", "{d}/o"], None, "--seed must be"),
    ("reproduce-seeds-huge", ["reproduce", "fig7", "--out", "{d}/out", "--seeds",
                              "1000000000000"], None, "at most 1000000"),
    ("rank-seed-negative", ["rank", "--data", "hoffmann_table3", "--seed", "-2"], None,
     "--seed must be"),
    ("sweep-seed-negative", ["sweep", "{d}/s.json"], _sweep_file("s.json", json.dumps(
        {"laws": ["hoffmann"], "datasets": ["chinchilla_epoch"], "seeds": [-1]})), "'seeds'"),
    ("law-file-not-utf8", FIT + ["--law", "{d}/law.json", "--run-dir", "{d}/r"],
     _raw_file("law.json", b'{"formula": "e + a/N**alpha", "name": "caf\xe9"}'), "not UTF-8"),
    ("law-file-deep-json", FIT + ["--law", "{d}/law.json", "--run-dir", "{d}/r"],
     _raw_file("law.json", b"[" * 100000 + b"]" * 100000), "nested too deeply"),
    ("formula-deep", ["predict", "--law", "-" * 1980 + "e + a/N**alpha", "--n-active", "1e9",
                      "--tokens", "1e10", "--coefficients", "e=1,a=1,alpha=0.3"], None,
     "nested more than"),
    ("isoflop-out-is-file", ["isoflop", "--data", "chinchilla_epoch", "--out", "{d}/afile"],
     _setup_file, "is a file"),
    ("isoflop-budget-missing", ["isoflop", "--data", "{d}/x.csv", "--budget-column", "b",
                                "--out", "{d}/o"],
     _raw_file("x.csv", b"n_active,tokens,loss,b\n1e8,2e9,3.1,1\n2e8,4e9,2.9,\n"
                        b"4e8,8e9,2.7,1\n"), "run 2 has no value"),
    ("group-missing-value", FIT + ["--data", "{d}/g.csv", "--group", "g", "--run-dir", "{d}/r"],
     _raw_file("g.csv", b"n_active,tokens,loss,g\n1e8,2e9,3.1,a\n2e8,4e9,2.9,\n"
                        b"4e8,8e9,2.7,b\n8e8,8e9,2.6,b\n"), "run 2 has no value"),
    ("per-group-without-group", FIT + ["--per-group", "e", "--run-dir", "{d}/r"], None,
     "--per-group needs --group"),
    ("out-under-proc", ["figures", "--only", "fig2", "--out", "/proc/tuner-audit"], None,
     "/proc/tuner-audit"),
    ("sweep-option-nested-list", ["sweep", "{d}/s.json"], _sweep_file("s.json", json.dumps(
        {**SWEEP_OK, "options": {"optimizer": [["random"]]}})), "--optimizer must be a name"),
    ("sweep-option-wrong-type", ["sweep", "{d}/s.json"], _sweep_file("s.json", json.dumps(
        {**SWEEP_OK, "options": {"drop_outliers": "no"}})), "true or false"),
    ("coefficients-nan", ["score", "--law", "hoffmann", "--data", "hoffmann_table3",
                          "--coefficients", "e=nan"], None, "e=nan is not a finite number"),
    ("coefficients-twice", ["score", "--law", "hoffmann", "--data", "hoffmann_table3",
                            "--coefficients", "e=1,e=2"], None, "e is given twice"),
    ("fix-twice", FIT + ["--fix", "alpha=0.3,alpha=0.4", "--run-dir", "{d}/r"], None,
     "alpha is given twice"),
    ("formula-division-by-zero", ["predict", "--law", "e + a/0 + alpha*N", "--n-active", "1e9",
                                  "--tokens", "1e10", "--coefficients", "e=1,a=1,alpha=1"],
     None, "division by zero"),
    ("formula-constant-overflow", FIT + ["--law", "e + 9**9**9 + a/N**alpha", "--run-dir",
                                         "{d}/r"], None, "not a finite number: '9**9**9'"),
    ("law-file-default-nan", FIT + ["--law", "{d}/law.json", "--run-dir", "{d}/r"],
     _raw_file("law.json", b'{"formula": "e + a/N**alpha", "defaults": {"alpha": NaN}}'),
     "finite numbers"),
    ("law-file-default-outside-bounds", FIT + ["--law", "{d}/law.json", "--run-dir", "{d}/r"],
     _raw_file("law.json", b'{"formula": "e + a/N**alpha", "defaults": {"alpha": 5}, '
                           b'"bounds": {"alpha": [0, 1]}}'), "outside its bounds"),
    ("law-file-name-number", FIT + ["--law", "{d}/law.json", "--run-dir", "{d}/r"],
     _raw_file("law.json", b'{"formula": "e + a/N**alpha", "name": 42}'),
     "'name' must be a string"),
    ("space-file-infinite-bound", FIT + ["--space", "{d}/sp.json", "--run-dir", "{d}/r"],
     _space_with_infinite_bound, "bounds and defaults must be finite"),
    ("csv-outlier-not-a-flag", ["score", "--law", "hoffmann", "--data", "{d}/ol.csv"],
     _raw_file("ol.csv", b"n_active,tokens,loss,outlier\n1e8,2e9,3.1,maybe\n"
                         b"2e8,4e9,2.9,false\n"), "field outlier: 'maybe'"),
    ("csv-bad-n-active-named", ["score", "--law", "hoffmann", "--data", "{d}/neg.csv"],
     _raw_file("neg.csv", b"n_active,tokens,loss\n-1.6e9,2e9,3.1\n"), "field n_active"),
    ("resume-comms-unknown", ["resume", "{d}/run", "--comms", "smoke"],
     lambda d, run: _edit_run(d, run, lambda r: None), "--comms"),
    ("reproduce-foreign-file", ["reproduce", "fig7", "--out", "{d}/out", "--evals", "2",
                                "--seeds", "1", "--workers", "1", "--x", "eval", "--quiet"],
     _foreign("fig7.md"), "not written by tuner"),
    ("reproduce-faithful-evals", ["reproduce", "fig7", "--out", "{d}/out", "--faithful-evals",
                                  "0", "--json"], None, "--faithful-evals"),
    ("reproduce-faithful-seeds", ["reproduce", "fig7", "--out", "{d}/out", "--no-faithful",
                                  "--faithful-seeds", "0"], None, "--faithful-seeds"),
    ("reproduce-comms-unknown", ["reproduce", "fig7", "--out", "{d}/out", "--comms", "smoke"],
     None, "--comms"),
    ("reproduce-workers-huge", ["reproduce", "fig7", "--out", "{d}/out", "--workers", "100000",
                                "--comms", "threads"], None, "exceeds"),
    ("reproduce-evals-huge", ["reproduce", "fig7", "--out", "{d}/out", "--evals",
                              "1000000000000"], None, "exceeds"),
    ("figures-foreign-file", ["figures", "--out", "{d}/out", "--only", "fig1",
                              "--coefficients", "published"], _foreign("fig1.png"),
     "not written by tuner"),
    ("compare-foreign-file", ["compare", "{run}", "--out", "{d}/out", "--x", "eval"],
     _foreign("compare.md"), "not written by tuner"),
    ("report-foreign-file", ["report", "{run}", "--out", "{d}/out"], _foreign_report,
     "not written by tuner"),
    ("rank-workers-zero", ["rank", "--data", "chinchilla_epoch", "--workers", "0"], None,
     "--workers"),
    ("rank-comms-unknown", ["rank", "--data", "chinchilla_epoch", "--comms", "smoke"], None,
     "--comms"),
    ("validate-workers-zero", VALIDATE + ["--loo", "--workers", "0"], None, "--workers"),
    ("validate-comms-unknown", VALIDATE + ["--loo", "--comms", "smoke"], None, "--comms"),
    ("sweep-file-missing", ["sweep", "{d}/none.json"], None, "none.json: cannot read"),
    _sweep_case("not-json", '{"laws": ["hoffmann"', "s.json: not valid JSON"),
    _sweep_case("not-toml", 'laws = ["hoffmann"\n', "s.toml: not valid TOML", ".toml"),
    _sweep_case("not-object", [1, 2], "is an object with 'laws'"),
    _sweep_case("unknown-key", {**SWEEP_OK, "lawz": []}, "unknown key(s) 'lawz'"),
    _sweep_case("laws-missing", {"datasets": ["chinchilla_epoch"]}, "'laws' must be"),
    _sweep_case("law-unknown", {**SWEEP_OK, "laws": ["hoffmann", "moore"]},
                "laws[1]: unknown law 'moore'"),
    _sweep_case("law-injection", {**SWEEP_OK, "laws": ["e + __import__('os').system('id')"]},
                "laws[0]"),
    _sweep_case("dataset-unknown", {**SWEEP_OK, "datasets": ["nope"]},
                "datasets[0]: unknown dataset 'nope'"),
    _sweep_case("dataset-missing-file", {**SWEEP_OK, "datasets": ["none.csv"]},
                "datasets[0]"),
    _sweep_case("evals-zero", {**SWEEP_OK, "evals": 0}, "'evals' must be an integer >= 1"),
    _sweep_case("evals-huge", {**SWEEP_OK, "evals": 10 ** 14}, "exceeds"),
    _sweep_case("seeds-not-list", {**SWEEP_OK, "seeds": 3}, "'seeds' must be a list"),
    _sweep_case("option-unknown", {**SWEEP_OK, "options": {"turbo": True}},
                "options: unknown option(s) 'turbo'"),
    _sweep_case("option-bad-value", {**SWEEP_OK, "options": {"delta": "x"}},
                "options.delta"),
    _sweep_case("option-empty-axis", {**SWEEP_OK, "options": {"optimizer": []}},
                "options.optimizer is an empty list"),
    _sweep_case("option-impossible", {**SWEEP_OK, "options": {"optimizer": ["ytopt", "grid"],
                                                              "surrogate": "GP"}},
                "options.optimizer=\"grid\" × options.surrogate=\"GP\""),
    ("sweep-workers-zero", ["sweep", "{d}/s.json", "--workers", "0"], GOOD_SWEEP, "--workers"),
    ("sweep-comms-unknown", ["sweep", "{d}/s.json", "--comms", "smoke"], GOOD_SWEEP,
     "--comms"),
    ("sweep-out-beneath-file", ["sweep", "{d}/s.json", "--out", "{d}/afile/out"], GOOD_SWEEP,
     "is a file"),
    ("sweep-foreign-file", ["sweep", "{d}/s.json", "--out", "{d}", "--json", "--quiet"],
     lambda d: (GOOD_SWEEP(d), (d / "sweep.csv").write_text("mine\n")),
     "not written by tuner"),
    ("rank-foreign-file", ["rank", "--data", "chinchilla_epoch", "--out", "{d}/out", "--laws",
                           "hoffmann", "--evals", "5", "--seed", "0", "--keep-outliers"],
     _foreign("rank.csv"), "not written by tuner"),
]

# Options that cannot be bad input (flags), or whose bad values are argparse's choices.
EXEMPT = {"-h", "--help", "--force", "--loo", "--include-bound"}


def _snapshot(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir")
    return out


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    from tuner.run.fit import FitConfig, fit
    run = tmp_path_factory.mktemp("finished") / "run"
    fit(FitConfig("hoffmann", "chinchilla_epoch", optimizer="random", evals=4,
                  comms="threads"), run, quiet=True)
    return run


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_nothing_written(case, tmp_path, monkeypatch, capsys,
                                                      finished_run):
    name, argv, setup, expect = case
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # a default runs/ would appear here
    d = tmp_path / "case"
    d.mkdir()
    if setup is not None:
        setup(d, finished_run) if setup.__code__.co_argcount == 2 else setup(d)
    before, run_before = _snapshot(tmp_path), _snapshot(finished_run)
    capsys.readouterr()
    args = [a.replace("{d}", str(d)).replace("{run}", str(finished_run)) for a in argv]
    try:
        code = main(args)
    except SystemExit as exc:  # argparse
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tuner: error: "), err
    assert "Traceback" not in err and expect in lines[0], lines[0]
    assert _snapshot(tmp_path) == before, "files were written or removed"
    assert _snapshot(finished_run) == run_before
    assert not (d / "f").exists()


def _options(command: str) -> set[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return {o for a in sub.choices[command]._actions for o in a.option_strings}


@pytest.mark.parametrize("command", ["fit", "resume", "validate", "reproduce", "figures",
                                     "compare", "report", "rank", "sweep"])
def test_every_option_is_in_the_matrix(command):
    used = {a for _, argv, _, _ in CASES if argv[0] == command for a in argv}
    missing = sorted(_options(command) - used - EXEMPT)
    assert not missing, f"options of '{command}' with no bad-input case: {missing}"


def test_full_disk_when_creating_a_run_leaves_nothing(tmp_path, monkeypatch, capsys):
    import tuner.run.rundir as rundir

    def full(path, text):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(rundir, "_write_atomic", full)
    monkeypatch.setattr(rundir, "write_json", lambda p, d: full(p, ""))
    code = main(FIT + ["--run-dir", str(tmp_path / "a" / "b" / "r")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "No space left on device" in err
    assert list(tmp_path.iterdir()) == []


def test_unwritable_results_refused_before_resume(tmp_path, monkeypatch, capsys, finished_run):
    import shutil
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    before = _snapshot(run)
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, m, **k: False if str(p).endswith(
        "results.csv") else real(p, m, **k))
    code = main(["resume", str(run), "--evals", "6", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "not writable" in err, err
    assert _snapshot(run) == before


def test_read_only_results_refused_for_real(tmp_path, capsys, finished_run):
    """Not faked: a results.csv the file system refuses to write. Root ignores file modes, so
    as root the file is made immutable (chattr +i), as anyone else read-only (chmod 444)."""
    import shutil
    import subprocess
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    results = run / "results.csv"
    root = os.geteuid() == 0
    if root:
        if shutil.which("chattr") is None or subprocess.run(
                ["chattr", "+i", str(results)], capture_output=True).returncode != 0:
            pytest.skip("root, and chattr +i is not available here")
    else:
        results.chmod(0o444)
    try:
        with pytest.raises(OSError):
            open(results, "a").close()  # the file system does refuse
        before = _snapshot(run)
        code = main(["resume", str(run), "--evals", "6", "--quiet"])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and "not writable" in err, err
        assert _snapshot(run) == before
    finally:
        if root:
            subprocess.run(["chattr", "-i", str(results)], capture_output=True)
